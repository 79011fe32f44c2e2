"""NumPy float64 reference for LSTM and GRU, forward and backward.

This module is the oracle every rnnkit kernel is tested against. It favours
clarity over speed: one small function per cell step and per layer, float64
throughout, no shape checking beyond what NumPy itself does.

Conventions (PyTorch's)
-----------------------
Shapes are time-major: x (T, B, I), h and c (B, H), y (T, B, H).
Weights are stacked by gate along rows: w_ih (G*H, I), w_hh (G*H, H),
b_ih and b_hh (G*H,). A bias of None means a zero bias; its gradient is
still returned. An incoming gradient of None (dy, dh_n, dc_n, dh1, dc1)
means zeros, and a state of None (h0, c0, h, c) means zeros.

LSTM, G = 4, gate order i, f, g, o::

    a   = x W_ih^T + b_ih + h W_hh^T + b_hh = [a_i, a_f, a_g, a_o]
    i   = sigmoid(a_i)   f = sigmoid(a_f)   g = tanh(a_g)   o = sigmoid(a_o)
    c1  = f * c + i * g
    h1  = o * tanh(c1)

GRU, G = 3, gate order r, z, n::

    gi  = x W_ih^T + b_ih = [gi_r, gi_z, gi_n]
    r   = sigmoid(gi_r + h W_hr^T + b_hr)
    z   = sigmoid(gi_z + h W_hz^T + b_hz)
    n   = tanh(gi_n + r * (h W_hn^T + b_hn))        linear before reset (PyTorch)
    n   = tanh(gi_n + (r * h) W_hn^T + b_hn)        reset before linear (Cho 2014)
    h1  = (1 - z) * n + z * h

"Linear before reset" (``linear_before_reset=True``) is PyTorch's, cuDNN's
and ONNX's ``linear_before_reset=1``; "reset before linear" is the original
Cho et al. 2014 form and ONNX's default.

Layers run a cell over time; rnn_forward / rnn_backward stack them (layers,
directions, dropout masks, per-sequence lengths) as torch.nn.LSTM/GRU do. With ``reverse=True`` the steps run in the order
t = T-1, ..., 0, but ``y[t]`` is still the output for input ``x[t]``.
"""

import numpy as np

__all__ = [
    "sigmoid",
    "lstm_cell_forward",
    "lstm_cell_backward",
    "lstm_forward",
    "lstm_backward",
    "gru_cell_forward",
    "gru_cell_backward",
    "gru_forward",
    "gru_backward",
    "rnn_forward",
    "rnn_backward",
]


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def _or_zeros(a, shape):
    return np.zeros(shape) if a is None else _f64(a)


def sigmoid(a):
    """Logistic function, without overflow for large |a|."""
    # exp(-|a|) is in (0, 1], so neither branch can overflow.
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _hidden_size(w_hh):
    return np.shape(w_hh)[1]


# --------------------------------------------------------------------- LSTM


def lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh):
    """One LSTM step. x (B, I), h and c (B, H) -> (h1, c1, cache)."""
    x, w_ih, w_hh = _f64(x), _f64(w_ih), _f64(w_hh)
    H = _hidden_size(w_hh)
    shape = (x.shape[0], H)
    h, c = _or_zeros(h, shape), _or_zeros(c, shape)
    b_ih, b_hh = _or_zeros(b_ih, 4 * H), _or_zeros(b_hh, 4 * H)

    # All four gate pre-activations at once, then split into blocks of H.
    a = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    a_i, a_f, a_g, a_o = np.split(a, 4, axis=1)
    i, f, g, o = sigmoid(a_i), sigmoid(a_f), np.tanh(a_g), sigmoid(a_o)

    c1 = f * c + i * g
    tanh_c1 = np.tanh(c1)
    h1 = o * tanh_c1

    cache = dict(x=x, h=h, c=c, w_ih=w_ih, w_hh=w_hh,
                 i=i, f=f, g=g, o=o, tanh_c1=tanh_c1)
    return h1, c1, cache


def lstm_cell_backward(dh1, dc1, cache):
    """Gradients of one LSTM step -> (dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh)."""
    i, f, g, o = cache["i"], cache["f"], cache["g"], cache["o"]
    tanh_c1 = cache["tanh_c1"]
    dh1 = _or_zeros(dh1, o.shape)
    dc1 = _or_zeros(dc1, o.shape)

    # c1 reaches the loss directly (dc1) and through h1 = o * tanh(c1).
    dc1 = dc1 + dh1 * o * (1.0 - tanh_c1 ** 2)

    # Gradients w.r.t. the gate pre-activations, via the activations' derivatives.
    da_i = dc1 * g * i * (1.0 - i)
    da_f = dc1 * cache["c"] * f * (1.0 - f)
    da_g = dc1 * i * (1.0 - g ** 2)
    da_o = dh1 * tanh_c1 * o * (1.0 - o)
    da = np.concatenate([da_i, da_f, da_g, da_o], axis=1)

    # a is linear in x, h and the parameters; both biases see the same da.
    dx = da @ cache["w_ih"]
    dh = da @ cache["w_hh"]
    dc = dc1 * f
    dw_ih = da.T @ cache["x"]
    dw_hh = da.T @ cache["h"]
    db = da.sum(axis=0)
    return dx, dh, dc, dw_ih, dw_hh, db, db.copy()


def lstm_forward(x, w_ih, w_hh, b_ih, b_hh, h0=None, c0=None, reverse=False):
    """LSTM over a sequence x (T, B, I) -> (y, h_n, c_n, cache)."""
    x = _f64(x)
    T, B, _ = x.shape
    H = _hidden_size(w_hh)
    h, c = _or_zeros(h0, (B, H)), _or_zeros(c0, (B, H))

    y = np.empty((T, B, H))
    steps = []
    # Walk time in processing order; each step's output stays at its own t.
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        h, c, step_cache = lstm_cell_forward(x[t], h, c, w_ih, w_hh, b_ih, b_hh)
        y[t] = h
        steps.append((t, step_cache))

    cache = dict(steps=steps, x_shape=x.shape,
                 w_ih_shape=np.shape(w_ih), w_hh_shape=np.shape(w_hh))
    return y, h, c, cache


def lstm_backward(dy, dh_n, dc_n, cache):
    """Gradients of lstm_forward -> (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh)."""
    T, B, _ = cache["x_shape"]
    H = cache["w_hh_shape"][1]
    dy = _or_zeros(dy, (T, B, H))
    dh = _or_zeros(dh_n, (B, H))
    dc = _or_zeros(dc_n, (B, H))

    dx = np.zeros(cache["x_shape"])
    dw_ih = np.zeros(cache["w_ih_shape"])
    dw_hh = np.zeros(cache["w_hh_shape"])
    db_ih = np.zeros(4 * H)
    db_hh = np.zeros(4 * H)
    # Undo the steps last-first; h of a step feeds both y[t] and the next step.
    for t, step_cache in reversed(cache["steps"]):
        g = lstm_cell_backward(dh + dy[t], dc, step_cache)
        dx[t], dh, dc = g[0], g[1], g[2]
        dw_ih += g[3]
        dw_hh += g[4]
        db_ih += g[5]
        db_hh += g[6]
    return dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh


# ---------------------------------------------------------------------- GRU


def gru_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh, linear_before_reset=True):
    """One GRU step. x (B, I), h (B, H) -> (h1, cache)."""
    x, w_ih, w_hh = _f64(x), _f64(w_ih), _f64(w_hh)
    H = _hidden_size(w_hh)
    h = _or_zeros(h, (x.shape[0], H))
    b_ih, b_hh = _or_zeros(b_ih, 3 * H), _or_zeros(b_hh, 3 * H)

    gi_r, gi_z, gi_n = np.split(x @ w_ih.T + b_ih, 3, axis=1)
    # r and z use the hidden projection the same way in both forms.
    gh_r, gh_z = np.split(h @ w_hh[:2 * H].T + b_hh[:2 * H], 2, axis=1)
    r = sigmoid(gi_r + gh_r)
    z = sigmoid(gi_z + gh_z)

    # The forms differ only in where r enters the candidate n:
    # after the hidden linear map (linear_before_reset) or on h before it (not linear_before_reset).
    if linear_before_reset:
        h_for_n = h
        gh_n = h @ w_hh[2 * H:].T + b_hh[2 * H:]
        n = np.tanh(gi_n + r * gh_n)
    else:
        h_for_n = r * h
        gh_n = None
        n = np.tanh(gi_n + h_for_n @ w_hh[2 * H:].T + b_hh[2 * H:])

    h1 = (1.0 - z) * n + z * h

    cache = dict(x=x, h=h, w_ih=w_ih, w_hh=w_hh, r=r, z=z, n=n,
                 gh_n=gh_n, h_for_n=h_for_n,
                 linear_before_reset=linear_before_reset)
    return h1, cache


def gru_cell_backward(dh1, cache):
    """Gradients of one GRU step -> (dx, dh, dw_ih, dw_hh, db_ih, db_hh)."""
    h, r, z, n = cache["h"], cache["r"], cache["z"], cache["n"]
    w_hh = cache["w_hh"]
    H = h.shape[1]
    dh1 = _or_zeros(dh1, h.shape)

    # h1 = (1 - z) n + z h: h1 is linear in n, z and (directly) h.
    dn = dh1 * (1.0 - z)
    dz = dh1 * (h - n)
    dh = dh1 * z

    # Through tanh to the candidate's pre-activation.
    da_n = dn * (1.0 - n ** 2)

    # dgh_n: gradient w.r.t. the hidden side's n block output (W_hn h_for_n + b_hn).
    if cache["linear_before_reset"]:
        dr = da_n * cache["gh_n"]
        dgh_n = da_n * r
    else:
        d_rh = da_n @ w_hh[2 * H:]
        dr = d_rh * h
        dh += d_rh * r
        dgh_n = da_n

    da_r = dr * r * (1.0 - r)
    da_z = dz * z * (1.0 - z)
    dgi = np.concatenate([da_r, da_z, da_n], axis=1)
    dgh_rz = np.concatenate([da_r, da_z], axis=1)

    dx = dgi @ cache["w_ih"]
    dw_ih = dgi.T @ cache["x"]
    db_ih = dgi.sum(axis=0)

    # Hidden side: r, z blocks multiply h; the n block multiplies h_for_n
    # (h with linear_before_reset, r * h without, whose h-path was added above).
    dh += dgh_rz @ w_hh[:2 * H]
    if cache["linear_before_reset"]:
        dh += dgh_n @ w_hh[2 * H:]
    dw_hh = np.concatenate([dgh_rz.T @ h, dgh_n.T @ cache["h_for_n"]], axis=0)
    db_hh = np.concatenate([dgh_rz.sum(axis=0), dgh_n.sum(axis=0)])
    return dx, dh, dw_ih, dw_hh, db_ih, db_hh


def gru_forward(x, w_ih, w_hh, b_ih, b_hh, h0=None, reverse=False,
                linear_before_reset=True):
    """GRU over a sequence x (T, B, I) -> (y, h_n, cache)."""
    x = _f64(x)
    T, B, _ = x.shape
    H = _hidden_size(w_hh)
    h = _or_zeros(h0, (B, H))

    y = np.empty((T, B, H))
    steps = []
    # Walk time in processing order; each step's output stays at its own t.
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        h, step_cache = gru_cell_forward(x[t], h, w_ih, w_hh, b_ih, b_hh,
                                         linear_before_reset)
        y[t] = h
        steps.append((t, step_cache))

    cache = dict(steps=steps, x_shape=x.shape,
                 w_ih_shape=np.shape(w_ih), w_hh_shape=np.shape(w_hh))
    return y, h, cache


def gru_backward(dy, dh_n, cache):
    """Gradients of gru_forward -> (dx, dh0, dw_ih, dw_hh, db_ih, db_hh)."""
    T, B, _ = cache["x_shape"]
    H = cache["w_hh_shape"][1]
    dy = _or_zeros(dy, (T, B, H))
    dh = _or_zeros(dh_n, (B, H))

    dx = np.zeros(cache["x_shape"])
    dw_ih = np.zeros(cache["w_ih_shape"])
    dw_hh = np.zeros(cache["w_hh_shape"])
    db_ih = np.zeros(3 * H)
    db_hh = np.zeros(3 * H)
    # Undo the steps last-first; h of a step feeds both y[t] and the next step.
    for t, step_cache in reversed(cache["steps"]):
        g = gru_cell_backward(dh + dy[t], step_cache)
        dx[t], dh = g[0], g[1]
        dw_ih += g[2]
        dw_hh += g[3]
        db_ih += g[4]
        db_hh += g[5]
    return dx, dh, dw_ih, dw_hh, db_ih, db_hh


# ------------------------------------------------------- stacked layers


def _layer_params(params, layer, direction):
    sfx = f"_l{layer}" + ("_reverse" if direction else "")
    return [params.get(kind + sfx) for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


def rnn_forward(mode, x, params, num_layers, bidirectional, h0=None, c0=None, lengths=None,
                masks=None, linear_before_reset=True):
    """Stacked (bi)directional LSTM/GRU, one sequence at a time.

    x (T, B, I); params: torch names -> arrays (missing biases are zeros);
    h0, c0 (num_layers * D, B, H) or None; lengths (B,) or None for all T;
    masks: per layer below the top, the (T, B, D*H) dropout mask multiplied
    into its output, or None. Outputs past a sequence's end are zero.
    Returns (y, h_n, c_n, cache); c_n is None for the GRU.
    """
    x = _f64(x)
    T, B, _ = x.shape
    D = 2 if bidirectional else 1
    H = np.shape(params["weight_hh_l0"])[1]
    lengths = [T] * B if lengths is None else [int(n) for n in lengths]
    y = np.zeros((T, B, D * H))
    h_n = np.zeros((num_layers * D, B, H))
    c_n = np.zeros((num_layers * D, B, H)) if mode == "LSTM" else None
    caches = []
    # Each sequence runs alone over its own steps: lengths need no masking.
    for b in range(B):
        n = lengths[b]
        inp = x[:n, b:b + 1]
        seq_caches = []
        for layer in range(num_layers):
            outs = []
            for d in range(D):
                k = layer * D + d
                w = _layer_params(params, layer, d)
                h = None if h0 is None else _f64(h0)[k, b:b + 1]
                if mode == "LSTM":
                    c = None if c0 is None else _f64(c0)[k, b:b + 1]
                    out, h_n[k, b], c_n[k, b], cache = lstm_forward(inp, *w, h0=h, c0=c, reverse=bool(d))
                else:
                    out, h_n[k, b], cache = gru_forward(inp, *w, h0=h, reverse=bool(d),
                                                        linear_before_reset=linear_before_reset)
                outs.append(out)
                seq_caches.append(cache)
            inp = np.concatenate(outs, axis=2)
            if masks is not None and layer < num_layers - 1 and masks[layer] is not None:
                inp = inp * masks[layer][:n, b:b + 1]
        y[:n, b] = inp[:, 0]
        caches.append(seq_caches)
    cache = dict(mode=mode, caches=caches, lengths=lengths, x_shape=x.shape, num_layers=num_layers, D=D, H=H,
                 masks=masks, shapes={k: np.shape(v) for k, v in params.items() if v is not None})
    return y, h_n, c_n, cache


def rnn_backward(dy, dh_n, dc_n, cache):
    """Gradients of rnn_forward -> (dx, dh0, dc0, grads) with grads a dict
    of torch names -> gradients (biases included even if they were None)."""
    mode, D, H, L = cache["mode"], cache["D"], cache["H"], cache["num_layers"]
    T, B, _ = cache["x_shape"]
    dy = _or_zeros(dy, (T, B, D * H))
    dh_n = _or_zeros(dh_n, (L * D, B, H))
    dc_n = _or_zeros(dc_n, (L * D, B, H))
    dx = np.zeros(cache["x_shape"])
    dh0 = np.zeros((L * D, B, H))
    dc0 = np.zeros((L * D, B, H)) if mode == "LSTM" else None
    grads = {}
    for b in range(B):
        n = cache["lengths"][b]
        g = dy[:n, b:b + 1]
        # Layers last-first; both directions of a layer read the same input.
        for layer in range(L - 1, -1, -1):
            g_in = 0.0
            for d in range(D):
                k = layer * D + d
                step = cache["caches"][b][k]
                g_d = g[:, :, d * H:(d + 1) * H]
                if mode == "LSTM":
                    r = lstm_backward(g_d, dh_n[k, b:b + 1], dc_n[k, b:b + 1], step)
                    dc0[k, b] = r[2][0]
                    rest = r[3:]
                else:
                    r = gru_backward(g_d, dh_n[k, b:b + 1], step)
                    rest = r[2:]
                g_in = g_in + r[0]
                dh0[k, b] = r[1][0]
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                for kind, value in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), rest):
                    grads[kind + sfx] = grads.get(kind + sfx, 0.0) + value
            g = g_in
            if layer > 0 and cache["masks"] is not None and cache["masks"][layer - 1] is not None:
                g = g * cache["masks"][layer - 1][:n, b:b + 1]
        dx[:n, b] = g[:, 0]
    return dx, dh0, dc0, grads
