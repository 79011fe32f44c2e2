"""Shared helpers for the rnnkit test suite (fixtures are in conftest.py).

The oracle is the float64 NumPy reference (rnnkit.reference). Every kernel
test runs once per ISA this CPU supports (the `isa` fixture) and, where it
matters, once per dtype (the `dtype` fixture).

Test modules import them with `from helpers import ...`: pyproject.toml's
pytest settings put tests/ on sys.path (pythonpath), for every area folder.
"""

import functools
import math

import numpy as np
import pytest

# test_reference.py must still run before the C++ core is built, so a failed
# import must not break collection here. The kernel test modules import
# rnnkit themselves and fail loudly if it is missing.
try:
    import rnnkit
    from rnnkit import reference
except ImportError:  # pragma: no cover - only before the first build
    rnnkit = None
    reference = None

def require_optional(name):
    """Import an optional dependency (torch, onnx, onnxruntime) or skip the
    test without it; under CI=true a missing one fails the run instead, so
    CI can never pass by skipping the parity tests."""
    import importlib
    import os

    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"optional dependency {name!r} is missing under CI=true: {exc}")
        pytest.skip(f"{name} is not installed")


def can_train_bf16():
    """The 'rnnkit-can-train-bf16' probe: whether this build's kernels train
    with bfloat16 packs (a one-step training call on a tiny pack; today's
    core refuses it with a ValueError until the bfloat16 backward lands)."""
    tiny = np.zeros((4, 1), np.float32)
    try:
        rnnkit.lstm_forward(np.zeros((1, 1, 1), np.float32), rnnkit.pack_lstm(tiny, tiny, precision="bfloat16"),
                            training=True)
    except ValueError as exc:
        return False, str(exc)
    return True, ""


def require_bf16_training():
    """Skip (with the core's reason) unless the build trains with bfloat16 packs:
    the tests of bfloat16 training then run as soon as the backend supports it."""
    ok, why = can_train_bf16()
    if not ok:
        pytest.skip(f"rnnkit-can-train-bf16: no ({why})")


CELLS = ("lstm", "gru")
# The GRU's "reset before linear" form (pack_gru(..., linear_before_reset=False))
# as a cell name of its own, for the tests that check every form.
CELL_FORMS = CELLS + ("gru_no_lbr",)
# Gates per cell: LSTM i, f, g, o; GRU r, z, n.
GATES = {"lstm": 4, "gru": 3, "gru_no_lbr": 3}


def linear_before_reset(cell):
    """The GRU form a cell name stands for (True for the LSTM too)."""
    return cell != "gru_no_lbr"

# Field names of the gradient namedtuples, in their positional order.
LSTM_GRADS = ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh")
GRU_GRADS = ("dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh")
LSTM_CELL_GRADS = ("dx", "dh", "dc", "dw_ih", "dw_hh", "db_ih", "db_hh")
GRU_CELL_GRADS = ("dx", "dh", "dw_ih", "dw_hh", "db_ih", "db_hh")


# ------------------------------------------------------------------ fixtures


# ----------------------------------------------------------------- tolerance

# float64: the kernels and the reference both round at ~1.1e-16 per op; 1e-12
# leaves ~4500 ulps of headroom per log2 of accumulation length, which still
# catches any real bug (a wrong term shows up at ~1e-3 or worse).
F64_REL = 1e-12

# float32: benchdnn's rule -- the error of a float32 dot product grows like
# eps * log2(accumulation length) -- times C = 8 for the few extra roundings
# around each dot product (bias adds, activation error, state update) and for
# errors carried through the recurrence.
F32_C = 8
F32_EPS = float(np.finfo(np.float32).eps)

# Floor of the per-tensor scale. The test data are O(1) by construction
# (x ~ 0.5 N(0,1), weights ~ U(+-1/sqrt(H)), gates and h in [-1, 1], incoming
# gradients ~ N(0,1)), so every rounding error is ~eps * O(1) in absolute
# terms -- also where cancellation makes an element, or a whole tiny tensor
# such as c_n of a B=1, H=1 layer, close to zero. With max|r| alone as the
# scale, a float32 simulation with 2-ulp activations failed ~1% of tiny
# random shapes (up to 15x the bound); with this floor the worst of 1500 was
# 0.4x. A wrong formula still shows up as an O(value) error, far above it.
MIN_SCALE = 1.0


def tolerance(ref, dtype, acc_len, T):
    """Element-wise error bound for comparing a `dtype` result with the
    float64 reference `ref`.

    acc_len: length of the dot products that produce the values (I + H for
    forward outputs, G*H for dx/dh0/dc0, T*B for weight and bias gradients);
    T: number of time steps the error can accumulate over.
    """
    ref = np.asarray(ref, dtype=np.float64)
    growth = max(1.0, math.log2(max(1, acc_len * T)))
    scale = max(MIN_SCALE, float(np.max(np.abs(ref)))) if ref.size else MIN_SCALE
    if np.dtype(dtype) == np.float64:
        k = F64_REL * growth
    else:
        k = F32_C * F32_EPS * growth
    # |r| + scale: relative for large elements, absolute (relative to the
    # tensor's largest element, at least MIN_SCALE) for elements near zero.
    return k * (np.abs(ref) + scale)


def assert_close(actual, ref, dtype, acc_len, T, name="result"):
    """Assert |actual - ref| <= tolerance(...) for every element, with a
    message naming the worst element, its index and err/bound."""
    dtype = np.dtype(dtype)
    ref = np.asarray(ref, dtype=np.float64)
    assert isinstance(actual, np.ndarray), \
        f"{name}: expected a numpy.ndarray, got {type(actual).__name__}"
    assert actual.dtype == dtype, f"{name}: dtype {actual.dtype}, expected {dtype}"
    assert actual.shape == ref.shape, f"{name}: shape {actual.shape}, expected {ref.shape}"

    err = np.abs(actual.astype(np.float64) - ref)
    bound = tolerance(ref, dtype, acc_len, T)
    ok = err <= bound  # NaN compares False, so a NaN result fails
    if not np.all(ok):
        ratio = np.where(np.isnan(err), np.inf, err / bound)
        worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
        index = tuple(int(i) for i in worst)
        raise AssertionError(
            f"{name}: {np.count_nonzero(~ok)} of {ok.size} elements out of tolerance "
            f"(dtype {dtype}, acc_len {acc_len}, T {T}); worst at index {index}: "
            f"actual={float(actual[worst])!r} reference={float(ref[worst])!r} "
            f"err={err[worst]:.3e} bound={bound[worst]:.3e} err/bound={ratio[worst]:.3g}")


def accumulation_length(name, cell, T, B, I, H):
    """The acc_len argument of assert_close for an output or gradient name."""
    if name in ("y", "h_n", "c_n", "h1", "c1"):
        return I + H                # one gate pre-activation: W_ih x + W_hh h
    if name in ("dx", "dh0", "dc0", "dh", "dc"):
        return GATES[cell] * H      # dgates (G*H wide) times W_ih or W_hh
    return T * B                    # dW, db: sums over every step and batch row


# ---------------------------------------------------------------- test cases


def make_case(cell, T, B, I, H, dtype, seed=0, *, none=()):
    """Random inputs for one layer forward + backward, already rounded to
    `dtype` (the reference gets float64 copies of exactly these values).

    x ~ 0.5 N(0, 1); weights and biases ~ U(-1/sqrt(H), 1/sqrt(H)) like
    PyTorch's default init; states and incoming gradients ~ N(0, 1) scaled.
    Names listed in `none` are set to None (states, biases, gradients).
    """
    rng = np.random.default_rng([seed, T, B, I, H, GATES[cell]])
    GH = GATES[cell] * H
    k = 1.0 / math.sqrt(H)

    def cast(a):
        return np.ascontiguousarray(a, dtype=dtype)

    case = dict(
        x=cast(0.5 * rng.standard_normal((T, B, I))),
        weight_ih=cast(rng.uniform(-k, k, (GH, I))),
        weight_hh=cast(rng.uniform(-k, k, (GH, H))),
        bias_ih=cast(rng.uniform(-k, k, GH)),
        bias_hh=cast(rng.uniform(-k, k, GH)),
        h0=cast(0.5 * rng.standard_normal((B, H))),
        dy=cast(rng.standard_normal((T, B, H))),
        dh_n=cast(rng.standard_normal((B, H))),
    )
    if cell == "lstm":
        case["c0"] = cast(rng.standard_normal((B, H)))
        case["dc_n"] = cast(rng.standard_normal((B, H)))
    for name in none:
        if name in case:
            case[name] = None
    return case


def pack(cell, case):
    """PackedWeights for the case's weights, made for the active ISA."""
    weights = (case["weight_ih"], case["weight_hh"], case["bias_ih"], case["bias_hh"])
    if cell == "lstm":
        return rnnkit.pack_lstm(*weights)
    return rnnkit.pack_gru(*weights, linear_before_reset=linear_before_reset(cell))


def grads_dict(grads, fields):
    """A gradient namedtuple as {field: array}; checks the names and order."""
    assert isinstance(grads, tuple), f"expected a namedtuple, got {type(grads).__name__}"
    assert len(grads) == len(fields), f"expected {len(fields)} gradients, got {len(grads)}"
    out = {}
    for i, f in enumerate(fields):
        out[f] = getattr(grads, f)
        assert grads[i] is out[f], f"field {f} is not at position {i}"
    return out


def rnnkit_forward_backward(cell, case, reverse, w=None):
    """rnnkit layer forward (training) + backward -> (outputs, grads) dicts."""
    if w is None:
        w = pack(cell, case)
    if cell == "lstm":
        y, h_n, c_n, ctx = rnnkit.lstm_forward(case["x"], w, case["h0"], case["c0"],
                                               reverse=reverse, training=True)
        g = rnnkit.lstm_backward(ctx, case["dy"], case["dh_n"], case["dc_n"])
        return dict(y=y, h_n=h_n, c_n=c_n), grads_dict(g, LSTM_GRADS)
    y, h_n, ctx = rnnkit.gru_forward(case["x"], w, case["h0"],
                                     reverse=reverse, training=True)
    g = rnnkit.gru_backward(ctx, case["dy"], case["dh_n"])
    return dict(y=y, h_n=h_n), grads_dict(g, GRU_GRADS)


def reference_forward_backward(cell, case, reverse):
    """The float64 reference on the same case -> (outputs, grads) dicts."""
    c = case
    if cell == "lstm":
        y, h_n, c_n, cache = reference.lstm_forward(
            c["x"], c["weight_ih"], c["weight_hh"], c["bias_ih"], c["bias_hh"],
            c["h0"], c["c0"], reverse=reverse)
        g = reference.lstm_backward(c["dy"], c["dh_n"], c["dc_n"], cache)
        return dict(y=y, h_n=h_n, c_n=c_n), dict(zip(LSTM_GRADS, g))
    y, h_n, cache = reference.gru_forward(
        c["x"], c["weight_ih"], c["weight_hh"], c["bias_ih"], c["bias_hh"],
        c["h0"], reverse=reverse, linear_before_reset=linear_before_reset(cell))
    g = reference.gru_backward(c["dy"], c["dh_n"], cache)
    return dict(y=y, h_n=h_n), dict(zip(GRU_GRADS, g))


@functools.lru_cache(maxsize=None)
def cached_reference(cell, T, B, I, H, dtype_name, seed, none, reverse):
    """reference_forward_backward of make_case(...), computed once and shared
    by the runs for every ISA. The returned arrays must not be modified."""
    case = make_case(cell, T, B, I, H, np.dtype(dtype_name), seed, none=none)
    return reference_forward_backward(cell, case, reverse)


def assert_all_close(cell, actual, ref, dtype, T, B, I, H, what=""):
    """assert_close on every entry of two {name: array} dicts."""
    assert set(actual) == set(ref)
    for name in ref:
        assert_close(actual[name], ref[name], dtype,
                     accumulation_length(name, cell, T, B, I, H), T,
                     name=f"{what}{name}")


def assert_all_equal(a, b, what=""):
    """Bitwise (value) equality of every entry of two {name: array} dicts."""
    assert set(a) == set(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, f"{what}{name}: dtype differs"
        assert a[name].shape == b[name].shape, f"{what}{name}: shape differs"
        if not np.array_equal(a[name], b[name], equal_nan=True):
            diff = np.abs(a[name].astype(np.float64) - b[name])
            diff = np.where(np.isnan(diff), np.inf, diff)  # NaN on one side only
            idx = np.unravel_index(int(np.argmax(diff)), diff.shape)
            raise AssertionError(f"{what}{name}: not identical; largest difference "
                                 f"{diff[idx]:.3e} at index {tuple(int(i) for i in idx)}")
