"""The GEMM driver and micro-kernels (rnnkit._core._testing.gemm: pack B, then the
driver's blocking and tiling) on every ISA of this CPU.

Edge shapes: one to three rows (taken two or three panels at a time; on
the scalar kernels a single row only), row counts that leave a few rows
beyond whole micro-tiles (AVX2: those rows also take several panels at a
time; elsewhere split evenly with the tile before), panel counts that
group as 3 + 3 + 2 + 2 or 2 + 2, column counts around the panel widths
(16 for AVX-512 float64 and AVX2 float32, 32 for AVX-512 float32) and
depths within one k block and across two (each later block added onto
the stored sums). Each row's sums are one chain of FMAs in increasing k
wherever the row sits, so every row of a product must equal, bit for bit,
the product of that row alone.
"""

import numpy as np
import pytest

import rnnkit

core = rnnkit._core._testing

ROWS = [1, 2, 3, 4, 7, 8, 9, 10, 11, 13, 14, 15, 17]
COLS = [1, 15, 33, 64, 65, 96, 97, 112, 160, 224]
DEPTHS = [1, 5, 300, 1100]


def product(M, K, N, dtype, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((M, K)).astype(dtype), rng.standard_normal((K, N)).astype(dtype)


@pytest.mark.parametrize("K", DEPTHS)
@pytest.mark.parametrize("N", COLS)
def test_gemm_matches_float64_and_rows_alone(N, K, isa, dtype):
    for M in ROWS:
        a, b = product(M, K, N, dtype, seed=M * 1000 + N * 10 + K)
        c = core.gemm(a, b, isa)
        assert c.dtype == dtype and c.shape == (M, N)
        exact = a.astype(np.float64) @ b.astype(np.float64)
        bound = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
        eps = np.finfo(dtype).eps
        # |error| <= K eps sum |a||b| (a chain of K roundings), with room.
        assert np.all(np.abs(c - exact) <= 2 * K * eps * bound + np.finfo(dtype).tiny), f"M={M}"
        for i in range(M):
            alone = core.gemm(a[i:i + 1], b, isa)
            assert np.array_equal(alone[0], c[i]), f"M={M}: row {i} differs from the same row alone"


# B packed from its columns (weights: the transposing packer, W x W register
# blocks with edges in both k and columns) and as the transpose of a pack of
# B^T (the backward passes' packs, across k blocks when K or N > 1024):
# the same panels, so the same product bit for bit.
@pytest.mark.parametrize("b_packing", ["columns", "transposed"])
@pytest.mark.parametrize("K,N", [(K, N) for K in DEPTHS + [17, 33] for N in COLS] + [(40, 1100), (1100, 1100)])
def test_gemm_b_packings_match_packing_rows(b_packing, K, N, isa, dtype):
    a, b = product(3, K, N, dtype, seed=K * 7 + N)
    want = core.gemm(a, b, isa)
    assert np.array_equal(core.gemm(a, b, isa, b_packing), want)


def test_gemm_unknown_b_packing():
    with pytest.raises(ValueError, match="b_packing: expected 'rows', 'columns' or 'transposed'"):
        core.gemm(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32), None, "diagonal")
