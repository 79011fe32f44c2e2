"""Argument edges of every public NumPy-side entry point (issue 16, item 8).

Flags take True/False only (numpy bools too; linear_before_reset also the
integers 0 and 1 ONNX stores); sizes, layer indices and lengths take
integers only (numpy integer dtypes too, floats are a TypeError even when
whole). Every refusal is a short TypeError or ValueError naming the
argument, never pybind11's signature dump.
"""

import re

import numpy as np
import pytest

import rnnkit
from rnnkit import interchange as ic
from rnnkit import layers

from helpers import require_optional

T, B, I, H = 3, 2, 5, 4
DT = np.float32
RNG = np.random.default_rng(7)


def arr(*shape, dtype=DT):
    return RNG.standard_normal(shape).astype(dtype)


def weights(G, dtype=DT):
    return arr(G * H, I, dtype=dtype), arr(G * H, H, dtype=dtype), arr(G * H, dtype=dtype), arr(G * H, dtype=dtype)


LSTM_W = rnnkit.pack_lstm(*weights(4))
GRU_W = rnnkit.pack_gru(*weights(3))
X = arr(T, B, I)


def refused(call, name, exc=(TypeError, ValueError)):
    """call() raises exc with a short message naming ``name`` and no pybind11 signature."""
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    assert re.search(r"(?<![A-Za-z0-9_])" + re.escape(name) + r"(?![A-Za-z0-9_])", msg), msg
    assert "incompatible function arguments" not in msg and "Invoked with" not in msg, msg
    assert len(msg) < 400, msg


# ---- flags ------------------------------------------------------------------------------

BAD_FLAGS = ["yes", 2, None, 1.0, np.array([True]), [True]]


def flag_calls():
    """(entry point, flag name, call taking the flag's value)."""
    mods = {"LSTM": rnnkit.LSTM(I, H), "GRU": rnnkit.GRU(I, H)}
    packs2 = layers.pack_layer_weights("lstm", {k: v for k, v in mods["LSTM"].parameters().items()},
                                       num_layers=1, bidirectional=False)
    yield "lstm_forward", "reverse", lambda v: rnnkit.lstm_forward(X, LSTM_W, reverse=v)
    yield "lstm_forward", "training", lambda v: rnnkit.lstm_forward(X, LSTM_W, training=v)
    yield "gru_forward", "reverse", lambda v: rnnkit.gru_forward(X, GRU_W, reverse=v)
    yield "gru_forward", "training", lambda v: rnnkit.gru_forward(X, GRU_W, training=v)
    yield "lstm_cell", "training", lambda v: rnnkit.lstm_cell(X[0], LSTM_W, training=v)
    yield "gru_cell", "training", lambda v: rnnkit.gru_cell(X[0], GRU_W, training=v)
    yield "rnn_forward", "training", lambda v: layers.rnn_forward("lstm", X, packs2, num_layers=1,
                                                                  bidirectional=False, training=v)
    yield "rnn_forward", "bidirectional", lambda v: layers.rnn_forward("lstm", X, packs2, num_layers=1,
                                                                       bidirectional=v)
    yield "pack_layer_weights", "bias", lambda v: layers.pack_layer_weights(
        "lstm", mods["LSTM"].parameters(), num_layers=1, bidirectional=False, bias=v)
    for name in ("bias", "batch_first", "bidirectional"):
        yield "LSTM", name, lambda v, name=name: rnnkit.LSTM(I, H, **{name: v})
        yield "GRU", name, lambda v, name=name: rnnkit.GRU(I, H, **{name: v})
    yield "LSTM.train", "mode", lambda v: mods["LSTM"].train(v)
    yield "to_state_dict", "tensors", lambda v: ic.to_state_dict(mods["LSTM"].parameters(), tensors=v)
    yield "layer_from_keras", "bidirectional", lambda v: ic.layer_from_keras(
        "LSTM", [ic.to_keras_lstm(mods["LSTM"].parameters())], bidirectional=v)
    yield "layer_from_keras", "batch_first", lambda v: ic.layer_from_keras(
        "LSTM", [ic.to_keras_lstm(mods["LSTM"].parameters())], batch_first=v)
    # Without a bias, either form is valid.
    yield "from_keras_gru", "reset_after", lambda v: ic.from_keras_gru(
        *ic.to_keras_gru(mods["GRU"].parameters())[:2], None, reset_after=v)
    bi = rnnkit.LSTM(I, H, bidirectional=True).parameters()
    yield "to_keras_lstm", "reverse", lambda v: ic.to_keras_lstm(bi, reverse=v)


FLAG_CALLS = list(flag_calls())


@pytest.mark.parametrize("entry,name,call", FLAG_CALLS, ids=[f"{e}-{n}" for e, n, _ in FLAG_CALLS])
@pytest.mark.parametrize("value", BAD_FLAGS, ids=repr)
def test_flags_take_bools_only(entry, name, call, value):
    if value is None and name == "reset_after":
        pytest.skip("reset_after=None means: tell the form from the bias")
    refused(lambda: call(value), name, TypeError)


@pytest.mark.parametrize("entry,name,call", FLAG_CALLS, ids=[f"{e}-{n}" for e, n, _ in FLAG_CALLS])
@pytest.mark.parametrize("value", [True, False, np.bool_(True), np.bool_(False)], ids=repr)
def test_flags_take_python_and_numpy_bools(entry, name, call, value):
    if entry in ("layer_from_keras", "rnn_forward") and name == "bidirectional" and value:
        pytest.skip("one direction's weights are not a bidirectional layer")
    if entry == "to_state_dict" and value:
        require_optional("torch")   # tensors=True makes torch tensors
    call(value)


@pytest.mark.parametrize("call", [
    lambda v: rnnkit.pack_gru(*weights(3), linear_before_reset=v),
    lambda v: rnnkit.GRU(I, H, linear_before_reset=v),
    lambda v: ic.to_keras_gru(rnnkit.GRU(I, H).parameters(), linear_before_reset=v),
    lambda v: ic.to_onnx_gru(rnnkit.GRU(I, H).parameters(), linear_before_reset=v),
    lambda v: layers.pack_layer_weights("gru", rnnkit.GRU(I, H).parameters(), num_layers=1, bidirectional=False,
                                        linear_before_reset=v),
])
def test_linear_before_reset_everywhere(call):
    # ONNX's integer attribute values 0 and 1 count, any other value is refused.
    call(0), call(1), call(True), call(np.bool_(False))
    refused(lambda: call(2), "linear_before_reset", ValueError)
    for bad in ("yes", None, 1.0):
        refused(lambda: call(bad), "linear_before_reset", TypeError)


# ---- sizes, indices, lengths ------------------------------------------------------------

def params(cell="LSTM", **kw):
    return (rnnkit.LSTM if cell == "LSTM" else rnnkit.GRU)(I, H, **kw).parameters()


@pytest.mark.parametrize("call,name,exc", [
    (lambda: ic.to_keras_lstm(params(), layer=-1), "layer", ValueError),
    (lambda: ic.to_keras_lstm(params(), layer=1.0), "layer", TypeError),
    (lambda: ic.to_keras_gru(params("GRU"), layer=True), "layer", TypeError),
    (lambda: ic.from_keras_lstm(*ic.to_keras_lstm(params()), layer=-1), "layer", ValueError),
    (lambda: ic.from_keras_gru(*ic.to_keras_gru(params("GRU")), layer=-2), "layer", ValueError),
    (lambda: ic.to_onnx_lstm(params(), layer=-1), "layer", ValueError),
    (lambda: ic.to_onnx_gru(params("GRU"), layer="0"), "layer", TypeError),
    (lambda: ic.to_onnx_lstm(params(), layout=True), "layout", TypeError),
    (lambda: ic.to_onnx_lstm(params(), layout=2), "layout", ValueError),
    (lambda: ic.to_onnx_lstm(params(), direction=1), "direction", ValueError),
    (lambda: ic.check_params("LSTM", params(), num_layers=-1), "num_layers", ValueError),
    (lambda: ic.check_params("LSTM", params(), num_layers=1.0), "num_layers", TypeError),
    (lambda: ic.check_params("LSTM", params(), hidden_size=0), "hidden_size", ValueError),
    (lambda: ic.check_params("LSTM", params(), bidirectional="no"), "bidirectional", TypeError),
    (lambda: ic.check_params("LSTM", [1, 2]), "params", TypeError),
    (lambda: ic.check_params("RNN", params()), "mode", ValueError),
    (lambda: ic.from_state_dict(params(), "LSTM", num_layers=0), "num_layers", ValueError),
    (lambda: ic.from_state_dict(params(), "LSTM", prefix=3), "prefix", TypeError),
    (lambda: ic.from_state_dict([("a", 1)], "LSTM"), "state_dict", TypeError),
    (lambda: ic.layer_from_keras("LSTM", 3), "weights", TypeError),
    (lambda: ic.run_onnx_rnn("LSTM", {"layout": "x"}, *onnx_inputs()), "layout", TypeError),
    (lambda: ic.run_onnx_rnn("LSTM", {"hidden_size": 2.0}, *onnx_inputs()), "hidden_size", TypeError),
    (lambda: ic.run_onnx_rnn("LSTM", {"hidden_size": -4}, *onnx_inputs()), "hidden_size", ValueError),
    (lambda: ic.run_onnx_rnn("LSTM", [("layout", 0)], *onnx_inputs()), "attributes", TypeError),
    (lambda: ic.run_onnx_rnn(4, None, *onnx_inputs()), "op_type", ValueError),
    (lambda: ic.run_onnx_rnn("LSTM", None, *onnx_inputs(), sequence_lens=np.array([2.0, 3.0])),
     "sequence_lens", TypeError),
    (lambda: layers.param_shapes("RNN", I, H, 1, False), "cell", ValueError),
    (lambda: layers.rnn_forward("lstm", X, LSTM_W, num_layers=1, bidirectional=False), "packed", TypeError),
    (lambda: layers.rnn_forward("lstm", X, [LSTM_W, "w"], num_layers=2, bidirectional=False), "packed[1]",
     TypeError),
    (lambda: layers.rnn_forward("lstm", X, [LSTM_W], num_layers=1.0, bidirectional=False), "num_layers", TypeError),
    (lambda: layers.rnn_forward("lstm", X, [LSTM_W], num_layers=1, bidirectional=False, dropout="0.5"), "dropout",
     TypeError),
    (lambda: layers.rnn_forward("lstm", X, [LSTM_W], num_layers=1, bidirectional=False, dropout=float("nan")),
     "dropout", ValueError),
    (lambda: rnnkit.LSTM(I, 4.0), "hidden_size", TypeError),
    (lambda: rnnkit.LSTM(I, H, num_layers=0), "num_layers", ValueError),
    (lambda: rnnkit.LSTM(I, H, dropout="0.1"), "dropout", TypeError),
    (lambda: rnnkit.LSTM(I, H, dropout=1.5), "dropout", ValueError),
    (lambda: rnnkit.LSTM(I, H, dtype="int16"), "dtype", TypeError),
    (lambda: rnnkit.LSTM(I, H, dtype="no such dtype"), "dtype", TypeError),
    (lambda: rnnkit.LSTM(I, H, seed=1.5), "seed", TypeError),
    (lambda: rnnkit.set_isa(3), "name", TypeError),
    (lambda: rnnkit.set_isa(None), "name", TypeError),
    (lambda: rnnkit.use_isa(2).__enter__(), "name", TypeError),
])
def test_sizes_indices_and_options(call, name, exc):
    refused(call, name, exc)


def onnx_inputs():
    W, R, B_ = ic.to_onnx_lstm(params())[0].values()
    return RNG.standard_normal((T, B, I)).astype(DT), W, R, B_


LENGTH_CALLS = {
    "rnn_forward lengths": (lambda v: layers.rnn_forward("lstm", X, [LSTM_W], num_layers=1, bidirectional=False,
                                                         lengths=v), "lengths"),
    "module lengths": (lambda v: rnnkit.LSTM(I, H)(X, lengths=v), "lengths"),
    "lstm_forward batch_sizes": (lambda v: rnnkit.lstm_forward(X.reshape(T * B, I), LSTM_W, batch_sizes=v),
                                 "batch_sizes"),
    "gru_forward batch_sizes": (lambda v: rnnkit.gru_forward(X.reshape(T * B, I), GRU_W, batch_sizes=v),
                                "batch_sizes"),
    "rnn_forward batch_sizes": (lambda v: layers.rnn_forward("lstm", X.reshape(T * B, I), [LSTM_W], num_layers=1,
                                                             bidirectional=False, batch_sizes=v), "batch_sizes"),
}


@pytest.mark.parametrize("which", sorted(LENGTH_CALLS))
def test_lengths_are_integers_only(which):
    call, name = LENGTH_CALLS[which]
    n = B if "lengths" in which else T
    good = np.full(n, T if "lengths" in which else B)
    call(good), call(good.astype(np.int32)), call(good.astype(np.uint8)), call(good.tolist())
    # One rule: a float array is refused even when every value is whole.
    for bad in (good.astype(np.float64), good.astype(np.float64) - 0.5, good.astype(bool), good.astype(str)):
        refused(lambda: call(bad), name, TypeError)
    refused(lambda: call(np.zeros(n, int)), name, ValueError)
    refused(lambda: call(good[:, None]), name, ValueError)


# ---- arrays: dtype, ndim, shape ------------------------------------------------------------

def module_after_call(cls=rnnkit.LSTM):
    m = cls(I, H)
    m(X)
    return m


ARRAY_CALLS = [
    ("update weight_ih dtype", lambda: LSTM_W.update(*weights(4, np.float64)), "weight_ih"),
    ("update weight_hh shape", lambda: LSTM_W.update(weights(4)[0], arr(4 * H, H + 1)), "weight_hh"),
    ("update bias_ih ndim", lambda: LSTM_W.update(*weights(4)[:2], arr(1, 4 * H)), "bias_ih"),
    ("update list", lambda: GRU_W.update([[0.0]], weights(3)[1]), "weight_ih"),
    ("rnn_forward x int", lambda: layers.rnn_forward("lstm", X.astype(int), [LSTM_W], num_layers=1,
                                                     bidirectional=False), "x"),
    ("rnn_forward x 4-D", lambda: layers.rnn_forward("lstm", X[None], [LSTM_W], num_layers=1,
                                                     bidirectional=False), "x"),
    ("rnn_forward x dtype vs weights", lambda: layers.rnn_forward("lstm", X.astype(np.float64), [LSTM_W],
                                                                  num_layers=1, bidirectional=False), "packed[0]"),
    ("rnn_forward hx shape", lambda: layers.rnn_forward("lstm", X, [LSTM_W], arr(1, B + 1, H), num_layers=1,
                                                        bidirectional=False), "hx"),
    ("rnn_forward cx dtype", lambda: layers.rnn_forward("lstm", X, [LSTM_W], None, arr(1, B, H, dtype=np.float64),
                                                        num_layers=1, bidirectional=False), "cx"),
    ("rnn_forward gru cx", lambda: layers.rnn_forward("gru", X, [GRU_W], None, arr(1, B, H), num_layers=1,
                                                      bidirectional=False), "cx"),
    ("rnn_backward ctx", lambda: layers.rnn_backward(object()), "ctx"),
    ("rnn_backward dy shape", lambda: layers.rnn_backward(layers.rnn_forward(
        "lstm", X, [LSTM_W], num_layers=1, bidirectional=False, training=True)[3], arr(T, B, H + 1)), "dy"),
    ("module x dtype", lambda: rnnkit.LSTM(I, H)(X.astype(np.float64)), "x"),
    ("module x 1-D", lambda: rnnkit.LSTM(I, H)(X[0, 0]), "x"),
    ("module x input size", lambda: rnnkit.LSTM(I, H)(arr(T, B, I + 1)), "x"),
    ("module hx not a pair", lambda: rnnkit.LSTM(I, H)(X, arr(1, B, H)), "hx"),
    ("module gru hx pair", lambda: rnnkit.GRU(I, H)(X, (arr(1, B, H), arr(1, B, H))), "hx"),
    ("module hx shape", lambda: rnnkit.GRU(I, H)(X, arr(2, B, H)), "hx"),
    ("module dy ndim", lambda: module_after_call().backward(arr(T, H)), "dy"),
    ("module dy shape", lambda: module_after_call().backward(arr(T, B, H + 1)), "dy"),
    ("module dy dtype", lambda: module_after_call(rnnkit.GRU).backward(arr(T, B, H, dtype=np.float64)), "dy"),
    ("module load_state_dict shape", lambda: rnnkit.LSTM(I, H).load_state_dict(
        {**params(), "weight_hh_l0": arr(4 * H, H + 1)}), "weight_hh_l0"),
    ("keras kernel int", lambda: ic.from_keras_lstm(np.zeros((I, 4 * H), int), arr(H, 4 * H)), "kernel"),
    ("keras recurrent 3-D", lambda: ic.from_keras_lstm(arr(I, 4 * H), arr(1, H, 4 * H)), "recurrent_kernel"),
    ("keras bias shape", lambda: ic.from_keras_gru(arr(I, 3 * H), arr(H, 3 * H), arr(3, 3 * H)), "bias"),
    ("onnx W 2-D", lambda: ic.from_onnx_lstm(arr(4 * H, I), arr(1, 4 * H, H)), "W"),
    ("onnx R dtype", lambda: ic.from_onnx_gru(arr(1, 3 * H, I), arr(1, 3 * H, H, dtype=np.float64)), "R"),
    ("onnx B shape", lambda: ic.from_onnx_gru(arr(1, 3 * H, I), arr(1, 3 * H, H), arr(1, 3 * H)), "B"),
    ("onnx X dtype", lambda: ic.run_onnx_rnn("LSTM", None, onnx_inputs()[0].astype(np.float64),
                                             *onnx_inputs()[1:]), "X"),
    ("onnx initial_h shape", lambda: ic.run_onnx_rnn("LSTM", None, *onnx_inputs(), initial_h=arr(1, B, H + 1)),
     "initial_h"),
    ("state_dict dtype", lambda: ic.from_state_dict({k: v.astype(int) for k, v in params().items()}, "LSTM"),
     "state_dict['weight_ih_l0']"),
]


@pytest.mark.parametrize("what,call,name", ARRAY_CALLS, ids=[w for w, _, _ in ARRAY_CALLS])
def test_bad_arrays_are_named(what, call, name):
    refused(call, name)


def test_run_onnx_node_bad_inputs():
    onnx = require_optional("onnx")
    node = onnx.helper.make_node("LSTM", ["X", "W", "R"], ["Y"], hidden_size=H)
    X_, W, R, _ = onnx_inputs()
    refused(lambda: ic.run_onnx_node(node, [X_, W]), "inputs", ValueError)
    refused(lambda: ic.run_onnx_node(node, {"X": X_, "W": W}), "inputs", ValueError)
    refused(lambda: ic.run_onnx_node(node, [X_.astype(int), W, R]), "X", TypeError)
    refused(lambda: ic.run_onnx_node(node, [X_[0], W, R]), "X", ValueError)
