"""The NumPy reference is the oracle, so check it against itself:
analytic gradients vs central finite differences, and the GRU forms vs a
hand-written step."""

import importlib.util
import pathlib

import numpy as np
import pytest

try:
    from rnnkit import reference as ref
except ImportError:
    # Before the package is built, load the module straight from the source tree.
    _path = pathlib.Path(__file__).resolve().parents[2] / "python" / "rnnkit" / "reference.py"
    _spec = importlib.util.spec_from_file_location("rnnkit_reference", _path)
    ref = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(ref)

# (T, B, I, H): general, all-ones, and I < H.
SHAPES = [(3, 2, 4, 3), (1, 1, 1, 1), (2, 3, 2, 5)]

# Central differences: truncation error ~ STEP**2, rounding error ~ eps / STEP,
# so with STEP = 1e-6 the estimate is good to ~1e-9 absolute on O(1) losses.
STEP = 1e-6
RTOL = 1e-6
ATOL = 1e-8


def _params(rng, T, B, I, H, G):
    """Random inputs and weights of moderate size (keeps gates off saturation)."""
    return dict(
        x=rng.standard_normal((T, B, I)),
        h0=rng.standard_normal((B, H)),
        c0=rng.standard_normal((B, H)),
        w_ih=0.5 * rng.standard_normal((G * H, I)),
        w_hh=0.5 * rng.standard_normal((G * H, H)),
        b_ih=0.5 * rng.standard_normal(G * H),
        b_hh=0.5 * rng.standard_normal(G * H),
    )


def _numeric_grad(loss, params, name):
    """d loss / d params[name] by central differences, one element at a time."""
    a = params[name]
    grad = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        orig = a[idx]
        a[idx] = orig + STEP
        up = loss(params)
        a[idx] = orig - STEP
        down = loss(params)
        a[idx] = orig
        grad[idx] = (up - down) / (2 * STEP)
    return grad


def _check(loss, params, analytic):
    for name, grad in analytic.items():
        assert grad.shape == params[name].shape, name
        np.testing.assert_allclose(grad, _numeric_grad(loss, params, name),
                                   rtol=RTOL, atol=ATOL, err_msg=name)


# ------------------------------------------------------------ gradient checks


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_lstm_backward_matches_finite_differences(shape, reverse):
    T, B, I, H = shape
    rng = np.random.default_rng(0)
    p = _params(rng, T, B, I, H, 4)
    Gy, Gh, Gc = (rng.standard_normal(s) for s in [(T, B, H), (B, H), (B, H)])

    def loss(q):
        y, h_n, c_n, _ = ref.lstm_forward(q["x"], q["w_ih"], q["w_hh"], q["b_ih"], q["b_hh"],
                                          q["h0"], q["c0"], reverse=reverse)
        return np.sum(y * Gy) + np.sum(h_n * Gh) + np.sum(c_n * Gc)

    *_, cache = ref.lstm_forward(p["x"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"],
                                 p["h0"], p["c0"], reverse=reverse)
    names = ["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"]
    _check(loss, p, dict(zip(names, ref.lstm_backward(Gy, Gh, Gc, cache))))


@pytest.mark.parametrize("lbr", [True, False])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_gru_backward_matches_finite_differences(shape, reverse, lbr):
    T, B, I, H = shape
    rng = np.random.default_rng(1)
    p = _params(rng, T, B, I, H, 3)
    del p["c0"]
    Gy, Gh = rng.standard_normal((T, B, H)), rng.standard_normal((B, H))

    def loss(q):
        y, h_n, _ = ref.gru_forward(q["x"], q["w_ih"], q["w_hh"], q["b_ih"], q["b_hh"],
                                    q["h0"], reverse=reverse, linear_before_reset=lbr)
        return np.sum(y * Gy) + np.sum(h_n * Gh)

    *_, cache = ref.gru_forward(p["x"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"],
                                p["h0"], reverse=reverse, linear_before_reset=lbr)
    names = ["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"]
    _check(loss, p, dict(zip(names, ref.gru_backward(Gy, Gh, cache))))


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_stacked_backward_matches_finite_differences(mode):
    # Two bidirectional layers, unsorted lengths and a dropout mask between.
    T, B, I, H, L, D = 4, 3, 2, 3, 2, 2
    rng = np.random.default_rng(2)
    G = 4 if mode == "LSTM" else 3
    p = dict(x=rng.standard_normal((T, B, I)), h0=rng.standard_normal((L * D, B, H)))
    if mode == "LSTM":
        p["c0"] = rng.standard_normal((L * D, B, H))
    for layer in range(L):
        for sfx in ("", "_reverse"):
            p[f"weight_ih_l{layer}{sfx}"] = 0.5 * rng.standard_normal((G * H, I if layer == 0 else D * H))
            p[f"weight_hh_l{layer}{sfx}"] = 0.5 * rng.standard_normal((G * H, H))
            p[f"bias_ih_l{layer}{sfx}"] = 0.5 * rng.standard_normal(G * H)
            p[f"bias_hh_l{layer}{sfx}"] = 0.5 * rng.standard_normal(G * H)
    lengths = [2, 4, 1]
    masks = [(rng.random((T, B, D * H)) > 0.3) / 0.7]
    Gy, Gh, Gc = (rng.standard_normal(s) for s in [(T, B, D * H), (L * D, B, H), (L * D, B, H)])
    weights = [k for k in p if k not in ("x", "h0", "c0")]

    def run(q):
        return ref.rnn_forward(mode, q["x"], {k: q[k] for k in weights}, L, True, q["h0"], q.get("c0"),
                               lengths, masks)

    def loss(q):
        y, h_n, c_n, _ = run(q)
        return np.sum(y * Gy) + np.sum(h_n * Gh) + (np.sum(c_n * Gc) if mode == "LSTM" else 0.0)

    dx, dh0, dc0, grads = ref.rnn_backward(Gy, Gh, Gc if mode == "LSTM" else None, run(p)[3])
    analytic = dict(grads, x=dx, h0=dh0)
    if mode == "LSTM":
        analytic["c0"] = dc0
    _check(loss, p, analytic)


@pytest.mark.parametrize("shape", SHAPES)
def test_lstm_cell_backward_matches_finite_differences(shape):
    _, B, I, H = shape
    rng = np.random.default_rng(2)
    p = _params(rng, 1, B, I, H, 4)
    p["x"] = p["x"][0]
    Gh, Gc = rng.standard_normal((B, H)), rng.standard_normal((B, H))

    def loss(q):
        h1, c1, _ = ref.lstm_cell_forward(q["x"], q["h0"], q["c0"], q["w_ih"], q["w_hh"],
                                          q["b_ih"], q["b_hh"])
        return np.sum(h1 * Gh) + np.sum(c1 * Gc)

    *_, cache = ref.lstm_cell_forward(p["x"], p["h0"], p["c0"], p["w_ih"], p["w_hh"],
                                      p["b_ih"], p["b_hh"])
    names = ["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"]
    _check(loss, p, dict(zip(names, ref.lstm_cell_backward(Gh, Gc, cache))))


@pytest.mark.parametrize("lbr", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_gru_cell_backward_matches_finite_differences(shape, lbr):
    _, B, I, H = shape
    rng = np.random.default_rng(3)
    p = _params(rng, 1, B, I, H, 3)
    del p["c0"]
    p["x"] = p["x"][0]
    Gh = rng.standard_normal((B, H))

    def loss(q):
        h1, _ = ref.gru_cell_forward(q["x"], q["h0"], q["w_ih"], q["w_hh"],
                                     q["b_ih"], q["b_hh"], linear_before_reset=lbr)
        return np.sum(h1 * Gh)

    _, cache = ref.gru_cell_forward(p["x"], p["h0"], p["w_ih"], p["w_hh"],
                                    p["b_ih"], p["b_hh"], linear_before_reset=lbr)
    names = ["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"]
    _check(loss, p, dict(zip(names, ref.gru_cell_backward(Gh, cache))))


# --------------------------------------------------------- GRU forms by hand


def _gru_step_by_hand(x, h, w_ih, w_hh, b_ih, b_hh, lbr):
    """One GRU step written out gate by gate, straight from the equations."""
    H = h.shape[1]
    W_ir, W_iz, W_in = w_ih[:H], w_ih[H:2 * H], w_ih[2 * H:]
    W_hr, W_hz, W_hn = w_hh[:H], w_hh[H:2 * H], w_hh[2 * H:]
    b_ir, b_iz, b_in = b_ih[:H], b_ih[H:2 * H], b_ih[2 * H:]
    b_hr, b_hz, b_hn = b_hh[:H], b_hh[H:2 * H], b_hh[2 * H:]
    sig = lambda a: 1.0 / (1.0 + np.exp(-a))  # noqa: E731 (inputs are small)
    r = sig(x @ W_ir.T + b_ir + h @ W_hr.T + b_hr)
    z = sig(x @ W_iz.T + b_iz + h @ W_hz.T + b_hz)
    if lbr:
        n = np.tanh(x @ W_in.T + b_in + r * (h @ W_hn.T + b_hn))
    else:
        n = np.tanh(x @ W_in.T + b_in + (r * h) @ W_hn.T + b_hn)
    return (1 - z) * n + z * h


def test_gru_forms_match_hand_written_step_and_differ():
    rng = np.random.default_rng(4)
    B, I, H = 2, 3, 4
    p = _params(rng, 1, B, I, H, 3)
    args = (p["x"][0], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])

    h_lbr, _ = ref.gru_cell_forward(*args, linear_before_reset=True)
    h_no_lbr, _ = ref.gru_cell_forward(*args, linear_before_reset=False)
    np.testing.assert_allclose(h_lbr, _gru_step_by_hand(*args, lbr=True), rtol=1e-13)
    np.testing.assert_allclose(h_no_lbr, _gru_step_by_hand(*args, lbr=False), rtol=1e-13)
    # With a nonzero state and bias the two forms are different functions.
    assert np.max(np.abs(h_lbr - h_no_lbr)) > 1e-3


def test_gru_forms_agree_when_h_and_b_hn_are_zero():
    rng = np.random.default_rng(5)
    B, I, H = 2, 3, 4
    p = _params(rng, 1, B, I, H, 3)
    b_hh = p["b_hh"].copy()
    b_hh[2 * H:] = 0.0
    # With h = 0 and b_hn = 0 the reset gate multiplies zero in both forms.
    args = (p["x"][0], np.zeros((B, H)), p["w_ih"], p["w_hh"], p["b_ih"], b_hh)
    h_lbr, _ = ref.gru_cell_forward(*args, linear_before_reset=True)
    h_no_lbr, _ = ref.gru_cell_forward(*args, linear_before_reset=False)
    np.testing.assert_allclose(h_lbr, h_no_lbr, rtol=1e-15, atol=0)


# ----------------------------------------------------------- None = zeros


def test_lstm_none_state_and_bias_equal_zeros():
    T, B, I, H = 3, 2, 4, 3
    rng = np.random.default_rng(6)
    p = _params(rng, T, B, I, H, 4)
    dy, dh_n, dc_n = (rng.standard_normal(s) for s in [(T, B, H), (B, H), (B, H)])
    zb, zs = np.zeros(4 * H), np.zeros((B, H))

    a = ref.lstm_forward(p["x"], p["w_ih"], p["w_hh"], None, None)
    b = ref.lstm_forward(p["x"], p["w_ih"], p["w_hh"], zb, zb, zs, zs)
    for u, v in zip(a[:3], b[:3]):
        np.testing.assert_array_equal(u, v)
    for u, v in zip(ref.lstm_backward(dy, dh_n, dc_n, a[3]),
                    ref.lstm_backward(dy, dh_n, dc_n, b[3])):
        np.testing.assert_array_equal(u, v)
    # None for an incoming gradient means zeros too.
    for u, v in zip(ref.lstm_backward(None, None, None, a[3]),
                    ref.lstm_backward(np.zeros((T, B, H)), zs, zs, a[3])):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("lbr", [True, False])
def test_gru_none_state_and_bias_equal_zeros(lbr):
    T, B, I, H = 3, 2, 4, 3
    rng = np.random.default_rng(7)
    p = _params(rng, T, B, I, H, 3)
    dy, dh_n = rng.standard_normal((T, B, H)), rng.standard_normal((B, H))
    zb, zs = np.zeros(3 * H), np.zeros((B, H))

    a = ref.gru_forward(p["x"], p["w_ih"], p["w_hh"], None, None, linear_before_reset=lbr)
    b = ref.gru_forward(p["x"], p["w_ih"], p["w_hh"], zb, zb, zs, linear_before_reset=lbr)
    for u, v in zip(a[:2], b[:2]):
        np.testing.assert_array_equal(u, v)
    for u, v in zip(ref.gru_backward(dy, dh_n, a[2]), ref.gru_backward(dy, dh_n, b[2])):
        np.testing.assert_array_equal(u, v)
    for u, v in zip(ref.gru_backward(None, None, a[2]),
                    ref.gru_backward(np.zeros((T, B, H)), zs, a[2])):
        np.testing.assert_array_equal(u, v)


# ------------------------------------------------------------- misc contract


def test_reverse_keeps_y_indexed_by_time():
    T, B, I, H = 4, 2, 3, 3
    rng = np.random.default_rng(8)
    p = _params(rng, T, B, I, H, 4)
    w = (p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
    y_rev, h_rev, c_rev, _ = ref.lstm_forward(p["x"], *w, reverse=True)
    y_fwd, h_fwd, c_fwd, _ = ref.lstm_forward(p["x"][::-1], *w)
    np.testing.assert_array_equal(y_rev, y_fwd[::-1])
    np.testing.assert_array_equal(h_rev, h_fwd)
    np.testing.assert_array_equal(c_rev, c_fwd)


def test_sigmoid_is_stable_at_extremes():
    a = np.array([-1e4, -800.0, -40.0, 0.0, 40.0, 800.0, 1e4])
    # Underflow of exp(-|a|) to 0 is harmless; overflow or NaN would not be.
    with np.errstate(over="raise", invalid="raise"):
        s = ref.sigmoid(a)
    assert s[0] == 0.0 and s[-1] == 1.0 and s[3] == 0.5
    np.testing.assert_allclose(s + ref.sigmoid(-a), 1.0, rtol=1e-15)
