"""rnnkit.interchange: torch state_dicts, Keras and ONNX weights.

Round trips must be exact (a reorder or transpose changes no value). The
semantics are checked against independent oracles: torch.nn.LSTM/GRU, and a
NumPy implementation of Keras's LSTM/GRU written here from Keras's documented
cell math (gates i, f, c, o and z, r, h; both reset_after forms), fed with
converted weights. float32 results are held to the helpers' float32 rule
against a float64 oracle on the same (rounded) values.
"""

import math

import numpy as np
import pytest

from helpers import assert_close, require_optional
from rnnkit import interchange as ic
from rnnkit import layers, reference

T, B, I, H = 5, 3, 4, 6   # I != H, so a transposed kernel cannot pass for the right one
LENGTHS = [3, T, 1]
DTYPES = [np.float32, np.float64]
GATES = {"LSTM": 4, "GRU": 3}


@pytest.fixture(scope="module")
def torch():
    return require_optional("torch")


def random_params(mode, dtype, *, num_layers=1, bidirectional=False, bias=True, seed=0):
    """A params dict with every entry ~ U(-1/sqrt(H), 1/sqrt(H)) (torch's init)."""
    rng = np.random.default_rng([seed, num_layers, int(bidirectional), GATES[mode]])
    shapes = layers.param_shapes(mode, I, H, num_layers, bidirectional, bias)
    k = 1.0 / math.sqrt(H)
    return {name: rng.uniform(-k, k, shape).astype(dtype) for name, shape in shapes.items()}


def assert_same(a, b, what):
    """Exact equality of two {name: array} dicts (keys, dtypes, shapes, values)."""
    assert set(a) == set(b), f"{what}: keys differ: {sorted(set(a) ^ set(b))}"
    for name in a:
        x, y = np.asarray(a[name]), np.asarray(b[name])
        assert x.dtype == y.dtype and x.shape == y.shape, f"{what}[{name}]: {x.dtype}{x.shape} vs {y.dtype}{y.shape}"
        assert np.array_equal(x, y), f"{what}[{name}]: values differ"


# ---- Keras's cells, from Keras's documented math (float64, batch-major) ------------

def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def keras_lstm(x, kernel, recurrent_kernel, bias):
    """keras.layers.LSTM (tanh / sigmoid, return_sequences=True): x (B, T, I) -> (y, h, c)."""
    x, kernel, recurrent_kernel = (np.asarray(a, np.float64) for a in (x, kernel, recurrent_kernel))
    units = recurrent_kernel.shape[0]
    h = np.zeros((x.shape[0], units))
    c = np.zeros_like(h)
    ys = []
    for t in range(x.shape[1]):
        z = x[:, t] @ kernel + h @ recurrent_kernel + (0.0 if bias is None else np.asarray(bias, np.float64))
        z0, z1, z2, z3 = np.split(z, 4, axis=1)
        i, f, o = sigmoid(z0), sigmoid(z1), sigmoid(z3)
        c = f * c + i * np.tanh(z2)
        h = o * np.tanh(c)
        ys.append(h)
    return np.stack(ys, axis=1), h, c


def keras_gru(x, kernel, recurrent_kernel, bias, reset_after):
    """keras.layers.GRU (tanh / sigmoid): x (B, T, I) -> (y, h). bias (2, 3H)
    = [input; recurrent] with reset_after, else (3H,) on the input side."""
    x, kernel, recurrent_kernel = (np.asarray(a, np.float64) for a in (x, kernel, recurrent_kernel))
    units = recurrent_kernel.shape[0]
    input_bias, recurrent_bias = 0.0, 0.0
    if bias is not None:
        bias = np.asarray(bias, np.float64)
        input_bias, recurrent_bias = (bias[0], bias[1]) if reset_after else (bias, 0.0)
    h = np.zeros((x.shape[0], units))
    ys = []
    for t in range(x.shape[1]):
        x_z, x_r, x_h = np.split(x[:, t] @ kernel + input_bias, 3, axis=1)
        if reset_after:
            inner = h @ recurrent_kernel + recurrent_bias
        else:
            inner = h @ recurrent_kernel[:, :2 * units]
        z = sigmoid(x_z + inner[:, :units])
        r = sigmoid(x_r + inner[:, units:2 * units])
        if reset_after:
            recurrent_h = r * inner[:, 2 * units:]
        else:
            recurrent_h = (r * h) @ recurrent_kernel[:, 2 * units:]
        hh = np.tanh(x_h + recurrent_h)
        h = z * h + (1.0 - z) * hh
        ys.append(h)
    return np.stack(ys, axis=1), h


def keras_weights(mode, dtype, reset_after=True, use_bias=True, seed=0, input_size=I):
    """Random weights of one Keras layer, as layer.get_weights() returns them."""
    rng = np.random.default_rng([seed, GATES[mode], int(reset_after)])
    G = GATES[mode]
    w = [rng.uniform(-0.5, 0.5, (input_size, G * H)), rng.uniform(-0.5, 0.5, (H, G * H))]
    if use_bias:
        w.append(rng.uniform(-0.5, 0.5, (2, G * H) if mode == "GRU" and reset_after else (G * H,)))
    return [a.astype(dtype) for a in w]


def keras_model(mode, layers_weights, x, reset_after=True, bidirectional=False):
    """A stack of Keras layers (Bidirectional with merge_mode='concat' when
    asked): the backward layer reads the reversed sequence and its outputs
    are reversed back. Returns the top output (B, T, D*H)."""
    dirs = 2 if bidirectional else 1
    inp = np.asarray(x, np.float64)
    for layer in range(len(layers_weights) // dirs):
        outs = []
        for d in range(dirs):
            w = layers_weights[layer * dirs + d]
            seq = inp[:, ::-1] if d else inp
            bias = w[2] if len(w) == 3 else None
            y = keras_lstm(seq, w[0], w[1], bias)[0] if mode == "LSTM" else keras_gru(seq, w[0], w[1], bias,
                                                                                      reset_after)[0]
            outs.append(y[:, ::-1] if d else y)
        inp = np.concatenate(outs, axis=-1)
    return inp


# ---- torch state_dict ----------------------------------------------------------------

@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("bias", [True, False])
def test_state_dict_round_trip_with_torch(torch, mode, dtype, bias):
    # torch module -> params -> state_dict -> a fresh torch module: exact, keys and values.
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    src = getattr(torch.nn, mode)(I, H, num_layers=2, bias=bias, bidirectional=True, dtype=tdtype)
    params = ic.from_state_dict(src.state_dict(), mode)
    assert all(isinstance(v, np.ndarray) and v.dtype == dtype for v in params.values())
    dst = getattr(torch.nn, mode)(I, H, num_layers=2, bias=bias, bidirectional=True, dtype=tdtype)
    dst.load_state_dict(ic.to_state_dict(params, tensors=True))
    for name, value in src.state_dict().items():
        assert torch.equal(dst.state_dict()[name], value), name
    # A copy: training the torch module later must not change the params.
    with torch.no_grad():
        src.weight_ih_l0.add_(1.0)
    assert not np.array_equal(params["weight_ih_l0"], src.weight_ih_l0.detach().numpy())


def test_state_dict_prefix_selects_one_module(torch):
    model = torch.nn.Module()
    model.rnn = torch.nn.GRU(I, H)
    model.head = torch.nn.Linear(H, 2)
    model.rnn2 = torch.nn.LSTM(H, H)
    params = ic.from_state_dict(model.state_dict(), "GRU", prefix="rnn")
    assert sorted(params) == sorted(torch.nn.GRU(I, H).state_dict())
    assert np.array_equal(params["weight_hh_l0"], model.rnn.weight_hh_l0.detach().numpy())
    sd = ic.to_state_dict(params, prefix="rnn.")
    assert sorted(sd) == sorted(k for k in model.state_dict() if k.startswith("rnn."))


def test_state_dict_dtype_cast_and_bfloat16(torch):
    src = torch.nn.LSTM(I, H, dtype=torch.bfloat16)
    with pytest.raises(TypeError, match=r"weight_ih_l0.*bfloat16"):
        ic.from_state_dict(src.state_dict(), "LSTM")
    params = ic.from_state_dict(src.state_dict(), "LSTM", dtype=np.float32)
    assert params["weight_hh_l0"].dtype == np.float32
    assert np.array_equal(params["weight_hh_l0"], src.weight_hh_l0.detach().float().numpy())


@pytest.mark.parametrize("mutate, error, pattern", [
    # (change to a valid 2-layer bidirectional LSTM state_dict, exception, message)
    (lambda d: d.pop("bias_hh_l1_reverse"), ValueError, r"missing key 'bias_hh_l1_reverse' \(expected shape \(24,\)\)"),
    (lambda d: d.pop("weight_ih_l1"), ValueError, r"missing key 'weight_ih_l1' \(expected shape \(24, 12\)\)"),
    (lambda d: d.update(weight_hh_l0=np.zeros((24, 5), np.float32)), ValueError,
     r"\['weight_hh_l0'\]: expected shape \(4\*hidden_size, hidden_size\) for a LSTM, got \(24, 5\)"),
    (lambda d: d.update(bias_ih_l1=np.zeros(23, np.float32)), ValueError,
     r"\['bias_ih_l1'\]: expected shape \(24,\).*got \(23,\)"),
    (lambda d: d.update(weight_hr_l0=np.zeros((6, 3), np.float32)), ValueError, r"'weight_hr_l0'.*proj_size"),
    (lambda d: d.update(running_mean=np.zeros(3, np.float32)), ValueError, r"unexpected key 'running_mean'"),
    (lambda d: d.update(weight_ih_l2=np.zeros((24, 12), np.float32)), ValueError, r"missing key 'weight_hh_l2'"),
    (lambda d: d.update(bias_hh_l0=np.zeros(24, np.float64)), TypeError,
     r"\['bias_hh_l0'\]: dtype float64 differs from weight_ih_l0's float32"),
    (lambda d: d.update(bias_hh_l0=np.zeros(24, np.int64)), TypeError,
     r"\['bias_hh_l0'\]: expected dtype float32 or float64, got int64"),
])
def test_state_dict_errors_name_the_key(mutate, error, pattern):
    sd = random_params("LSTM", np.float32, num_layers=2, bidirectional=True)
    mutate(sd)
    with pytest.raises(error, match=pattern):
        ic.from_state_dict(sd, "LSTM")


def test_state_dict_errors_with_prefix_and_config():
    sd = {"enc." + k: v for k, v in random_params("GRU", np.float32).items()}
    with pytest.raises(ValueError, match=r"no keys start with prefix 'dec\.'"):
        ic.from_state_dict(sd, "GRU", prefix="dec")
    sd["enc.extra"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=r"prefix 'enc\.'.*unexpected key 'extra'"):
        ic.from_state_dict(sd, "GRU", prefix="enc")
    del sd["enc.extra"]
    # A configuration given explicitly is checked, not inferred.
    with pytest.raises(ValueError, match=r"missing key 'weight_ih_l0_reverse'"):
        ic.from_state_dict(sd, "GRU", prefix="enc", bidirectional=True)
    with pytest.raises(ValueError, match=r"\['weight_hh_l0'\]: expected shape \(4\*hidden_size, hidden_size\)"):
        ic.from_state_dict(sd, "LSTM", prefix="enc")
    with pytest.raises(ValueError, match=r"mode: expected 'LSTM' or 'GRU'"):
        ic.from_state_dict(sd, "RNN", prefix="enc")


# ---- Keras: round trips --------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("form", ["LSTM", "GRU-reset_after", "GRU-reset_before"])
def test_keras_round_trips_are_exact(dtype, form):
    mode, reset_after = form.split("-")[0], form.endswith("reset_after")
    to_keras = ic.to_keras_lstm if mode == "LSTM" else (
        lambda p, **kw: ic.to_keras_gru(p, linear_before_reset=reset_after, **kw))

    def from_keras(*w, **kw):
        return ic.from_keras_lstm(*w, **kw) if mode == "LSTM" else ic.from_keras_gru(*w, **kw)[0]

    # Keras -> torch names -> Keras: every array comes back bit for bit.
    for layer, reverse in [(0, False), (2, True)]:
        w = keras_weights(mode, dtype, reset_after, seed=layer)
        entries = from_keras(*w, layer=layer, reverse=reverse)
        sfx = f"_l{layer}" + ("_reverse" if reverse else "")
        assert sorted(entries) == sorted(n + sfx for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        back = to_keras(entries, layer=layer, reverse=reverse)
        for got, want in zip(back, w):
            assert got.dtype == want.dtype and np.array_equal(got, want)

    # torch names -> Keras -> torch names: weights exact; where Keras has one
    # bias per gate, it is exactly the float sum of torch's two (bias_hh 0).
    params = random_params(mode, dtype)
    entries = from_keras(*to_keras(params))
    for name in ("weight_ih_l0", "weight_hh_l0"):
        assert np.array_equal(entries[name], params[name]), name
    if mode == "GRU" and reset_after:
        assert_same(entries, params, "GRU reset_after")
    else:
        assert np.array_equal(entries["bias_ih_l0"], params["bias_ih_l0"] + params["bias_hh_l0"])
        assert not entries["bias_hh_l0"].any()


def test_keras_without_bias():
    w = keras_weights("GRU", np.float32, use_bias=False)
    entries, lbr = ic.from_keras_gru(*w, reset_after=False)
    assert sorted(entries) == ["weight_hh_l0", "weight_ih_l0"] and lbr is False
    assert ic.to_keras_gru(entries, linear_before_reset=False)[2] is None
    assert ic.to_keras_lstm(ic.from_keras_lstm(*keras_weights("LSTM", np.float32, use_bias=False)))[2] is None


# ---- Keras: semantics ----------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_torch_lstm_equals_keras_math_with_converted_weights(torch, dtype):
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    torch.manual_seed(0)
    module = torch.nn.LSTM(I, H, batch_first=True, dtype=tdtype)
    x = np.random.default_rng(1).standard_normal((B, T, I)).astype(dtype)
    with torch.no_grad():
        y, (h, c) = module(torch.from_numpy(x))
    kernel, recurrent, bias = ic.to_keras_lstm(ic.from_state_dict(module.state_dict(), "LSTM"))
    ky, kh, kc = keras_lstm(x, kernel, recurrent, bias)
    assert_close(y.numpy(), ky, dtype, I + H, T, name="y")
    assert_close(h[0].numpy(), kh, dtype, I + H, T, name="h_n")
    assert_close(c[0].numpy(), kc, dtype, I + H, T, name="c_n")


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_torch_gru_equals_keras_reset_after_math(torch, dtype):
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    torch.manual_seed(0)
    module = torch.nn.GRU(I, H, batch_first=True, dtype=tdtype)
    x = np.random.default_rng(1).standard_normal((B, T, I)).astype(dtype)
    with torch.no_grad():
        y, h = module(torch.from_numpy(x))
    kernel, recurrent, bias = ic.to_keras_gru(ic.from_state_dict(module.state_dict(), "GRU"))
    assert bias.shape == (2, 3 * H)
    ky, kh = keras_gru(x, kernel, recurrent, bias, reset_after=True)
    assert_close(y.numpy(), ky, dtype, I + H, T, name="y")
    assert_close(h[0].numpy(), kh, dtype, I + H, T, name="h_n")


def test_reset_before_linear_gru_equals_keras_reset_after_false_math():
    # torch has no such GRU: the float64 reference's linear_before_reset=False is the oracle.
    p = random_params("GRU", np.float64)
    x = np.random.default_rng(2).standard_normal((B, T, I))
    y, h, _ = reference.gru_forward(x.transpose(1, 0, 2), p["weight_ih_l0"], p["weight_hh_l0"], p["bias_ih_l0"],
                                    p["bias_hh_l0"], linear_before_reset=False)
    kernel, recurrent, bias = ic.to_keras_gru(p, linear_before_reset=False)
    assert bias.shape == (3 * H,)
    ky, kh = keras_gru(x, kernel, recurrent, bias, reset_after=False)
    assert_close(y.transpose(1, 0, 2), ky, np.float64, I + H, T, name="y")
    assert_close(h, kh, np.float64, I + H, T, name="h_n")


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("form", ["LSTM", "GRU-reset_after", "GRU-reset_before"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_layer_from_keras_runs_a_keras_stack(dtype, form, bidirectional):
    # Two stacked (Bidirectional) Keras layers -> one rnnkit module; same outputs.
    mode, reset_after = form.split("-")[0], form.endswith("reset_after")
    dirs = 2 if bidirectional else 1
    weights = [keras_weights(mode, dtype, reset_after, seed=k, input_size=I if k < dirs else dirs * H)
               for k in range(2 * dirs)]
    module = ic.layer_from_keras(mode, weights, bidirectional=bidirectional)
    assert module.batch_first and module.num_layers == 2 and not module.training
    if mode == "GRU":
        assert module.linear_before_reset == reset_after
    x = np.random.default_rng(3).standard_normal((B, T, I)).astype(dtype)
    want = keras_model(mode, weights, x, reset_after, bidirectional)
    y = module(x)[0]
    assert_close(y, want, dtype, max(I, dirs * H) + H, 2 * T, name="y")


@pytest.mark.parametrize("call, pattern", [
    (lambda: ic.from_keras_lstm(np.zeros((4, 24)), np.zeros((6, 20))), r"recurrent_kernel: expected shape \(H, 4\*H\)"),
    (lambda: ic.from_keras_lstm(np.zeros((24, 4)), np.zeros((6, 24))), r"kernel: expected shape \(input_size, 24\)"),
    (lambda: ic.from_keras_lstm(np.zeros((4, 24)), np.zeros((6, 24)), np.zeros(23)), r"bias: expected shape \(24,\)"),
    (lambda: ic.from_keras_gru(np.zeros((4, 18)), np.zeros((6, 18)), np.zeros((2, 18)), reset_after=False),
     r"bias: shape \(2, 18\) is the reset_after=True form, but reset_after=False"),
    (lambda: ic.from_keras_gru(np.zeros((4, 18)), np.zeros((6, 18))), r"reset_after: required"),
    (lambda: ic.from_keras_gru(np.zeros((4, 18)), np.zeros((6, 18)), np.zeros((3, 18))),
     r"bias: expected shape \(2, 18\) or \(18,\)"),
    (lambda: ic.to_keras_lstm(random_params("LSTM", np.float32), layer=1), r"missing key 'weight_ih_l1'"),
    (lambda: ic.layer_from_keras("GRU", [keras_weights("GRU", np.float32, True)] * 3, bidirectional=True),
     r"weights: expected num_layers \* 2"),
])
def test_keras_errors(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_keras_dtype_errors():
    with pytest.raises(TypeError, match=r"recurrent_kernel: dtype float64 differs from kernel's float32"):
        ic.from_keras_lstm(np.zeros((4, 24), np.float32), np.zeros((6, 24)))
    with pytest.raises(TypeError, match=r"kernel: expected dtype float32 or float64, got int64"):
        ic.from_keras_lstm(np.zeros((4, 24), np.int64), np.zeros((6, 24)))


# ---- ONNX: round trips and semantics -------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("bias", [True, False])
def test_onnx_round_trips_are_exact(dtype, mode, direction, bias):
    params = random_params(mode, dtype, bidirectional=direction == "bidirectional", bias=bias)
    to_onnx = ic.to_onnx_lstm if mode == "LSTM" else ic.to_onnx_gru
    from_onnx = ic.from_onnx_lstm if mode == "LSTM" else ic.from_onnx_gru
    # torch names -> ONNX -> torch names.
    inits, attrs = to_onnx(params, direction=direction)
    D, G = (2 if direction == "bidirectional" else 1), GATES[mode]
    assert inits["W"].shape == (D, G * H, I) and inits["R"].shape == (D, G * H, H)
    assert ("B" in inits) == bias and (not bias or inits["B"].shape == (D, 2 * G * H))
    assert attrs["hidden_size"] == H and attrs["direction"] == direction
    got_mode, config, back = from_onnx(attributes=attrs, **inits)
    assert got_mode == mode
    assert config == dict(input_size=I, hidden_size=H, direction=direction, bidirectional=D == 2,
                          linear_before_reset=True, layout=0, bias=bias)
    assert_same(back, params, "torch -> onnx -> torch")
    # ONNX -> torch names -> ONNX.
    again, attrs2 = to_onnx(back, direction=direction)
    assert_same(again, inits, "onnx -> torch -> onnx")
    assert attrs2 == attrs


def test_gate_orders_by_hand():
    # Gate block k of torch's weight_ih holds the value k (LSTM i f g o = 0 1 2 3,
    # GRU r z n = 0 1 2); each layout must list the blocks in its own gate order.
    def tagged(G):
        return {"weight_ih_l0": np.repeat(np.arange(G, dtype=np.float64), H)[:, None] * np.ones((1, I)),
                "weight_hh_l0": np.zeros((G * H, H))}

    def order(values):
        return [int(v) for v in values[::H]]

    lstm, gru = tagged(4), tagged(3)
    assert order(ic.to_onnx_lstm(lstm)[0]["W"][0, :, 0]) == [0, 3, 1, 2]   # ONNX i o f c
    assert order(ic.to_keras_lstm(lstm)[0][0]) == [0, 1, 2, 3]             # Keras i f c o
    assert order(ic.to_onnx_gru(gru)[0]["W"][0, :, 0]) == [1, 0, 2]        # ONNX z r h
    assert order(ic.to_keras_gru(gru)[0][0]) == [1, 0, 2]                  # Keras z r h


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
def test_onnx_node_equals_torch(torch, dtype, mode, direction, layout):
    # torch.nn -> ONNX initializers -> run_onnx_rnn, with lengths and initial states.
    bi, D = direction == "bidirectional", (2 if direction == "bidirectional" else 1)
    torch.manual_seed(0)
    module = getattr(torch.nn, mode)(I, H, bidirectional=bi, dtype=torch.float64)
    params = ic.from_state_dict(module.state_dict(), mode, dtype=dtype)
    # The float64 oracle runs on exactly the (rounded) values rnnkit gets.
    module.load_state_dict(ic.to_state_dict({k: v.astype(np.float64) for k, v in params.items()}, tensors=True))
    inits, attrs = (ic.to_onnx_lstm if mode == "LSTM" else ic.to_onnx_gru)(params, layout=layout)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0, c0 = ((0.5 * rng.standard_normal((D, B, H))).astype(dtype) for _ in range(2))
    with torch.no_grad():
        states = (torch.from_numpy(h0).double(), torch.from_numpy(c0).double())
        packed_x = torch.nn.utils.rnn.pack_padded_sequence(torch.from_numpy(x).double(), LENGTHS,
                                                           enforce_sorted=False)
        y, hn = module(packed_x, states if mode == "LSTM" else states[0])
        y = torch.nn.utils.rnn.pad_packed_sequence(y, total_length=T)[0].numpy()
    finals = [s.numpy() for s in (hn if mode == "LSTM" else (hn,))]
    # torch's (T, B, D*H) output: ONNX gives the directions their own axis.
    want = [y.reshape(T, B, D, H).transpose(0, 2, 1, 3)] + finals
    if layout:
        want = [want[0].transpose(2, 0, 1, 3)] + [s.transpose(1, 0, 2) for s in finals]
        x, h0, c0 = x.transpose(1, 0, 2), h0.transpose(1, 0, 2), c0.transpose(1, 0, 2)
    extra = {"initial_c": c0} if mode == "LSTM" else {}
    got = ic.run_onnx_rnn(mode, attrs, x, sequence_lens=np.array(LENGTHS, np.int32), initial_h=h0,
                          **extra, **inits)
    assert len(got) == len(want)
    for name, g, w in zip(["Y", "Y_h", "Y_c"], got, want):
        assert_close(g, w, dtype, I + H, T, name=name)

    # The same weights as a rnnkit module: batch_first follows the layout.
    layer = ic.layer_from_onnx(mode, attrs, **inits)
    assert (layer.batch_first, layer.bidirectional, layer.hidden_size) == (bool(layout), bi, H)
    full = ic.run_onnx_rnn(mode, attrs, x, **inits)[0]
    folded = full.transpose(0, 2, 1, 3) if layout == 0 else full
    out = layer(x)[0]
    assert np.array_equal(out, folded.reshape(out.shape))


def test_onnx_reverse_node_is_the_backward_half_of_bidirectional():
    p = random_params("GRU", np.float64, bidirectional=True)
    inits, attrs = ic.to_onnx_gru(p, linear_before_reset=True)
    rev = {k.replace("_reverse", ""): v for k, v in p.items() if k.endswith("_reverse")}
    inits_r, attrs_r = ic.to_onnx_gru(rev, direction="reverse")
    x = np.random.default_rng(5).standard_normal((T, B, I))
    lens = np.array(LENGTHS, np.int64)
    Y, Y_h = ic.run_onnx_rnn("GRU", attrs, x, sequence_lens=lens, **inits)
    Yr, Yr_h = ic.run_onnx_rnn("GRU", attrs_r, x, sequence_lens=lens, **inits_r)
    assert np.array_equal(Yr[:, 0], Y[:, 1]) and np.array_equal(Yr_h[0], Y_h[1])
    with pytest.raises(ValueError, match=r"direction: a reverse-only node"):
        ic.layer_from_onnx("GRU", attrs_r, **inits_r)


# ---- ONNX: errors ----------------------------------------------------------------------

def onnx_lstm(direction="forward", dtype=np.float32):
    D = 2 if direction == "bidirectional" else 1
    inits, attrs = ic.to_onnx_lstm(random_params("LSTM", dtype, bidirectional=D == 2), direction=direction)
    return inits, attrs


@pytest.mark.parametrize("change, error, pattern", [
    (dict(P=np.ones((1, 3 * H), np.float32)), ValueError, r"P: peephole weights are not supported"),
    (dict(P=np.zeros((1, 2 * H), np.float32)), ValueError, r"P: expected shape \(1, 18\)"),
    (dict(attributes={"clip": 3.0}), ValueError, r"clip: cell clipping"),
    (dict(attributes={"input_forget": 1}), ValueError, r"input_forget"),
    (dict(attributes={"activations": ["Sigmoid", "Tanh", "Relu"]}), ValueError, r"activations: only ONNX's defaults"),
    (dict(attributes={"hidden_size": H + 1}), ValueError,
     r"hidden_size: the attribute says 7, but R has hidden size 6"),
    (dict(attributes={"direction": "bidirectional"}), ValueError, r"R: expected shape \(2, 24, 6\)"),
    (dict(attributes={"direction": "backward"}), ValueError, r"direction: expected 'forward', 'reverse'"),
    (dict(attributes={"layout": 2}), ValueError, r"layout: expected 0 or 1"),
    (dict(attributes={"linear_before_reset": 1}), ValueError,
     r"\['linear_before_reset'\] are not attributes of ONNX LSTM"),
    (dict(B=np.zeros((1, 4 * H), np.float32)), ValueError, r"B: expected shape \(1, 48\)"),
    (dict(W=np.zeros((4 * H, I), np.float32)), ValueError, r"W: expected a 3-D array \[num_directions, 4\*hidden_size"),
    (dict(B=np.zeros((1, 8 * H), np.float64)), TypeError, r"B: dtype float64 differs from W's float32"),
    (dict(X=np.zeros((T, B, I))), TypeError, r"X: expected dtype float32"),
    (dict(X=np.zeros((T, B, H), np.float32)), ValueError, r"X: expected shape \[seq_length, batch_size, 4\]"),
    (dict(initial_h=np.zeros((B, 1, H), np.float32)), ValueError, r"initial_h: expected shape \(1, 3, 6\)"),
    (dict(initial_c=np.zeros((1, B, H))), TypeError, r"initial_c: expected dtype float32"),
    (dict(sequence_lens=np.array([1, 0, 2])), ValueError, r"sequence_lens: every length must be in \[1, 5\]"),
    (dict(sequence_lens=np.array([1, 6, 2])), ValueError, r"sequence_lens: every length must be in \[1, 5\]"),
    (dict(sequence_lens=np.array([1.0, 2.0, 2.0])), TypeError, r"sequence_lens: expected an integer array"),
    (dict(sequence_lens=np.array([1, 2])), ValueError, r"sequence_lens: expected shape \(3,\)"),
])
def test_onnx_errors_are_clear(change, error, pattern):
    inits, attrs = onnx_lstm()
    args = dict(X=np.zeros((T, B, I), np.float32), **inits)
    attrs.update(change.pop("attributes", {}))
    args.update(change)
    with pytest.raises(error, match=pattern):
        ic.run_onnx_rnn("LSTM", attrs, **args)


def test_onnx_zero_peepholes_and_default_activations_are_accepted():
    inits, attrs = onnx_lstm("bidirectional")
    x = np.random.default_rng(6).standard_normal((T, B, I)).astype(np.float32)
    plain = ic.run_onnx_rnn("LSTM", attrs, x, **inits)
    attrs2 = dict(attrs, activations=[b"Sigmoid", b"Tanh", b"Tanh"] * 2, input_forget=0)
    same = ic.run_onnx_rnn("LSTM", attrs2, x, P=np.zeros((2, 3 * H), np.float32), **inits)
    for a, b in zip(plain, same):
        assert np.array_equal(a, b)


def test_onnx_gru_specific_errors():
    inits, attrs = ic.to_onnx_gru(random_params("GRU", np.float32))
    x = np.zeros((T, B, I), np.float32)
    with pytest.raises(ValueError, match=r"initial_c: the GRU has no cell state"):
        ic.run_onnx_rnn("GRU", attrs, x, initial_c=np.zeros((1, B, H), np.float32), **inits)
    with pytest.raises(ValueError, match=r"linear_before_reset: expected 0 or 1"):
        ic.run_onnx_rnn("GRU", dict(attrs, linear_before_reset=2), x, **inits)
    with pytest.raises(ValueError, match=r"op_type: expected 'LSTM' or 'GRU'"):
        ic.run_onnx_rnn("RNN", attrs, x, **inits)
    with pytest.raises(ValueError, match=r"W: a required input of ONNX GRU is missing"):
        ic.run_onnx_rnn("GRU", attrs, x, None, inits["R"])


def test_run_onnx_node_maps_inputs_and_outputs():
    onnx = require_optional("onnx")
    inits, attrs = onnx_lstm("bidirectional")
    x = np.random.default_rng(7).standard_normal((T, B, I)).astype(np.float32)
    lens = np.array(LENGTHS, np.int32)
    want = ic.run_onnx_rnn("LSTM", attrs, x, sequence_lens=lens, **inits)
    # Missing optional inputs are "" in the node; unrequested outputs too.
    node = onnx.helper.make_node("LSTM", ["x", "w", "r", "b", "lens"], ["", "yh", "yc"], **attrs)
    by_position = ic.run_onnx_node(node, [x, inits["W"], inits["R"], inits["B"], lens])
    by_name = ic.run_onnx_node(node, dict(x=x, w=inits["W"], r=inits["R"], b=inits["B"], lens=lens))
    for got in (by_position, by_name):
        assert len(got) == 2 and np.array_equal(got[0], want[1]) and np.array_equal(got[1], want[2])
    with pytest.raises(ValueError, match=r"inputs: no array for the node's inputs \['lens'\]"):
        ic.run_onnx_node(node, dict(x=x, w=inits["W"], r=inits["R"], b=inits["B"]))
    with pytest.raises(ValueError, match=r"inputs: the node has 5 present inputs"):
        ic.run_onnx_node(node, [x, inits["W"], inits["R"]])
    with pytest.raises(ValueError, match=r"node: expected an ONNX LSTM or GRU node, got ai.onnx.RNN"):
        ic.run_onnx_node(onnx.helper.make_node("RNN", ["x", "w", "r"], ["y"], hidden_size=H), [x, x, x])


def test_import_needs_only_numpy():
    # interchange must import (and convert) without torch or onnx loaded.
    import subprocess
    import sys
    code = ("import sys; import rnnkit.interchange as ic, numpy as np; "
            "ic.to_onnx_gru({'weight_ih_l0': np.zeros((9, 2)), 'weight_hh_l0': np.zeros((9, 3))}); "
            "bad = [m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
