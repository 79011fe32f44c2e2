"""The int8 column of the kernel table (product_table.h) on every ISA of this
CPU: row quantization (rnnkit._core._testing.int8_quantize_rows) and the
product through the driver (lowp_gemm: B's columns quantized and packed as
weights are, A's rows quantized per row, int32 sums, dequantized).

Integer sums are exact and quantization and dequantization are one fixed
float32 arithmetic, so every ISA's kernels (vpdpbusd, the widening vpmaddwd
form, AMX, portable) must give the same bits as the scalar ISA and as a
NumPy emulation of the contract: amax = max |a| (1 for a zero row), inv =
127 / amax, q = clip(rint(a * inv), -127, 127) (rint: half to even, as
nearbyint), scale = amax / 127, a non-finite value -> q = 0 and scale NaN;
C (+)= (float32(sum_k qa * qb) * a_scale[i]) * b_scale[j], all in float32.

Shapes: rows around the tiles (1-3 take several panels per call) and
columns around the panel widths (16, 32) and their groups of 4.
"""

import numpy as np
import pytest

import rnnkit

core = rnnkit._core._testing

ROWS = [1, 2, 3, 7, 8, 9, 17, 33]
DEPTHS = [1, 3, 4, 5, 63, 64, 65, 257]
COLS = [1, 15, 16, 17, 31, 33, 100]
F32 = np.float32


def quantize_np(a, axis):
    """The contract's quantization of a's rows (axis=1) or columns (axis=0):
    (q as int64, scales as float32)."""
    a = np.asarray(a, F32)
    finite = np.all(np.isfinite(a), axis=axis, keepdims=True)
    amax = np.max(np.where(np.isfinite(a), np.abs(a), F32(0)), axis=axis, keepdims=True)
    amax = np.where(amax == 0, F32(1), amax).astype(F32)
    inv = (F32(127) / amax).astype(F32)
    q = np.clip(np.rint((a * inv).astype(F32)), -127, 127)
    q = np.where(finite, q, 0).astype(np.int64)
    scale = np.where(finite, amax / F32(127), F32(np.nan)).astype(F32)
    return q, scale.reshape(-1)


def int8_gemm(isa, a, b, c=None, threads=1):
    """C = A @ B (+ c) with one ISA's int8 products, through the driver."""
    return core.lowp_gemm(a, b, "int8", isa=isa, c=c, threads=threads)


def int8_gemm_np(a, b, c=None):
    qa, sa = quantize_np(a, axis=1)
    qb, sb = quantize_np(b, axis=0)
    acc = (qa @ qb).astype(np.float32)  # exact: |sum| < 2^31 here
    with np.errstate(invalid="ignore", over="ignore"):
        v = ((acc * sa[:, None]).astype(F32) * sb[None, :]).astype(F32)
        return v if c is None else (c + v).astype(F32)


def same_bits(x, y):
    return x.shape == y.shape and x.dtype == y.dtype and np.array_equal(x.view(np.uint32), y.view(np.uint32))


def check(isa, a, b, c=None, threads=1):
    got = int8_gemm(isa, a, b, c, threads)
    want = int8_gemm_np(a, b, c)
    assert same_bits(got, want), f"{a.shape} x {b.shape}: {np.nanmax(np.abs(got - want))}"
    assert same_bits(got, int8_gemm("scalar", a, b, c, threads))
    return got


@pytest.mark.parametrize("K", DEPTHS)
def test_int8_gemm_equals_emulation_and_scalar(isa, K):
    rng = np.random.default_rng(K)
    for M in ROWS:
        for N in COLS:
            a = rng.standard_normal((M, K)).astype(F32)
            b = rng.standard_normal((K, N)).astype(F32)
            check(isa, a, b)


@pytest.mark.parametrize("M", [1, 2, 3, 4, 9])
def test_int8_gemm_accumulates_and_spans_panel_groups(isa, M):
    # Columns beyond one call of up to 4 panels (64 or 128 columns) and a
    # partial last group; accumulate onto C in place of overwriting it.
    rng = np.random.default_rng(M)
    for K, N in [(64, 129), (37, 300), (300, 65)]:
        a = rng.standard_normal((M, K)).astype(F32)
        b = rng.standard_normal((K, N)).astype(F32)
        c0 = rng.standard_normal((M, N)).astype(F32)
        got = check(isa, a, b, c0)
        assert not same_bits(got, c0)
        check(isa, a, b)


def test_int8_gemm_special_rows_and_columns(isa):
    # Zero rows give zeros; a row or column with NaN or inf gives NaN in its
    # outputs only; huge and tiny (but normal) magnitudes follow the same
    # arithmetic (3.4e38 * 1e35 overflows to inf, as float32 must).
    rng = np.random.default_rng(7)
    M, K, N = 9, 70, 40
    a = rng.standard_normal((M, K)).astype(F32)
    b = rng.standard_normal((K, N)).astype(F32)
    a[1] = 0
    a[2, 5] = np.nan
    a[3, 69] = np.inf
    a[4, 0] = -np.inf
    a[5] *= F32(1e30)
    a[6, 3] = F32(3.4e38)
    a[7] *= F32(1e-30)
    b[:, 3] = 0
    b[10, 7] = np.nan
    b[:, 8] *= F32(1e35)
    c = check(isa, a, b)
    bad_rows, bad_cols = [2, 3, 4], [7]
    assert np.all(np.delete(c[1], bad_cols) == 0)
    assert np.all(np.isnan(c[bad_rows]))
    assert np.all(np.isnan(c[:, bad_cols]))
    good = np.delete(np.delete(c, bad_rows, axis=0), bad_cols, axis=1)
    assert not np.any(np.isnan(good))
    assert np.all(c[:, 3][np.isfinite(c[:, 3])] == 0)
    # The other rows equal their product alone.
    for i in [0, 5, 6, 8]:
        assert same_bits(int8_gemm(isa, a[i:i + 1], b)[0], c[i])


def test_int8_gemm_threads_do_not_change_bits(isa):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((70, 200)).astype(F32)
    b = rng.standard_normal((200, 150)).astype(F32)
    one = int8_gemm(isa, a, b, None, 1)
    assert same_bits(int8_gemm(isa, a, b, None, 2), one)
    assert same_bits(one, int8_gemm_np(a, b))


def test_int8_quantize_rows_equals_emulation(isa):
    rng = np.random.default_rng(11)
    for K in DEPTHS + [16, 17, 31, 1000]:
        a = (rng.standard_normal((5, K)) * rng.choice([1e-20, 1.0, 1e20], size=(5, 1))).astype(F32)
        a[0] = 0
        q, s = core.int8_quantize_rows(isa, a)
        assert q.dtype == np.uint8 and q.shape[0] == 5 and q.shape[1] >= K and q.shape[1] % 4 == 0
        want_q, want_s = quantize_np(a, axis=1)
        assert np.array_equal(q[:, :K], want_q + 128), f"K={K}"
        assert np.all(q[:, K:] == 128)
        assert same_bits(s, want_s)


def test_int8_quantize_rows_rounds_half_to_even(isa):
    # amax 127: inv is 1, so a * inv is a itself; amax 254: inv is 0.5.
    halves = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 125.5, 126.5, -126.5, 3.5, 4.5, 0.0], F32)
    a = np.stack([np.append(halves, F32(127)), np.append(halves * 2, F32(254))]).astype(F32)
    q, s = core.int8_quantize_rows(isa, a)
    want = np.array([0, 2, 2, 0, -2, -2, 126, 126, -126, 4, 4, 0, 127])
    assert np.array_equal(q[0, :13].astype(int) - 128, want)
    assert np.array_equal(q[1, :13].astype(int) - 128, want)
    assert same_bits(s, np.array([F32(127) / F32(127), F32(254) / F32(127)], F32))


def test_int8_quantize_rows_non_finite_and_tiny_rows(isa):
    a = np.ones((6, 21), F32)
    a[0, 20] = np.nan
    a[1, 0] = np.inf
    a[2, 7] = -np.inf
    # Largest |a| below 127 / FLT_MAX: inv = 127 / amax overflows to inf (the
    # portable kernel's arithmetic; every ISA must agree with it).
    a[3] = np.linspace(-1e-38, 1e-38, 21, dtype=F32)
    a[4] = 0
    a[4, 3] = F32(1e-45)
    a[5] = F32(3e-37)
    q, s = core.int8_quantize_rows(isa, a)
    assert np.all(q[:3] == 128) and np.all(np.isnan(s[:3]))
    q0, s0 = core.int8_quantize_rows("scalar", a)
    assert np.array_equal(q[:, :21], q0[:, :21]) and np.all(q[:, 21:] == 128) and same_bits(s, s0)
    b = np.random.default_rng(0).standard_normal((21, 20)).astype(F32)
    assert same_bits(int8_gemm(isa, a, b), int8_gemm("scalar", a, b))


def test_int8_bad_arguments():
    a = np.ones((2, 3), F32)
    with pytest.raises(ValueError, match="b"):
        int8_gemm(None, a, np.ones((4, 2), F32))
    with pytest.raises(ValueError, match="c"):
        int8_gemm(None, a, np.ones((3, 2), F32), np.ones((2, 3), F32))
    with pytest.raises(ValueError, match="threads"):
        int8_gemm(None, a, np.ones((3, 2), F32), None, 0)
    with pytest.raises(ValueError, match="isa"):
        core.int8_quantize_rows("nope", a)
