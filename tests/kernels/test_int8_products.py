"""The int8 column of the kernel table (product_table.h) on every ISA of this
CPU: row quantization (rnnkit._core._testing.int8_quantize_rows) and the
product through the driver (lowp_gemm: B's columns quantized and packed as
weights are, A's rows quantized per row, int32 sums, dequantized).

Integer sums are exact and quantization and dequantization are one fixed
float32 arithmetic, so every ISA's kernels (vpdpbusd, the widening vpmaddwd
form, AMX, portable) must give the same bits as the scalar ISA and as a
NumPy emulation of the contract. A's rows, asymmetric: lo = min(0, min a),
hi = max(0, max a), scale = (hi - lo) / 255 (hi / 255 - lo / 255 if that
overflows, 1 if below FLT_MIN), zp = clip(rint(-lo / scale), 0, 255), u8 =
clip(rint(a / scale) + zp, 0, 255) (rint: half to even, as nearbyint), a
non-finite value -> u8 = 0, zp = 0 and scale NaN. B's columns, symmetric:
amax = max |b| (1 for a zero column), q = clip(rint(b * (127 / amax)), -127,
127), scale = amax / 127. C (+)= (float32(sum_k u8 * q - zp[i] * colsum[j])
* a_scale[i]) * b_scale[j], all in float32.

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


def quantize_cols_np(b):
    """The contract's symmetric quantization of b's columns: (q as int64,
    scales as float32)."""
    b = np.asarray(b, F32)
    finite = np.all(np.isfinite(b), axis=0, keepdims=True)
    amax = np.max(np.where(np.isfinite(b), np.abs(b), F32(0)), axis=0, keepdims=True)
    amax = np.where(amax == 0, F32(1), amax).astype(F32)
    inv = (F32(127) / amax).astype(F32)
    with np.errstate(invalid="ignore"):
        q = np.clip(np.rint((b * inv).astype(F32)), -127, 127)
    q = np.where(finite & np.isfinite(q), q, 0).astype(np.int64)
    scale = np.where(finite, amax / F32(127), F32(np.nan)).astype(F32)
    return q, scale.reshape(-1)


def quantize_rows_np(a):
    """The contract's asymmetric quantization of a's rows: (u8 as int64,
    scales as float32, zero points as int64)."""
    a = np.asarray(a, F32)
    finite = np.all(np.isfinite(a), axis=1)
    safe = np.where(np.isfinite(a), a, F32(0))
    lo = np.minimum(F32(0), safe.min(axis=1)).astype(F32)
    hi = np.maximum(F32(0), safe.max(axis=1)).astype(F32)
    with np.errstate(over="ignore"):
        scale = ((hi - lo).astype(F32) / F32(255)).astype(F32)
    wide = ((hi / F32(255)).astype(F32) - (lo / F32(255)).astype(F32)).astype(F32)
    scale = np.where(np.isfinite(scale), scale, wide).astype(F32)
    scale = np.where(scale >= np.finfo(F32).tiny, scale, F32(1)).astype(F32)
    zp = np.clip(np.rint((-lo / scale).astype(F32)), 0, 255).astype(np.int64)
    u = np.clip(np.rint((safe / scale[:, None]).astype(F32)).astype(np.int64) + zp[:, None], 0, 255)
    u = np.where(finite[:, None], u, 0)
    return u, np.where(finite, scale, F32(np.nan)).astype(F32), np.where(finite, zp, 0)


def int8_gemm(isa, a, b, c=None, threads=1):
    """C = A @ B (+ c) with one ISA's int8 products, through the driver."""
    return core.lowp_gemm(a, b, "int8", isa=isa, c=c, threads=threads)


def int8_gemm_np(a, b, c=None):
    ua, sa, za = quantize_rows_np(a)
    qb, sb = quantize_cols_np(b)
    # Exact integers (|sum| < 2^31 here), rounded once to float32.
    acc = (ua @ qb - za[:, None] * qb.sum(axis=0)[None, :]).astype(np.float32)
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
        a = (rng.standard_normal((7, K)) * rng.choice([1e-20, 1.0, 1e20], size=(7, 1))).astype(F32)
        a[0] = 0
        # One-signed rows (zero point 0 or 255) and a range that overflows.
        a[1] = np.abs(a[1])
        a[2] = -np.abs(a[2])
        a[3, 0], a[3, -1] = F32(3.4e38), F32(-3.4e38)
        q, s, z = core.int8_quantize_rows(isa, a)
        assert q.dtype == np.uint8 and q.shape[0] == 7 and q.shape[1] >= K and q.shape[1] % 4 == 0
        assert z.dtype == np.int32 and z.shape == (7,)
        want_q, want_s, want_z = quantize_rows_np(a)
        assert np.array_equal(q[:, :K], want_q), f"K={K}"
        assert np.all(q[:, K:] == z[:, None])
        assert same_bits(s, want_s) and np.array_equal(z, want_z)
        assert z[0] == 0 and s[0] == 1 and np.all(q[0] == 0)
        if K > 1:
            assert z[1] == 0 and q[1, :K].max() == 255 and z[2] == 255 and q[2, :K].min() == 0
        assert np.isfinite(s[3]) and s[3] > 0
        # Every value within half a step of its dequantized value.
        fin = [0, 1, 2, 4, 5, 6]
        err = np.abs((q[fin, :K].astype(np.float64) - z[fin, None]) * s[fin, None] - a[fin])
        assert np.all(err <= 0.5 * s[fin, None].astype(np.float64) * (1 + 1e-6))


def test_int8_quantize_rows_rounds_half_to_even(isa):
    # Range 255 with lo = -128: scale 1, zp 128, so a / scale is a itself;
    # doubled, scale 2. Then lo = -2.5: the zero point rounds to even too.
    halves = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 125.5, 126.5, -126.5, 3.5, 4.5, 0.0], F32)
    row = np.append(halves, [F32(127), F32(-128)])
    a = np.stack([row, row * 2, np.array([-2.5, 252.5, 0.5, 1.5] + [0.0] * 10, F32)]).astype(F32)
    q, s, z = core.int8_quantize_rows(isa, a)
    want = np.array([0, 2, 2, 0, -2, -2, 126, 126, -126, 4, 4, 0, 127, -128]) + 128
    assert np.array_equal(q[0, :14].astype(int), want)
    assert np.array_equal(q[1, :14].astype(int), want)
    assert same_bits(s, np.array([1, 2, 1], F32)) and list(z) == [128, 128, 2]
    assert list(q[2, :4]) == [0, 254, 2, 4]


def test_int8_quantize_rows_non_finite_and_tiny_rows(isa):
    a = np.ones((6, 21), F32)
    a[0, 20] = np.nan
    a[1, 0] = np.inf
    a[2, 7] = -np.inf
    # Ranges whose / 255 falls below FLT_MIN: scale 1, zero point 0, so
    # every value rounds to 0 (the contract's rule for a zero row).
    a[3] = np.linspace(-1e-38, 1e-38, 21, dtype=F32)
    a[4] = 0
    a[4, 3] = F32(1e-45)
    a[5] = F32(3e-37)
    q, s, z = core.int8_quantize_rows(isa, a)
    assert np.all(q[:3] == 0) and np.all(np.isnan(s[:3])) and np.all(z[:3] == 0)
    assert np.all(q[3:] == 0) and np.all(s[3:] == 1) and np.all(z[3:] == 0)
    q0, s0, z0 = core.int8_quantize_rows("scalar", a)
    assert np.array_equal(q[:, :21], q0[:, :21]) and same_bits(s, s0) and np.array_equal(z, z0)
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
