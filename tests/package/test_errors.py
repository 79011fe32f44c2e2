"""Bad input gets a clear Python exception naming the argument: ValueError
for a wrong shape or ndim, TypeError for a wrong dtype or a non-array. Never a
crash, never a silent wrong answer. NaN/Inf in the data are not errors: they
propagate as IEEE arithmetic says.
"""

import re

import numpy as np
import pytest

import rnnkit
from rnnkit import reference
from helpers import (CELLS, GATES, GRU_GRADS, LSTM_GRADS, assert_close, grads_dict,
                      make_case, pack, reference_forward_backward)

T, B, I, H = 3, 2, 5, 4
DT = np.float32


def named(*names):
    """A regex matching any of the argument names as a whole word (so that
    'x' is not found inside 'expected')."""
    return r"(?<![A-Za-z0-9_])(" + "|".join(re.escape(n) for n in names) + r")(?![A-Za-z0-9_])"


@pytest.fixture(params=CELLS)
def cell(request):
    return request.param


@pytest.fixture
def case(cell):
    return make_case(cell, T, B, I, H, DT, seed=20)


def forward(cell, x, w, h0=None, c0=None, **kw):
    if cell == "lstm":
        return rnnkit.lstm_forward(x, w, h0, c0, **kw)
    return rnnkit.gru_forward(x, w, h0, **kw)


def pack_with(cell, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    fn = rnnkit.pack_lstm if cell == "lstm" else rnnkit.pack_gru
    return fn(weight_ih, weight_hh, bias_ih, bias_hh)


# ---------------------------------------------------------------- x


def bad_x(case):
    x = case["x"]
    return {
        # (bad value, exception)
        "2-D": (x[0], ValueError),
        "4-D": (x[None], ValueError),
        "wrong I": (np.ascontiguousarray(x[..., :I - 1]), ValueError),
        "T=0": (x[:0], ValueError),
        "B=0": (x[:, :0], ValueError),
        "float64 with float32 weights": (x.astype(np.float64), TypeError),
        "int32": (np.ones(x.shape, np.int32), TypeError),
        "float16": (x.astype(np.float16), TypeError),
        "list": (x.tolist(), TypeError),
        "None": (None, TypeError),
    }


@pytest.mark.parametrize("which", ["2-D", "4-D", "wrong I", "T=0", "B=0",
                                   "float64 with float32 weights", "int32", "float16",
                                   "list", "None"])
def test_bad_x(cell, case, which):
    value, exc = bad_x(case)[which]
    w = pack(cell, case)
    with pytest.raises(exc, match=named("x")):
        forward(cell, value, w)
    # The cell API checks its x the same way (one time step fewer).
    if which in ("wrong I", "float64 with float32 weights", "int32", "list"):
        step = case["x"][0].tolist() if which == "list" else value[0]
        with pytest.raises(exc, match=named("x")):
            cell_call(cell, step, w)


def cell_call(cell, x, w, h=None, c=None, **kw):
    if cell == "lstm":
        return rnnkit.lstm_cell(x, w, h, c, **kw)
    return rnnkit.gru_cell(x, w, h, **kw)


def test_cell_x_wrong_ndim(cell, case):
    w = pack(cell, case)
    with pytest.raises(ValueError, match=named("x")):
        cell_call(cell, case["x"], w)  # (T, B, I) where (B, I) is expected


# ------------------------------------------------------------ h0 / c0


@pytest.mark.parametrize("which,shape,dtype,exc", [
    ("wrong H", (B, H + 1), DT, ValueError),
    ("wrong batch", (B + 1, H), DT, ValueError),
    ("1-D", (H,), DT, ValueError),
    ("3-D", (1, B, H), DT, ValueError),
    ("float64", (B, H), np.float64, TypeError),
    ("int64", (B, H), np.int64, TypeError),
])
# Only the LSTM has a cell state.
@pytest.mark.parametrize("cell,state", [("lstm", "h0"), ("lstm", "c0"), ("gru", "h0")])
def test_bad_initial_state(cell, case, state, which, shape, dtype, exc):
    w = pack(cell, case)
    states = dict(h0=case["h0"], c0=case.get("c0"))
    states[state] = np.zeros(shape, dtype)
    with pytest.raises(exc, match=named(state)):
        forward(cell, case["x"], w, **states)
    # The same state as a cell argument is called h / c.
    with pytest.raises(exc, match=named(state[0], state)):
        cell_call(cell, case["x"][0], w, states["h0"], states["c0"])


def test_state_as_list_is_a_type_error(cell, case):
    w = pack(cell, case)
    with pytest.raises(TypeError, match=named("h0")):
        forward(cell, case["x"], w, case["h0"].tolist(), case.get("c0"))


# ------------------------------------------------------------ weights


def test_weight_ih_rows_not_a_multiple_of_gates(cell):
    G = GATES[cell]
    with pytest.raises(ValueError, match=named("weight_ih")):
        pack_with(cell, np.zeros((G * H + 1, I), DT), np.zeros((G * H, H), DT))


def test_weight_hh_rows_not_a_multiple_of_gates(cell):
    G = GATES[cell]
    with pytest.raises(ValueError, match=named("weight_hh")):
        pack_with(cell, np.zeros((G * H, I), DT), np.zeros((G * H + 1, H), DT))


def test_weight_hh_not_square_in_hidden(cell):
    G = GATES[cell]
    # (G*H, H+1): the column count must equal the hidden size H = rows / G.
    with pytest.raises(ValueError, match=named("weight_hh")):
        pack_with(cell, np.zeros((G * H, I), DT), np.zeros((G * H, H + 1), DT))


def test_weight_ih_and_weight_hh_disagree_on_hidden_size(cell):
    G = GATES[cell]
    # Each is well formed on its own (hidden size H+1 vs H); either name is fine.
    with pytest.raises(ValueError, match=named("weight_ih", "weight_hh")):
        pack_with(cell, np.zeros((G * (H + 1), I), DT), np.zeros((G * H, H), DT))


@pytest.mark.parametrize("bad", ["1-D", "3-D"])
@pytest.mark.parametrize("name", ["weight_ih", "weight_hh"])
def test_weight_wrong_ndim(cell, name, bad):
    G = GATES[cell]
    args = dict(weight_ih=np.zeros((G * H, I), DT), weight_hh=np.zeros((G * H, H), DT))
    args[name] = args[name].ravel() if bad == "1-D" else args[name][None]
    with pytest.raises(ValueError, match=named(name)):
        pack_with(cell, **args)


@pytest.mark.parametrize("shape", ["short", "long", "2-D"])
@pytest.mark.parametrize("name", ["bias_ih", "bias_hh"])
def test_bias_wrong_shape(cell, name, shape):
    G = GATES[cell]
    bias = {"short": np.zeros(G * H - 1, DT), "long": np.zeros(G * H + 1, DT),
            "2-D": np.zeros((1, G * H), DT)}[shape]
    args = dict(bias_ih=np.zeros(G * H, DT), bias_hh=np.zeros(G * H, DT))
    args[name] = bias
    with pytest.raises(ValueError, match=named(name)):
        pack_with(cell, np.zeros((G * H, I), DT), np.zeros((G * H, H), DT), **args)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float16, np.complex64])
def test_weights_of_unsupported_dtype(cell, dtype):
    G = GATES[cell]
    with pytest.raises(TypeError, match=named("weight_ih")):
        pack_with(cell, np.zeros((G * H, I), dtype), np.zeros((G * H, H), DT))
    with pytest.raises(TypeError, match=named("weight_ih", "weight_hh")):
        pack_with(cell, np.zeros((G * H, I), dtype), np.zeros((G * H, H), dtype))


def test_weights_of_mixed_float_dtypes(cell):
    G = GATES[cell]
    with pytest.raises(TypeError, match=named("weight_ih", "weight_hh")):
        pack_with(cell, np.zeros((G * H, I), np.float32), np.zeros((G * H, H), np.float64))
    with pytest.raises(TypeError, match=named("weight_ih", "weight_hh")):
        pack_with(cell, np.zeros((G * H, I), np.float64), np.zeros((G * H, H), np.float32))


def test_weights_as_lists(cell):
    G = GATES[cell]
    with pytest.raises(TypeError, match=named("weight_ih")):
        pack_with(cell, np.zeros((G * H, I), DT).tolist(), np.zeros((G * H, H), DT))


@pytest.mark.parametrize("value,exc", [("no", TypeError), (None, TypeError), (0.0, TypeError),
                                       (2, ValueError), (-1, ValueError)])
def test_linear_before_reset_not_a_bool(value, exc):
    c = make_case("gru", T, B, I, H, DT, seed=20)
    with pytest.raises(exc, match=named("linear_before_reset")):
        rnnkit.pack_gru(c["weight_ih"], c["weight_hh"], linear_before_reset=value)


@pytest.mark.parametrize("value", [True, False, 1, 0, np.bool_(False), np.int64(1)])
def test_linear_before_reset_accepts_bools_and_0_1(value):
    # ONNX stores the attribute as an integer 0 or 1.
    c = make_case("gru", T, B, I, H, DT, seed=20)
    w = rnnkit.pack_gru(c["weight_ih"], c["weight_hh"], linear_before_reset=value)
    assert w.linear_before_reset is bool(value)


def test_linear_before_reset_is_for_the_gru_only():
    c = make_case("lstm", T, B, I, H, DT, seed=20)
    assert rnnkit.pack_lstm(c["weight_ih"], c["weight_hh"]).linear_before_reset is True
    with pytest.raises(TypeError):
        rnnkit.pack_lstm(c["weight_ih"], c["weight_hh"], linear_before_reset=False)
    with pytest.raises(ValueError, match=named("linear_before_reset")):
        rnnkit._core.pack("lstm", c["weight_ih"], c["weight_hh"], linear_before_reset=False)


# ---------------------------------------------- the packed weights argument


def test_pack_of_the_other_cell(case, cell):
    # An LSTM pack given to a GRU function (and vice versa) is named 'weights'.
    other = "gru" if cell == "lstm" else "lstm"
    w_other = pack(other, make_case(other, T, B, I, H, DT, seed=21))
    with pytest.raises(ValueError, match=named("weights")):
        forward(cell, case["x"], w_other, case["h0"], case.get("c0"))
    with pytest.raises(ValueError, match=named("weights")):
        cell_call(cell, case["x"][0], w_other, case["h0"], case.get("c0"))


@pytest.mark.parametrize("not_a_pack", ["array", "dict", "None"])
def test_weights_that_are_not_a_pack(case, cell, not_a_pack):
    value = {"array": np.zeros((GATES[cell] * H, I), DT), "dict": {}, "None": None}[not_a_pack]
    with pytest.raises(TypeError, match=named("weights")):
        forward(cell, case["x"], value)


def test_arguments_have_the_documented_names(case, cell):
    # The argument names the error messages use are the keywords users pass.
    w = pack(cell, case)
    if cell == "lstm":
        res = rnnkit.lstm_forward(x=case["x"], weights=w, h0=case["h0"], c0=case["c0"],
                                  reverse=True, training=False)
        assert len(res) == 3
        w2 = rnnkit.pack_lstm(weight_ih=case["weight_ih"], weight_hh=case["weight_hh"],
                              bias_ih=case["bias_ih"], bias_hh=case["bias_hh"])
    else:
        res = rnnkit.gru_forward(x=case["x"], weights=w, h0=case["h0"],
                                 reverse=True, training=False)
        assert len(res) == 2
        w2 = rnnkit.pack_gru(weight_ih=case["weight_ih"], weight_hh=case["weight_hh"],
                             bias_ih=case["bias_ih"], bias_hh=case["bias_hh"])
    assert w2.hidden_size == H and w2.input_size == I


def test_reverse_and_training_are_keyword_only(case, cell):
    w = pack(cell, case)
    with pytest.raises(TypeError):
        if cell == "lstm":
            rnnkit.lstm_forward(case["x"], w, case["h0"], case["c0"], True)
        else:
            rnnkit.gru_forward(case["x"], w, case["h0"], True)


# ------------------------------------------------------------------ backward


def forward_ctx(cell, case):
    return forward(cell, case["x"], pack(cell, case), case["h0"], case.get("c0"),
                   training=True)[-1]


def backward(cell, ctx, dy=None, dh_n=None, dc_n=None):
    if cell == "lstm":
        return rnnkit.lstm_backward(ctx, dy, dh_n, dc_n)
    return rnnkit.gru_backward(ctx, dy, dh_n)


@pytest.mark.parametrize("which,shape,dtype,exc", [
    ("wrong H", (T, B, H + 1), DT, ValueError),
    ("wrong T", (T + 1, B, H), DT, ValueError),
    ("wrong B", (T, B + 1, H), DT, ValueError),
    ("2-D", (B, H), DT, ValueError),
    ("float64", (T, B, H), np.float64, TypeError),
    ("int32", (T, B, H), np.int32, TypeError),
])
def test_bad_dy(cell, case, which, shape, dtype, exc):
    ctx = forward_ctx(cell, case)
    with pytest.raises(exc, match=named("dy")):
        backward(cell, ctx, dy=np.zeros(shape, dtype))


@pytest.mark.parametrize("which,shape,dtype,exc", [
    ("wrong H", (B, H + 1), DT, ValueError),
    ("wrong batch", (B + 1, H), DT, ValueError),
    ("3-D", (1, B, H), DT, ValueError),
    ("float64", (B, H), np.float64, TypeError),
])
@pytest.mark.parametrize("cell,name", [("lstm", "dh_n"), ("lstm", "dc_n"), ("gru", "dh_n")])
def test_bad_final_state_gradient(cell, case, name, which, shape, dtype, exc):
    ctx = forward_ctx(cell, case)
    with pytest.raises(exc, match=named(name)):
        backward(cell, ctx, **{name: np.zeros(shape, dtype)})


@pytest.mark.parametrize("cell,name", [("lstm", "dh"), ("lstm", "dc"), ("gru", "dh")])
def test_bad_cell_gradient(cell, case, name):
    w = pack(cell, case)
    ctx = cell_call(cell, case["x"][0], w, case["h0"], case.get("c0"), training=True)[-1]
    bad = {name: np.zeros((B, H + 1), DT)}
    with pytest.raises(ValueError, match=named(name)):
        if cell == "lstm":
            rnnkit.lstm_cell_backward(ctx, **bad)
        else:
            rnnkit.gru_cell_backward(ctx, **bad)


@pytest.mark.parametrize("not_a_ctx", ["object", "array", "None", "pack"])
def test_backward_of_something_that_is_not_a_ctx(cell, case, not_a_ctx):
    value = {"object": object(), "array": np.zeros(3, DT), "None": None,
             "pack": pack(cell, case)}[not_a_ctx]
    with pytest.raises(TypeError, match=named("ctx")):
        backward(cell, value)
    with pytest.raises(TypeError, match=named("ctx")):
        if cell == "lstm":
            rnnkit.lstm_cell_backward(value)
        else:
            rnnkit.gru_cell_backward(value)


def test_backward_of_the_wrong_kind_of_ctx(cell, case):
    # A ctx of the other cell, or a ctx of a T = 3 layer given to the cell
    # backward, would be a silently wrong answer: it must be rejected naming
    # ctx (TypeError or ValueError both fit). Whether a cell's ctx may go to
    # the layer backward (as a T = 1 layer) is left to the implementation.
    other = "gru" if cell == "lstm" else "lstm"
    other_ctx = forward_ctx(other, make_case(other, T, B, I, H, DT, seed=22))
    with pytest.raises((TypeError, ValueError), match=named("ctx")):
        backward(cell, other_ctx)
    other_cell_ctx = cell_call(other, case["x"][0], pack(other, make_case(other, T, B, I, H, DT)),
                               training=True)[-1]
    with pytest.raises((TypeError, ValueError), match=named("ctx")):
        if cell == "lstm":
            rnnkit.lstm_cell_backward(other_cell_ctx)
        else:
            rnnkit.gru_cell_backward(other_cell_ctx)
    layer_ctx = forward_ctx(cell, case)
    with pytest.raises((TypeError, ValueError), match=named("ctx")):
        if cell == "lstm":
            rnnkit.lstm_cell_backward(layer_ctx)
        else:
            rnnkit.gru_cell_backward(layer_ctx)


# ------------------------------------------------------------------- ISA


def test_set_isa_unknown_name():
    before = rnnkit.isa()
    with pytest.raises(ValueError):
        rnnkit.set_isa("bogus")
    with pytest.raises(ValueError):
        with rnnkit.use_isa("bogus"):
            pass
    assert rnnkit.isa() == before


def test_set_isa_not_supported_by_this_cpu():
    missing = [i for i in ("scalar", "avx2", "avx512", "neon")
               if i not in rnnkit.available_isas()]
    if not missing:
        pytest.skip("this CPU runs every ISA rnnkit knows")
    before = rnnkit.isa()
    for name in missing:
        with pytest.raises(RuntimeError):
            rnnkit.set_isa(name)
        assert rnnkit.isa() == before


# ------------------------------------------------------ NaN and Inf in data


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_nan_in_x_propagates(cell, isa, dtype, reverse):
    # One NaN in x[1, 0, 0]: through W_ih it reaches every gate of batch row
    # 0 at t = 1, and from there every later step (in processing order) of
    # that row. Row 1 never sees it and must stay finite and right.
    case = make_case(cell, T, B, I, H, dtype, seed=23)
    case["x"][1, 0, 0] = np.nan
    out, grads = rnnkit_run(cell, case, reverse)
    ref_out, _ = reference_forward_backward(cell, case, reverse)
    for name, ref in ref_out.items():
        got = out[name]
        assert np.array_equal(np.isnan(got), np.isnan(ref)), f"{name}: NaN pattern differs"
        assert np.any(np.isnan(got)), f"{name}: the NaN was lost"
        keep = ~np.isnan(ref)
        assert_close(got[keep], ref[keep], dtype, I + H, T, name=name)

    # Backward: dW_ih[:, 0] sums terms with x[1, 0, 0] = NaN; batch row 1's dx
    # never meets the NaN.
    assert np.all(np.isnan(grads["dw_ih"][:, 0]))
    assert np.all(np.isfinite(grads["dx"][:, 1]))


def test_inf_in_x_saturates_like_the_reference(cell, isa, dtype):
    # An infinite input drives its gate pre-activations to +-inf; IEEE
    # arithmetic then saturates sigmoid/tanh to exact 0/1/+-1, so the forward
    # outputs stay finite and equal the reference's.
    case = make_case(cell, T, B, I, H, dtype, seed=24)
    case["x"][1, 0, 0] = np.inf
    case["x"][2, 1, 3] = -np.inf
    out, _ = rnnkit_run(cell, case, reverse=False, backward=False)
    wts = (case["weight_ih"], case["weight_hh"], case["bias_ih"], case["bias_hh"])
    if cell == "lstm":
        ref = reference.lstm_forward(case["x"], *wts, case["h0"], case["c0"])
        ref_out = dict(y=ref[0], h_n=ref[1], c_n=ref[2])
    else:
        ref = reference.gru_forward(case["x"], *wts, case["h0"])
        ref_out = dict(y=ref[0], h_n=ref[1])
    for name, ref in ref_out.items():
        assert np.all(np.isfinite(ref))  # guards the premise of the test
        assert_close(out[name], ref, dtype, I + H, T, name=name)


def rnnkit_run(cell, case, reverse, backward=True):
    w = pack(cell, case)
    if cell == "lstm":
        y, h_n, c_n, ctx = rnnkit.lstm_forward(case["x"], w, case["h0"], case["c0"],
                                               reverse=reverse, training=True)
        out = dict(y=y, h_n=h_n, c_n=c_n)
        if backward:
            g = rnnkit.lstm_backward(ctx, case["dy"], case["dh_n"], case["dc_n"])
            return out, grads_dict(g, LSTM_GRADS)
    else:
        y, h_n, ctx = rnnkit.gru_forward(case["x"], w, case["h0"],
                                         reverse=reverse, training=True)
        out = dict(y=y, h_n=h_n)
        if backward:
            return out, grads_dict(rnnkit.gru_backward(ctx, case["dy"], case["dh_n"]),
                                   GRU_GRADS)
    return out, None
