"""The bf16 column of the kernel table (rnnkit._core._testing.lowp_gemm:
B packed into bf16 panels, A rounded to bf16, float32 sums) on every ISA
of this CPU.

The contract (product_table.h) fixes every bit: each C element is one
float32 sum, from C (accumulate) or zero, over the k pairs in increasing
order, each pair adding its odd product and then its even one, and a
product of two bf16 values is exact in float32. So every ISA -- portable,
AVX2 and AVX-512 widening to float32, vdpbf16ps -- must equal the scalar
ISA and a NumPy emulation of that order bit for bit. The data avoid
float32 denormals (vdpbf16ps treats them as zero); the rounding itself is
checked on denormals too.

Shapes: rows around the tiles (1-3 rows take several panels per call,
then 7-9 around an 8-row tile, 17 and 33 beyond), depths odd and even
around a 32-value boundary, columns around the 16 and 32 panel widths.
"""

import numpy as np
import pytest

import rnnkit

core = rnnkit._core._testing


def bf16_gemm(a, b, isa=None, c=None, single_call=False):
    """C = (c or 0) + bf16(A) bf16(B) through one ISA's bf16 kernels."""
    return core.lowp_gemm(a, b, "bfloat16", isa=isa, c=c, single_call=single_call)

ROWS = [1, 2, 3, 7, 8, 9, 17, 33]
DEPTHS = [1, 2, 3, 7, 31, 32, 33, 257]
COLS = [1, 15, 16, 17, 31, 33, 100]


def bf16_bits(x):
    """lowp::to_bf16 in NumPy: round to nearest even, a NaN made quiet."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, (u >> 16) | 0x40, rounded).astype(np.uint16)


def bf16(x):
    """x rounded to bf16, as float32."""
    return (bf16_bits(x).astype(np.uint32) << 16).view(np.float32)


def emulate(a, b, c=None):
    """C (+)= bf16(A) bf16(B) in the kernels' order: per k pair, the odd
    product and then the even one, each added in float32."""
    ar, br = bf16(a), bf16(b)
    if ar.shape[1] % 2:
        ar = np.pad(ar, ((0, 0), (0, 1)))
        br = np.pad(br, ((0, 1), (0, 0)))
    s = np.zeros((a.shape[0], b.shape[1]), np.float32) if c is None else c.astype(np.float32, copy=True)
    with np.errstate(invalid="ignore", over="ignore"):
        for p in range(0, ar.shape[1], 2):
            s += np.outer(ar[:, p + 1], br[p + 1])
            s += np.outer(ar[:, p], br[p])
    return s


def operands(M, K, N, seed):
    rng = np.random.default_rng(seed)
    # Magnitudes over a few decades, so the order of the sums shows.
    scale = lambda shape: np.exp2(rng.integers(-6, 7, shape)).astype(np.float32)
    a = (rng.standard_normal((M, K)) * scale((M, K))).astype(np.float32)
    b = (rng.standard_normal((K, N)) * scale((K, N))).astype(np.float32)
    return a, b


def bits(x):
    return np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)


def assert_same_bits(got, want, what):
    assert got.dtype == np.float32 and got.shape == want.shape, what
    differ = bits(got) != bits(want)
    assert not differ.any(), f"{what}: {differ.sum()} of {differ.size} elements differ, first at " \
                             f"{np.argwhere(differ)[0]}: {got[differ][0]!r} != {want[differ][0]!r}"


# The ISAs whose bf16 sums follow the contract's order bit for bit: all but
# amx, whose tiles round their own way (product_table.h; its products are
# checked against a bound in test_amx_products.py).
VECTOR_ISAS = [i for i in rnnkit.available_isas() if i != "amx"]


@pytest.mark.parametrize("K", DEPTHS)
def test_every_isa_equals_the_emulation_bitwise(K):
    isas = VECTOR_ISAS
    for M in ROWS:
        for N in COLS:
            a, b = operands(M, K, N, seed=M * 10000 + K * 100 + N)
            c0 = np.random.default_rng(M + N).standard_normal((M, N)).astype(np.float32)
            want, want_acc = emulate(a, b), emulate(a, b, c0)
            for isa in isas:
                where = f"{isa} M={M} K={K} N={N}"
                assert_same_bits(bf16_gemm(a, b, isa), want, where)
                assert_same_bits(bf16_gemm(a, b, isa, c=c0), want_acc, where + " accumulate")


# One gemm call over the whole product (any m x n, more rows than a tile
# and more columns than a wide call): what the AMX kernels hand over.
@pytest.mark.parametrize("M,K,N", [(1, 33, 100), (3, 257, 300), (9, 31, 17), (17, 64, 129), (33, 7, 33)])
def test_one_call_over_any_shape(M, K, N):
    a, b = operands(M, K, N, seed=M + K + N)
    c0 = np.full((M, N), -0.25, np.float32)
    want, want_acc = emulate(a, b), emulate(a, b, c0)
    for isa in VECTOR_ISAS:
        assert_same_bits(bf16_gemm(a, b, isa, single_call=True), want, f"{isa} M={M} K={K} N={N}")
        assert_same_bits(bf16_gemm(a, b, isa, c=c0, single_call=True), want_acc, f"{isa} accumulate")


def test_rows_of_a_product_equal_the_rows_alone(isa):
    # Wide calls (a few rows) and tiles sum each element the same way (amx:
    # every row count runs on tiles).
    a, b = operands(20, 130, 200, seed=5)
    whole = bf16_gemm(a, b, isa)
    for i in (0, 1, 2, 9, 19):
        assert_same_bits(bf16_gemm(a[i:i + 1], b, isa)[0], whole[i], f"{isa} row {i}")
        assert_same_bits(bf16_gemm(a[i:i + 3], b, isa)[0], whole[i], f"{isa} rows {i}..")


SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 3.0e38, -3.4028235e38, 1.1754944e-38,
                    1.0e-39, -1.0e-45, 5.9e-39, 1.00390625, 1.01171875, 1.0039062, 1.0039063, 65504.0,
                    2.0 ** -126 * 1.5, 0.1, -0.3], np.float32)


def test_rounding_is_nearest_even_and_keeps_nan(isa):
    rng = np.random.default_rng(3)
    nans = np.array([0x7F800001, 0xFFC00000, 0x7FBFFFFF, 0xFF800001, 0x7FFFFFFF, 0x7F80FFFF], np.uint32)
    ties = (rng.integers(0, 2 ** 16, 500, dtype=np.uint32) << 16 | 0x8000).view(np.float32)
    near = (rng.integers(0, 2 ** 32, 500, dtype=np.uint64).astype(np.uint32) & 0xFFFF0000 | 0x7FFF)
    x = np.concatenate([SPECIAL, nans.view(np.float32), ties, near.view(np.float32),
                        rng.integers(0, 2 ** 32, 4000, dtype=np.uint64).astype(np.uint32).view(np.float32)])
    for n in (len(x), 1, 31, 33, 65):  # tails of every width
        got = core.bf16_round(x[:n], isa)
        assert got.dtype == np.uint16
        want = bf16_bits(x[:n])
        assert np.array_equal(got, want), f"{isa}: first difference at {np.argmax(got != want)}"
        assert np.all((got[np.isnan(x[:n])] & 0x7FC0) == 0x7FC0), "a NaN must stay a quiet NaN"


def test_packing_rounds_each_weight(isa):
    # A = identity: C = bf16(B) exactly (every other product is a zero), so
    # every packed value shows: ties both ways, values next to them, the
    # largest finite bf16 values. (No infinities: 0 x inf would be NaN.)
    rng = np.random.default_rng(4)
    K, N = 70, 45
    b = (rng.standard_normal((K, N)) * 100).astype(np.float32)
    flat = b.reshape(-1)
    top = bf16_bits(flat[::3]).astype(np.uint32) << 16
    flat[::3] = (top | rng.choice(np.array([0x8000, 0x7FFF, 0x8001], np.uint32), top.size)).view(np.float32)
    flat[:4] = [3.3961e38, -3.39e38, 1.00390625, 1.01171875]
    got = bf16_gemm(np.eye(K, dtype=np.float32), b, isa)
    assert np.isfinite(got).all()
    assert_same_bits(got, bf16(b), isa)


def test_nan_and_inf_propagate(isa):
    a, b = operands(9, 40, 37, seed=6)
    a[1, 5] = np.nan
    a[2, 6] = np.inf
    b[7, 3] = -np.inf
    b[9, 30] = np.nan
    a[4, 7] = np.inf
    b[7, 8] = np.inf
    a[5, 7] = np.inf
    b[7, 11] = -np.inf
    b[8, 11] = np.inf
    c0 = np.zeros((9, 37), np.float32)
    c0[6, 2] = np.inf
    for c in (None, c0):
        got = bf16_gemm(a, b, isa, c=c)
        want = emulate(a, b, c)
        nan = np.isnan(want)
        assert nan.any() and np.isinf(want).any()
        assert np.array_equal(np.isnan(got), nan), isa
        # NaN payloads may differ between instructions; every other value may
        # not (amx: infinities exactly, finite sums to float32 rounding).
        if isa == "amx":
            np.testing.assert_array_equal(got[np.isinf(want)], want[np.isinf(want)])
            np.testing.assert_allclose(got[~nan], want[~nan], rtol=1e-5, atol=1e-5)
        else:
            assert_same_bits(got[~nan], want[~nan], f"{isa} non-NaN values")


def test_bad_arguments():
    a = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"b: expected shape \(3, N\)"):
        bf16_gemm(a, np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match=r"c: expected shape \(2, 2\)"):
        bf16_gemm(a, np.ones((3, 2), np.float32), c=np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="isa"):
        bf16_gemm(a, np.ones((3, 2), np.float32), "no_such_isa")
