"""The NumPy API of reduced precision: pack_lstm / pack_gru / pack_layer_weights
(precision=...), rnnkit.LSTM / GRU (dtype=...), and bfloat16 arrays of
ml_dtypes in and out. The kernels' accuracy contract has its own tests; here
every result is checked against the float64 reference with a bound a wrong
plumbing (a lost state, a wrong gate, float32 run where bfloat16 was asked)
cannot meet, and bfloat16 / int8 packs are checked to differ from float32."""

import copy
import pickle

import numpy as np
import pytest

from helpers import CELL_FORMS, can_train_bf16, linear_before_reset, make_case, reference, require_bf16_training, \
    require_optional, rnnkit
from rnnkit import layers

T, B, I, H = 7, 3, 5, 13
# |error| bounds vs the float64 reference for O(1) data at these sizes
# (bfloat16: 8 significant bits, int8: 127 levels per row); the kernels do
# about ten times better, a plumbing bug far worse.
BOUND = {"float32": 1e-5, "bfloat16": 3e-2, "int8": 3e-2}
LOWP = ("bfloat16", "int8")


def _weights(case):
    return case["weight_ih"], case["weight_hh"], case["bias_ih"], case["bias_hh"]


def _pack(cell, case, **kw):
    if cell == "lstm":
        return rnnkit.pack_lstm(*_weights(case), **kw)
    return rnnkit.pack_gru(*_weights(case), linear_before_reset=linear_before_reset(cell), **kw)


def _forward(cell, x, w, case):
    if cell == "lstm":
        return rnnkit.lstm_forward(x, w, case["h0"], case["c0"])
    return rnnkit.gru_forward(x, w, case["h0"])


def _reference(cell, case):
    c = case
    if cell == "lstm":
        return reference.lstm_forward(c["x"], *_weights(c), c["h0"], c["c0"])[:3]
    return reference.gru_forward(c["x"], *_weights(c), c["h0"], linear_before_reset=linear_before_reset(cell))[:2]


def _max_err(got, want):
    return max(float(np.max(np.abs(np.asarray(g, np.float64) - w))) for g, w in zip(got, want))


# ---- packs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELL_FORMS)
@pytest.mark.parametrize("precision", ("float32",) + LOWP)
def test_pack_precision_against_reference_every_isa(isa, cell, precision):
    case = make_case(cell, T, B, I, H, np.float32, seed=3)
    w = _pack(cell, case, precision=precision)
    assert w.precision == precision and w.dtype == np.float32 and w.isa == isa
    got = _forward(cell, case["x"], w, case)
    assert all(a.dtype == np.float32 for a in got)
    err = _max_err(got, _reference(cell, case))
    assert err < BOUND[precision], (precision, err)
    if precision in LOWP:
        # The products really ran in that precision: float32 ones are a thousand times closer.
        assert _max_err(got, _forward(cell, case["x"], _pack(cell, case), case)) > 1e-5


def test_default_precision_is_the_weights_dtype():
    for dtype in (np.float32, np.float64):
        case = make_case("lstm", T, B, I, H, dtype)
        assert _pack("lstm", case).precision == np.dtype(dtype).name
        # Naming the default gives the same panels.
        assert _pack("lstm", case, precision=np.dtype(dtype).name).matches(*_weights(case))


@pytest.mark.parametrize("spelling", ["bfloat16", "int8", np.float32, np.dtype(np.float32), "float32"])
def test_precision_spellings(spelling):
    case = make_case("gru", T, B, I, H, np.float32)
    name = spelling if isinstance(spelling, str) else np.dtype(spelling).name
    assert _pack("gru", case, precision=spelling).precision == name


@pytest.mark.parametrize("bad, exc, match", [
    ("fp8", ValueError, r"precision: expected one of 'float32', 'float64', 'bfloat16', 'int8', got 'fp8'"),
    ("BFLOAT16", ValueError, "precision: expected one of"),
    (np.int16, ValueError, "precision: expected one of"),
    (3, TypeError, r"precision: expected one of .* \(a str or a dtype\), got int 3"),
    ([1], TypeError, "precision: expected"),
])
def test_bad_precision_names_the_argument(bad, exc, match):
    case = make_case("lstm", T, B, I, H, np.float32)
    with pytest.raises(exc, match=match):
        _pack("lstm", case, precision=bad)
    with pytest.raises(exc, match=match):
        layers.pack_layer_weights("lstm", _torch_names(case), num_layers=1, bidirectional=False, precision=bad)


@pytest.mark.parametrize("precision", LOWP + ("float32",))
def test_float64_weights_take_only_their_own_precision(precision):
    case = make_case("lstm", T, B, I, H, np.float64)
    with pytest.raises(ValueError, match="precision"):
        _pack("lstm", case, precision=precision)


def test_int8_packs_refuse_training():
    case = make_case("gru", T, B, I, H, np.float32)
    with pytest.raises(ValueError, match="int8.*inference only"):
        rnnkit.gru_forward(case["x"], _pack("gru", case, precision="int8"), training=True)


@pytest.mark.parametrize("precision", LOWP)
def test_lowp_packs_pickle_and_copy(precision):
    case = make_case("lstm", T, B, I, H, np.float32)
    w = _pack("lstm", case, precision=precision)
    want = _forward("lstm", case["x"], w, case)
    for other in (pickle.loads(pickle.dumps(w)), copy.deepcopy(w)):
        assert other.precision == precision
        for a, b in zip(_forward("lstm", case["x"], other, case), want):
            np.testing.assert_array_equal(a, b)


# ---- stacked layers --------------------------------------------------------------------------

def _torch_names(case, suffix="_l0"):
    return {k + suffix: v for k, v in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), _weights(case))}


def _stack_params(mode, num_layers, bidirectional, seed=0):
    shapes = layers.param_shapes(mode, I, H, num_layers, bidirectional)
    rng = np.random.default_rng(seed)
    return {k: rng.uniform(-0.3, 0.3, s).astype(np.float32) for k, s in shapes.items()}


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
@pytest.mark.parametrize("precision", LOWP)
def test_stacked_layers_pass_the_precision_through(isa, mode, precision):
    params = _stack_params(mode, 2, True)
    packed = layers.pack_layer_weights(mode, params, num_layers=2, bidirectional=True, precision=precision)
    assert [p.precision for p in packed] == [precision] * 4
    rng = np.random.default_rng(1)
    x = (0.5 * rng.standard_normal((T, B, I))).astype(np.float32)
    h0 = (0.5 * rng.standard_normal((4, B, H))).astype(np.float32)
    lengths = np.array([T, 2, 5])
    y, h_n, c_n, _ = layers.rnn_forward(mode, x, packed, h0, h0 if mode == "LSTM" else None, num_layers=2,
                                        bidirectional=True, lengths=lengths)
    ref = reference.rnn_forward(mode, x, params, 2, True, h0, h0 if mode == "LSTM" else None, lengths=lengths)
    got = [y, h_n] + ([c_n] if mode == "LSTM" else [])
    assert _max_err(got, ref[:len(got)]) < BOUND[precision]


def test_pack_into_keeps_or_changes_the_precision():
    params = _stack_params("LSTM", 1, False)
    f32 = layers.pack_layer_weights("lstm", params, num_layers=1, bidirectional=False)
    # Another precision asked: fresh packs, not an update of the float32 ones.
    bf16 = layers.pack_layer_weights("lstm", params, num_layers=1, bidirectional=False, into=f32,
                                     precision="bfloat16")
    assert bf16 is not f32 and bf16[0].precision == "bfloat16" and f32[0].precision == "float32"
    # The same precision: packed into the given memory.
    again = layers.pack_layer_weights("lstm", params, num_layers=1, bidirectional=False, into=bf16,
                                      precision="bfloat16")
    assert again is bf16 and again[0].precision == "bfloat16"
    assert layers.pack_layer_weights("lstm", params, num_layers=1, bidirectional=False, into=bf16) is not bf16


# ---- bfloat16 arrays (ml_dtypes) -----------------------------------------------------------------

@pytest.fixture(scope="module")
def ml_dtypes():
    return require_optional("ml_dtypes")


@pytest.mark.parametrize("cell", CELL_FORMS)
@pytest.mark.parametrize("precision", ("float32", "bfloat16"))
def test_bfloat16_arrays_in_and_out(ml_dtypes, cell, precision):
    bf16 = ml_dtypes.bfloat16
    case = make_case(cell, T, B, I, H, np.float32)
    for k in ("x", "h0", "c0"):
        if k in case:
            case[k] = case[k].astype(bf16).astype(np.float32)  # values a bfloat16 array holds exactly
    w = _pack(cell, case, precision=precision)
    want = _forward(cell, case["x"], w, case)
    as_bf16 = dict(case, **{k: case[k].astype(bf16) for k in ("x", "h0", "c0") if k in case})
    got = _forward(cell, as_bf16["x"], w, as_bf16)
    for g, f in zip(got, want):
        assert g.dtype == bf16
        np.testing.assert_array_equal(g, f.astype(bf16))
    # One step, and the stacked layers, the same way.
    step = (rnnkit.lstm_cell(as_bf16["x"][0], w, as_bf16["h0"], as_bf16["c0"]) if cell == "lstm"
            else (rnnkit.gru_cell(as_bf16["x"][0], w, as_bf16["h0"]),))
    assert all(s.dtype == bf16 for s in step)
    mode = "lstm" if cell == "lstm" else "gru"
    y, h_n, _, _ = layers.rnn_forward(mode, as_bf16["x"], [w], num_layers=1, bidirectional=False)
    assert y.dtype == h_n.dtype == bf16
    np.testing.assert_array_equal(y, layers.rnn_forward(mode, case["x"], [w], num_layers=1,
                                                        bidirectional=False)[0].astype(bf16))


def test_bfloat16_weights_pack_as_bfloat16(ml_dtypes):
    case = make_case("lstm", T, B, I, H, np.float32)
    as_bf16 = [a.astype(ml_dtypes.bfloat16) for a in _weights(case)]
    w = rnnkit.pack_lstm(*as_bf16)
    assert w.precision == "bfloat16"
    for a, b in zip(w.unpack(), [a.astype(np.float32) for a in as_bf16]):
        np.testing.assert_array_equal(a, b)
    assert rnnkit.pack_lstm(*as_bf16, precision="int8").precision == "int8"


def test_bfloat16_gradients_in(ml_dtypes):
    case = make_case("lstm", T, B, I, H, np.float32)
    w = _pack("lstm", case)
    dy = case["dy"].astype(ml_dtypes.bfloat16)
    y, h, c, ctx = rnnkit.lstm_forward(case["x"], w, training=True)
    got = rnnkit.lstm_backward(ctx, dy)
    y, h, c, ctx = rnnkit.lstm_forward(case["x"], w, training=True)
    want = rnnkit.lstm_backward(ctx, dy.astype(np.float32))
    for a, b in zip(got, want):
        if a is not None:
            assert a.dtype == np.float32
            np.testing.assert_array_equal(a, b)


# ---- modules -------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [rnnkit.LSTM, rnnkit.GRU])
@pytest.mark.parametrize("precision", LOWP)
def test_modules_with_a_reduced_dtype(isa, cls, precision):
    ref = cls(I, H, num_layers=2, bidirectional=True, batch_first=True, seed=4).eval()
    m = cls(I, H, num_layers=2, bidirectional=True, batch_first=True, dtype=precision).eval()
    m.load_state_dict(ref.state_dict())
    assert m.precision == precision and m.dtype == np.float32
    assert all(p.dtype == np.float32 for p in m.parameters().values())
    assert f"dtype={precision}" in repr(m)
    x = (0.5 * np.random.default_rng(0).standard_normal((B, T, I))).astype(np.float32)
    y, state = m(x)
    y_ref, state_ref = ref(x)
    flat = lambda s: list(s) if isinstance(s, tuple) else [s]  # noqa: E731
    err = _max_err([y] + flat(state), [np.asarray(a, np.float64) for a in [y_ref] + flat(state_ref)])
    assert 1e-5 < err < BOUND[precision], err
    assert m._packed[0].precision == precision
    # state_dict: the float32 master weights, as loaded.
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, ref.state_dict()[k])
    # Pickles and copies keep the precision and give the same results.
    for other in (pickle.loads(pickle.dumps(m)), copy.copy(m)):
        assert other.precision == precision
        np.testing.assert_array_equal(other(x)[0], y)


def test_int8_modules_are_for_inference_only():
    m = rnnkit.LSTM(I, H, dtype="int8")
    assert not m.training  # starts in eval mode
    with pytest.raises(ValueError, match=r"mode: rnnkit.LSTM\(dtype='int8'\) runs inference only"):
        m.train()
    m.eval()
    m(np.zeros((T, B, I), np.float32))
    with pytest.raises(RuntimeError, match="backward: .*int8.* inference only"):
        m.backward()


@pytest.mark.parametrize("dtype, exc", [("int16", TypeError), ("float16", TypeError), (3, TypeError),
                                        ("no such dtype", TypeError)])
def test_bad_module_dtype(dtype, exc):
    with pytest.raises(exc, match="dtype: expected one of"):
        rnnkit.GRU(I, H, dtype=dtype)


def test_module_dtype_spellings(ml_dtypes):
    assert rnnkit.LSTM(I, H, dtype=ml_dtypes.bfloat16).precision == "bfloat16"
    assert rnnkit.LSTM(I, H, dtype=np.float64).precision == "float64"
    assert rnnkit.LSTM(I, H, dtype="float32").dtype == np.float32


@pytest.mark.parametrize("precision", ("float32",) + LOWP)
def test_modules_take_bfloat16_arrays(ml_dtypes, precision):
    bf16 = ml_dtypes.bfloat16
    m = rnnkit.LSTM(I, H, dtype=precision).eval()
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(bf16)
    h = np.zeros((1, B, H), bf16)
    y, (h_n, c_n) = m(x, (h, h))
    assert y.dtype == h_n.dtype == c_n.dtype == bf16
    y32, _ = m(x.astype(np.float32))
    np.testing.assert_array_equal(y, y32.astype(bf16))
    with pytest.raises(TypeError, match="x: expected dtype float64"):
        rnnkit.LSTM(I, H, dtype=np.float64)(x)


def test_module_training_with_bfloat16_input(ml_dtypes):
    # float32 module, bfloat16 input: dx comes back as bfloat16, weight gradients float32.
    m = rnnkit.GRU(I, H, seed=1)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(ml_dtypes.bfloat16)
    y, _ = m(x)
    dx, dh = m.backward(np.ones(y.shape, np.float32))
    assert dx.dtype == ml_dtypes.bfloat16 and dh.dtype == np.float32
    assert all(g.dtype == np.float32 for g in m.grads.values())


# ---- bfloat16 training (runs once the kernels have the bfloat16 backward) -------------------------

@pytest.mark.parametrize("cls", [rnnkit.LSTM, rnnkit.GRU])
def test_bfloat16_module_trains(cls):
    require_bf16_training()
    ref = cls(I, H, num_layers=2, bidirectional=True, seed=2)
    m = cls(I, H, num_layers=2, bidirectional=True, dtype="bfloat16")
    m.load_state_dict(ref.state_dict())
    x = (0.5 * np.random.default_rng(0).standard_normal((T, B, I))).astype(np.float32)
    y, _ = m(x)
    y_ref, _ = ref(x)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    dx, _ = m.backward(dy)
    dx_ref, _ = ref.backward(dy)
    assert float(np.abs(dx - dx_ref).max()) < 0.1
    for k, g in m.grads.items():
        assert g.dtype == np.float32
        assert float(np.abs(g - ref.grads[k]).max()) < 0.1 * max(1.0, float(np.abs(ref.grads[k]).max())), k


def test_bfloat16_training_probe_matches_the_core():
    # The probe's answer is the core's: a training call on a bfloat16 pack either works or is refused.
    ok, why = can_train_bf16()
    case = make_case("lstm", T, B, I, H, np.float32)
    w = _pack("lstm", case, precision="bfloat16")
    if ok:
        assert len(rnnkit.lstm_forward(case["x"], w, training=True)) == 4
    else:
        assert "bfloat16" in why
        with pytest.raises(ValueError, match="bfloat16"):
            rnnkit.lstm_forward(case["x"], w, training=True)
