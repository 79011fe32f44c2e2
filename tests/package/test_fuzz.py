"""Fuzz (hypothesis) over the raw API and the NumPy modules (issue 16).

The property: every call either gives the float64 reference's result
within the suite's tolerance (helpers.assert_close) or raises a clean
TypeError / ValueError / MemoryError. Inputs vary in shape, dtype, memory
layout (Fortran order, negative strides, strided views, broadcasts),
lengths and states; bad values vary in dtype, ndim, shape, type, NaN/inf
and flags of the wrong type. Bounded: a few hundred examples in all,
well under a minute.
"""

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import rnnkit  # noqa: E402
from rnnkit import reference  # noqa: E402
from helpers import (CELL_FORMS, GATES, accumulation_length, assert_close,  # noqa: E402
                      make_case, pack, reference_forward_backward, rnnkit_forward_backward)

CLEAN = (TypeError, ValueError, MemoryError)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- layouts: the same values in other memory ---------------------------------------------

def fortran(a):
    return np.asfortranarray(a)


def negative(a):
    return np.ascontiguousarray(a[(slice(None, None, -1),) * a.ndim])[(slice(None, None, -1),) * a.ndim]


def strided(a):
    big = np.full(a.shape[:-1] + (2 * a.shape[-1],), np.nan, a.dtype)
    big[..., ::2] = a
    return big[..., ::2]


LAYOUTS = {"contiguous": lambda a: a, "fortran": fortran, "negative": negative, "strided": strided}


def broadcast_rows(case, name):
    """Every row of a (B, H) state the same: a broadcast view (stride 0)."""
    row = case[name][:1].copy()
    case[name] = np.broadcast_to(row, case[name].shape)


@FUZZ
@given(cell=st.sampled_from(CELL_FORMS), T=st.integers(1, 5), B=st.integers(1, 4), I=st.integers(1, 19),
       H=st.integers(1, 19), dtype=st.sampled_from([np.float32, np.float64]), reverse=st.booleans(),
       isa=st.sampled_from(rnnkit.available_isas()),
       layouts=st.dictionaries(st.sampled_from(["x", "weight_ih", "weight_hh", "bias_ih", "h0", "c0", "dy", "dh_n"]),
                               st.sampled_from(sorted(LAYOUTS)), max_size=4),
       broadcast=st.sets(st.sampled_from(["h0", "c0", "dh_n", "dc_n"]), max_size=2),
       none=st.sets(st.sampled_from(["h0", "c0", "bias_ih", "bias_hh", "dy", "dh_n", "dc_n"]), max_size=3),
       seed=st.integers(0, 2**31))
def test_raw_layer_any_layout_matches_reference(cell, T, B, I, H, dtype, reverse, isa, layouts, broadcast, none,
                                                seed):
    base = "gru" if cell == "gru_no_lbr" else cell
    case = make_case(cell, T, B, I, H, dtype, seed, none=tuple(sorted(none)))
    for name in broadcast:
        if case.get(name) is not None:
            broadcast_rows(case, name)
    ref_out, ref_grads = reference_forward_backward(cell, case, reverse)
    laid = {k: (LAYOUTS[layouts[k]](v) if k in layouts and v is not None else v) for k, v in case.items()}
    with rnnkit.use_isa(isa):
        out, grads = rnnkit_forward_backward(cell, laid, reverse, pack(cell, laid))
    for name, value in {**out, **grads}.items():
        ref = {**ref_out, **ref_grads}[name]
        assert_close(value, ref, dtype, accumulation_length(name, base, T, B, I, H), T, name)


# ---- bad values ------------------------------------------------------------------------------

def corrupt(value, how):
    """One bad variant of an array argument."""
    a = np.asarray(value)
    return {
        "int32": lambda: a.astype(np.int32),
        "float16": lambda: a.astype(np.float16),
        "complex": lambda: a.astype(np.complex64),
        "bool": lambda: a.astype(bool),
        "object": lambda: a.astype(object),
        "big-endian": lambda: a.astype(a.dtype.newbyteorder(">")),
        "extra-axis": lambda: a[None],
        "fewer-axes": lambda: a.reshape(-1)[: max(1, a.size // 2)] if a.ndim > 1 else np.asarray(a[0]),
        "longer-last": lambda: np.concatenate([a, a[..., :1]], axis=-1),
        "list": lambda: a.tolist(),
        "string": lambda: "x",
        "empty": lambda: a[:0],
    }[how]()


ARRAY_BAD = ["int32", "float16", "complex", "bool", "object", "big-endian", "extra-axis", "fewer-axes",
             "longer-last", "list", "string", "empty"]
FLAG_BAD = ["yes", 2, None, 1.0, [True]]


def run_raw(cell, case, w, flags):
    """pack -> forward (training) -> backward, and one cell step, with flags."""
    if cell == "lstm":
        ctx = rnnkit.lstm_forward(case["x"], w, case["h0"], case["c0"], **flags)[-1]
        rnnkit.lstm_backward(ctx, case["dy"], case["dh_n"], case["dc_n"])
        ctx = rnnkit.lstm_cell(case["x"][0], w, case["h0"], case["c0"], training=True)[-1]
        return rnnkit.lstm_cell_backward(ctx, case["dh_n"], case["dc_n"])
    ctx = rnnkit.gru_forward(case["x"], w, case["h0"], **flags)[-1]
    rnnkit.gru_backward(ctx, case["dy"], case["dh_n"])
    ctx = rnnkit.gru_cell(case["x"][0], w, case["h0"], training=True)[-1]
    return rnnkit.gru_cell_backward(ctx, case["dh_n"])


@FUZZ
@given(cell=st.sampled_from(["lstm", "gru"]), dtype=st.sampled_from([np.float32, np.float64]),
       target=st.sampled_from(["x", "weight_ih", "weight_hh", "bias_ih", "h0", "c0", "dy", "dh_n", "dc_n",
                               "reverse", "training", "update"]),
       how=st.sampled_from(ARRAY_BAD), flag=st.sampled_from(FLAG_BAD), seed=st.integers(0, 2**31))
def test_raw_api_bad_values_are_clean_errors(cell, dtype, target, how, flag, seed):
    T, B, I, H = 3, 2, 5, 4
    case = make_case(cell, T, B, I, H, dtype, seed)
    flags = {"training": True}
    if target in ("reverse", "training"):
        flags[target] = flag
    elif target == "update":
        with pytest.raises(CLEAN):
            pack(cell, case).update(corrupt(case["weight_ih"], how), case["weight_hh"])
        return
    corrupted = target in case  # the GRU has no c0 / dc_n: nothing to corrupt there
    if corrupted:
        case[target] = corrupt(case[target], how)
    try:
        w = pack(cell, case)
        run_raw(cell, case, w, flags)
    except CLEAN as exc:
        assert "Invoked with" not in str(exc) and "incompatible function arguments" not in str(exc), exc
        return
    # Accepted: only a call in which nothing was corrupted may get here.
    assert not corrupted and target not in ("reverse", "training"), (target, how, flag)


@FUZZ
@given(cell=st.sampled_from(["lstm", "gru"]), dtype=st.sampled_from([np.float32, np.float64]),
       value=st.sampled_from([np.nan, np.inf, -np.inf]), where=st.sampled_from(["x", "h0", "weight_hh"]),
       seed=st.integers(0, 2**31))
def test_nan_and_inf_propagate_without_error(cell, dtype, value, where, seed):
    # Not errors: IEEE arithmetic, as the reference does it.
    T, B, I, H = 3, 2, 5, 4
    case = make_case(cell, T, B, I, H, dtype, seed)
    case[where] = case[where].copy()
    case[where].flat[seed % case[where].size] = value
    out, _ = rnnkit_forward_backward(cell, case, False, pack(cell, case))
    with np.errstate(all="ignore"):
        ref, _ = reference_forward_backward(cell, case, False)
    for name in out:
        np.testing.assert_array_equal(np.isnan(out[name]), np.isnan(ref[name]), err_msg=name)


# ---- the modules --------------------------------------------------------------------------

@FUZZ
@given(mode=st.sampled_from(["LSTM", "GRU"]), num_layers=st.integers(1, 2), bidirectional=st.booleans(),
       batch_first=st.booleans(), bias=st.booleans(), lbr=st.booleans(), dtype=st.sampled_from([np.float32,
                                                                                               np.float64]),
       T=st.integers(1, 5), B=st.integers(1, 4), I=st.integers(1, 9), H=st.integers(1, 9),
       with_lengths=st.booleans(), with_state=st.booleans(), layout=st.sampled_from(sorted(LAYOUTS)),
       seed=st.integers(0, 2**31))
def test_modules_match_reference(mode, num_layers, bidirectional, batch_first, bias, lbr, dtype, T, B, I, H,
                                 with_lengths, with_state, layout, seed):
    rng = np.random.default_rng(seed)
    kw = {"linear_before_reset": lbr} if mode == "GRU" else {}
    m = getattr(rnnkit, mode)(I, H, num_layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional,
                              dtype=dtype, seed=seed, **kw)
    D = 2 if bidirectional else 1
    x = (0.5 * rng.standard_normal((T, B, I))).astype(dtype)
    lengths = rng.integers(1, T + 1, B) if with_lengths else None
    h0 = (0.5 * rng.standard_normal((num_layers * D, B, H))).astype(dtype) if with_state else None
    c0 = (0.5 * rng.standard_normal((num_layers * D, B, H))).astype(dtype) if with_state else None
    dy = rng.standard_normal((T, B, D * H)).astype(dtype)
    x_in = LAYOUTS[layout](x.transpose(1, 0, 2) if batch_first else x)
    hx = None if not with_state else ((h0, c0) if mode == "LSTM" else h0)
    y, _ = m(x_in, hx, lengths=lengths)
    dx, _ = m.backward(LAYOUTS[layout](dy.transpose(1, 0, 2) if batch_first else dy))
    if batch_first:
        y, dx = y.transpose(1, 0, 2), dx.transpose(1, 0, 2)
    ry, _, _, cache = reference.rnn_forward(mode, x, m.parameters(), num_layers, bidirectional, h0,
                                            c0 if mode == "LSTM" else None, lengths,
                                            linear_before_reset=m.linear_before_reset)
    rdx, _, _, rgrads = reference.rnn_backward(dy, None, None, cache)
    steps = T * num_layers
    assert_close(y, ry, dtype, max(I, D * H) + H, steps, "y")
    assert_close(dx, rdx, dtype, GATES[mode.lower()] * H * D, steps, "dx")
    for name, g in m.grads.items():
        assert_close(g, rgrads[name], dtype, T * B, steps, name)


@FUZZ
@given(mode=st.sampled_from(["LSTM", "GRU"]),
       arg=st.sampled_from(["x-dtype", "x-ndim", "x-size", "hx", "lengths-float", "lengths-range", "lengths-shape",
                            "dy-shape", "dy-ndim", "ctor"]),
       ctor=st.sampled_from([("hidden_size", 2.0), ("num_layers", 0), ("bias", "yes"), ("batch_first", 2),
                             ("bidirectional", None), ("dropout", -0.1), ("dropout", "x"), ("dtype", np.int16),
                             ("input_size", True)]),
       seed=st.integers(0, 2**31))
def test_modules_bad_values_are_clean_errors(mode, arg, ctor, seed):
    T, B, I, H = 3, 2, 4, 5
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    cls = getattr(rnnkit, mode)
    if arg == "ctor":
        with pytest.raises(CLEAN) as info:
            cls(**{"input_size": I, "hidden_size": H, ctor[0]: ctor[1]})
        assert "Invoked with" not in str(info.value)
        return
    with pytest.raises(CLEAN) as info:
        m = cls(I, H, seed=seed)
        bad = {"x-dtype": (x.astype(np.float64), None, None), "x-ndim": (x[None], None, None),
               "x-size": (x[..., :-1], None, None), "hx": (x, np.zeros((2, B, H), np.float32), None),
               "lengths-float": (x, None, np.full(B, 2.0)), "lengths-range": (x, None, np.full(B, T + 1)),
               "lengths-shape": (x, None, np.full(B + 1, T))}
        if arg in bad:
            m(*bad[arg][:2], lengths=bad[arg][2])
        y, _ = m(x)
        m.backward(y[..., :-1] if arg == "dy-shape" else y[0])
    assert "Invoked with" not in str(info.value)
