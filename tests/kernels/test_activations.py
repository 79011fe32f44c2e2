"""Accuracy contract of the SIMD sigmoid/tanh kernels (rnnkit._core._testing.sigmoid,
rnnkit._core._testing.tanh) for every ISA of this CPU.

The module states its own maximum relative errors (SIGMOID_MAX_REL_ERR_F32,
...); these tests hold it to them on dense grids, in the saturation regions,
at +-0, +-inf and NaN, and check that the tail of an array (lengths that are
no multiple of the vector width) gets exactly the same values as the body.
"""

import functools

import numpy as np
import pytest

import rnnkit
from rnnkit import reference

core = rnnkit._core._testing

FUNCS = ("sigmoid", "tanh")
DTYPES = [np.dtype(np.float32), np.dtype(np.float64)]
DTYPE_IDS = ["float32", "float64"]

# The oracle must be clearly more precise than the result: float64 for
# float32 results; long double for float64 results (80-bit on x86, 128-bit on
# Linux aarch64), so its own rounding does not eat into a ~1-ulp bound.
WIDE = np.longdouble
LONGDOUBLE_IS_WIDER = np.finfo(np.longdouble).eps < np.finfo(np.float64).eps
# Where long double is just double (macOS arm64, MSVC), allow for the
# reference's own error: np.tanh / exp-based sigmoid in float64 are within
# ~2 ulp = 2 * 2**-52 relative.
F64_REFERENCE_SLACK = 0.0 if LONGDOUBLE_IS_WIDER else 2.0 * np.finfo(np.float64).eps


def kernel(name):
    return getattr(core, name)


def max_rel_err(name, dtype):
    """The module's documented bound, plus the oracle's slack for float64."""
    suffix = "F32" if dtype == np.float32 else "F64"
    bound = float(getattr(core, f"{name.upper()}_MAX_REL_ERR_{suffix}"))
    return bound + (F64_REFERENCE_SLACK if dtype == np.float64 else 0.0)


def exact(name, a):
    """sigmoid/tanh of the (already rounded) inputs a, in wider precision."""
    wide = np.asarray(a).astype(np.float64 if a.dtype == np.float32 else WIDE)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        return reference.sigmoid(wide) if name == "sigmoid" else np.tanh(wide)


@functools.lru_cache(maxsize=None)
def grid(dtype_str):
    """Dense grid over the interesting range, tiny magnitudes, and huge ones.

    float32: step 3e-5 over [-30, 30] (a few ulps apart near |x| = 30, and the
    whole region where sigmoid/tanh are not yet saturated); float64: a
    coarser step 2e-4 over [-40, 40] (float64 sigmoid saturates at ~37).
    Small magnitudes down to 1e-30 (float64: 1e-300) check that tanh(x) ~ x
    keeps its relative accuracy; large ones up to the largest finite value
    check the saturated tails and exp overflow.
    """
    dtype = np.dtype(dtype_str)
    if dtype == np.float32:
        dense = np.linspace(-30.0, 30.0, 2_000_001)
        small = np.logspace(-30, 0, 3001)
    else:
        dense = np.linspace(-40.0, 40.0, 400_001)
        small = np.logspace(-300, 0, 3001)
    with np.errstate(over="ignore"):  # geomspace's internals, not the values
        big = np.geomspace(1.0, float(np.finfo(dtype).max), 4001)
    positive = np.concatenate([small, big])
    x = np.concatenate([dense, positive, -positive]).astype(dtype)
    x.flags.writeable = False
    return x


@functools.lru_cache(maxsize=None)
def grid_exact(name, dtype_str):
    r = exact(name, grid(dtype_str))
    r.flags.writeable = False
    return r


def assert_within_bound(name, x, got, ref, dtype):
    """Relative error <= the bound where the true value is a normal number;
    absolute error <= the smallest normal below that (results that small may
    be flushed to zero)."""
    rel = max_rel_err(name, dtype)
    tiny = float(np.finfo(dtype).tiny)
    assert got.dtype == dtype and got.shape == x.shape
    err = np.abs(got.astype(ref.dtype) - ref)
    normal = np.abs(ref) >= tiny
    bound = np.where(normal, rel * np.abs(ref), tiny)
    ok = err <= bound  # NaN fails
    if not np.all(ok):
        ratio = np.where(np.isnan(err), np.inf, err / bound)
        i = int(np.argmax(ratio))
        kind = "relative" if normal[i] else "absolute"
        raise AssertionError(
            f"{name} ({dtype}): {np.count_nonzero(~ok)} of {ok.size} points out of bound; "
            f"worst at x={x[i]!r}: got {got[i]!r}, exact {float(ref[i])!r}, "
            f"{kind} error {float(err[i] / (abs(ref[i]) if normal[i] else 1)):.3e} vs "
            f"bound {rel if normal[i] else tiny:.3e} (err/bound {float(ratio[i]):.3g})")


def call(name, a, isa):
    out = kernel(name)(a, isa=isa)
    # A new array of the input's dtype and shape; the input is left alone.
    assert isinstance(out, np.ndarray)
    assert out.dtype == a.dtype and out.shape == a.shape
    assert not np.shares_memory(out, a)
    return out


# ------------------------------------------------------ the stated bounds


def test_stated_bounds_are_plausible():
    # A bound must be positive, cannot beat correct rounding (half an ulp),
    # and must be tight enough to mean something (~80 ulp float32, ~450 ulp
    # float64 at most).
    for name in FUNCS:
        f32 = float(getattr(core, f"{name.upper()}_MAX_REL_ERR_F32"))
        f64 = float(getattr(core, f"{name.upper()}_MAX_REL_ERR_F64"))
        assert 2.0 ** -24 <= f32 <= 1e-5, (name, f32)
        assert 2.0 ** -53 <= f64 <= 1e-13, (name, f64)


# ------------------------------------------------------------ dense grids


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", FUNCS)
def test_grid_within_stated_bound(name, dtype, isa):
    x = grid(dtype.str)
    got = call(name, x, isa)
    assert_within_bound(name, x, got, grid_exact(name, dtype.str), dtype)
    # The range is exact everywhere, even where the bound would allow a
    # rounding outside it: [0, 1] for sigmoid, [-1, 1] for tanh.
    lo = 0.0 if name == "sigmoid" else -1.0
    assert np.all((got >= lo) & (got <= 1.0)), "result outside the function's range"


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", FUNCS)
def test_default_isa_is_the_active_one(name, dtype, isa):
    # isa=None (or no keyword) uses the active ISA, which the fixture set.
    x = grid(dtype.str)[::97].copy()
    explicit = kernel(name)(x, isa=isa)
    assert np.array_equal(kernel(name)(x), explicit, equal_nan=True)
    assert np.array_equal(kernel(name)(x, isa=None), explicit, equal_nan=True)


# ---------------------------------------------------------- special values


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_sigmoid_special_values(dtype, isa):
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan], dtype=dtype)
    x[5] = np.copysign(np.nan, -1.0)  # a NaN with the sign bit set
    y = call("sigmoid", x, isa)
    assert y[0] == 0.5 and y[1] == 0.5
    assert y[2] == 1.0 and y[3] == 0.0
    assert np.isnan(y[4]) and np.isnan(y[5])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_tanh_special_values(dtype, isa):
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, np.nan], dtype=dtype)
    x[5] = np.copysign(np.nan, -1.0)
    y = call("tanh", x, isa)
    # tanh is odd: the sign of zero is kept.
    assert y[0] == 0.0 and not np.signbit(y[0])
    assert y[1] == 0.0 and np.signbit(y[1])
    assert y[2] == 1.0 and y[3] == -1.0
    assert np.isnan(y[4]) and np.isnan(y[5])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_tiny_and_subnormal_inputs(dtype, isa):
    # tanh(x) = x and sigmoid(x) = 1/2 to within rounding for tiny x,
    # including subnormal x (which a kernel may treat as zero).
    info = np.finfo(dtype)
    t = np.array([info.tiny, info.tiny / 2, info.tiny / 1024, info.smallest_subnormal,
                  2.0 * info.tiny, 1e-20], dtype=dtype)
    x = np.concatenate([t, -t])
    for name in FUNCS:
        assert_within_bound(name, x, call(name, x, isa), exact(name, x), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_saturation(dtype, isa):
    # Densely through the regions where the functions reach their limits
    # (sigmoid(x) rounds to 1 from x ~ 17.3 in float32, ~36.7 in float64;
    # tanh from ~9.0 / ~19.1) and on to the largest finite value: within the
    # bound, and never beyond the limit.
    top = float(np.finfo(dtype).max)
    start = {"sigmoid": 17.0 if dtype == np.float32 else 36.0, "tanh": 9.0}
    for name in FUNCS:
        with np.errstate(over="ignore"):
            tail = np.geomspace(200.0, top, 1001)
        x = np.concatenate([np.linspace(start[name], 200.0, 20001), tail]).astype(dtype)
        x = np.concatenate([x, -x])
        got = call(name, x, isa)
        assert_within_bound(name, x, got, exact(name, x), dtype)
        assert np.all(np.abs(got) <= 1.0)

    # tanh is exactly +-1 once 1 - tanh(x) is far below half an ulp of 1:
    # at 20 (1 - tanh(20) = 8.5e-18), 1e30, the largest finite value and inf.
    big = np.array([20.0, 25.0, 1e30, top, np.inf], dtype=dtype)
    assert np.all(call("tanh", big, isa) == 1.0)
    assert np.all(call("tanh", -big, isa) == -1.0)
    # sigmoid is exactly 1 at +inf and 0 at -inf, and tiny (or 0) far below.
    assert call("sigmoid", np.array([np.inf], dtype), isa)[0] == 1.0
    low = call("sigmoid", -big, isa)
    assert np.all(low >= 0.0) and np.all(low[2:] <= np.finfo(dtype).tiny)


# ----------------------------------------------------------- tail handling


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", FUNCS)
def test_tails_match_the_body(name, dtype, isa):
    # Arrays of every length 1..40 (covering the remainder after 4, 8 or 16
    # lanes) and at misaligned starts must give the exact values the same
    # elements get inside a long array.
    rng = np.random.default_rng(42)
    long = rng.uniform(-20.0, 20.0, 256).astype(dtype)
    long[::11] = rng.uniform(-1e-3, 1e-3, long[::11].size)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e30, -1e30, 17.5, -88.0])
    long[5::29][:specials.size] = specials[:long[5::29].size]
    full = call(name, long, isa)

    for n in range(0, 41):
        for off in (0, 1, 3, 5):
            view = long[off:off + n]          # contiguous but misaligned
            want = full[off:off + n]
            got = call(name, view, isa)
            assert np.array_equal(got, want, equal_nan=True), (n, off)
            got = call(name, view.copy(), isa)  # freshly allocated
            assert np.array_equal(got, want, equal_nan=True), (n, off)
