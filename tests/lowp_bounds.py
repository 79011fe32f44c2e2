"""Element-wise error bounds of bf16 and int8 INFERENCE (y, h_n, c_n) against
the float64 reference, computed from the shape and the data, not a fudge
factor. Used by tests/layers/test_precision_bounds.py.

What the kernels do (design, "Precisions"): every product's operands -- the
weights, x_t, and h_{t-1} (r * h_{t-1} for the GRU's reset-before-linear
n gate) -- are rounded (bf16) or quantized (int8); the products accumulate
exactly (int8, int32) or in float32 (bf16); everything else -- bias adds,
gate activations, the cell state, h -- is float32.

1. One product s_j = sum_k w_jk a_k (K terms), S_j = sum_k |w_jk| |a_k|:

   bf16: each operand is rounded to nearest with an 8-bit significand,
     w~ = w (1 + d1), a~ = a (1 + d2), |d| <= u = 2^-8; a product of two bf16
     values is exact in float32 and the float32 sum of K of them errs by at
     most gamma_K = K u32 / (1 - K u32) (u32 = 2^-24) times their |sum|:
       |s~ - s| <= ((1 + u)^2 - 1) S + gamma_K (1 + u)^2 S.
   int8: a row a (one batch row of x_t or h_{t-1}, K values) is quantized
     asymmetrically with scale r_a / 255, r_a = max(0, max a) - min(0, min a)
     its range, and a zero point (so that (u - zp) * scale is the value the
     products use), w's row j symmetrically with amax_k |w_jk| / 127, rounding
     to nearest, so each element errs by at most half a step (the clamps to
     0..255 cut at most half a step too: zp is within half a step of
     -min / scale): e_a = r_a / 510, e_w = amax_wj / 254 (times 1 + O(u32) for
     the float32 scale, and O(u32) r_a for the rounding of a / scale; a row
     whose range is below 255 FLT_MIN is quantized to zero: 255 FLT_MIN more).
     The integer sum (zero point removed) is exact, then three float32
     roundings (int -> float, times each scale):
       |s~ - s| <= e_a ||w_j||_1 + e_w ||a||_1 + K e_a e_w   (+ O(u32) S).
   An operand that already carries an error e (the GRU's r * h) adds
   sum_k |w_jk| e_k, and its magnitude |a| + e enters the bound above.

2. A gate pre-activation is a sum of such products and biases, plus a few
   float32 additions (4 u32 of the magnitudes). sigmoid and tanh move it by at
   most their largest slope on [a - da, a + da] (<= 1/4 and <= 1: the local
   Lipschitz constant, small for saturated gates), plus the kernels' own
   activation error (4 eps32 relative, csrc/kernels/activation_accuracy.h).

3. One step's LOCAL error, given the exact states it starts from (h, c):
     LSTM: dc1 <= df |c| + (i + di) dg + |g| di,
           dh1 <= do |tanh c1| + (o + do) dtanh(c1)
     GRU:  dh1 <= dn (1 - z + dz) + dz |h - n|   (h1 = n + z (h - n)),
           lbr: dn_pre <= dx_n + (r + dr) dgh_n + dr |gh_n|,
           no-lbr: r * h carries dr |h| into the n product (1., last line),
   plus float32 roundings of each of these few operations. This is rigorous
   (no approximation) and checked on every step of every sequence with the
   kernel's own states as the step's input: step_check().

4. END-TO-END, |y_t - y_ref_t|: an error e_{s} left by step s reaches step t
   through the recurrence's Jacobians, e_t = J_t e_{t-1} + eta_t with the
   local errors |eta_t| <= L_t (3.), so to first order
     |e_t| <= sum_{s <= t} |J_t J_{t-1} ... J_{s+1}| L_s
   with the Jacobians of the float64 reference along its own trajectory
   (state (h, c) for the LSTM). The product is taken BEFORE the absolute
   value: where the recurrence contracts the old errors fade, and the bound
   stays of the size of a few steps' local errors (a triangle-inequality
   bound, prod_s |J_s|, grows like (||W_hh||_1 / 4)^T and is useless beyond a
   few steps). The neglected second-order terms are O(|e| ||W_hh row||_1)
   relative (< 5 % for errors < 1e-2 at these weight scales); SECOND_ORDER
   covers them. endtoend_bound().

Not covered: subnormal operands (bf16 keeps float32's exponent range, so
only values below 2^-126 lose the relative bound; test data never has them).
"""

import numpy as np

from rnnkit import reference

U_BF16 = 2.0 ** -8
U_F32 = 2.0 ** -24
F32_MIN = 2.0 ** -126
# csrc/kernels/activation_accuracy.h: 4 eps(float32) relative.
ACT_REL = 4.0 * 2.0 ** -23
# Headroom for the terms a first-order propagation leaves out (4. above).
SECOND_ORDER = 1.25

PRECISIONS = ("bfloat16", "int8")


# ------------------------------------------------------------ 1. products


def row_range(a, err=0.0):
    """int8: the largest range max(0, max) - min(0, min) of operand rows
    within err of a (B, K) -> (B,)."""
    a = np.asarray(a, np.float64)
    hi = np.maximum(0.0, (a + err).max(axis=1, initial=0.0))
    lo = np.minimum(0.0, (a - err).min(axis=1, initial=0.0))
    return hi - lo


def product_bound(w, a_abs, precision, a_range=None):
    """Bound (B, N) on |computed - exact| of a @ w.T (no bias), for operand
    rows whose magnitudes are at most a_abs (B, K); w (N, K) exact weights.
    int8: a_range (B,) bounds the rows' ranges (row_range); without it, the
    magnitudes do (a range is at most twice the largest |a|)."""
    w_abs = np.abs(w)
    K = w.shape[1]
    S = a_abs @ w_abs.T
    if precision == "bfloat16":
        gamma = K * U_F32 / (1.0 - K * U_F32)
        grow = (1.0 + U_BF16) ** 2
        return (grow - 1.0) * S + gamma * grow * S
    assert precision == "int8", precision
    if a_range is None:
        a_range = 2.0 * a_abs.max(axis=1, initial=0.0)
    # (B, 1): all-zero rows are exact (range 0, nothing below 255 FLT_MIN).
    a_range = np.asarray(a_range, np.float64)[:, None]
    e_a = (1.0 / 510.0 + 5.0 * U_F32) * a_range + np.where(a_range > 0, 255.0 * F32_MIN, 0.0)
    e_w = (1.0 / 254.0 + 5.0 * U_F32) * w_abs.max(axis=1, initial=0.0)[None, :]    # (1, N)
    err = (e_a * w_abs.sum(axis=1)[None, :] + e_w * a_abs.sum(axis=1)[:, None]
           + K * e_a * e_w + 8.0 * U_F32 * S)
    # int32 -> float32 and the two scale products, on |s~| <= S + err.
    return err + 4.0 * U_F32 * (S + err)


# ------------------------------------------------------------- 2. gates


def _slope_sigmoid(a, da):
    """Largest sigmoid' on [a - da, a + da]."""
    m = np.maximum(np.abs(a) - da, 0.0)
    s = reference.sigmoid(m)
    return s * (1.0 - s)


def _slope_tanh(a, da):
    m = np.maximum(np.abs(a) - da, 0.0)
    return 1.0 - np.tanh(m) ** 2


def _activation_error(value, slope, da):
    """Bound on |f(a~) - f(a)| for |a~ - a| <= da, f's slope <= slope there,
    plus the kernel's relative activation error on |f(a~)|."""
    moved = slope * da
    return moved + ACT_REL * (np.abs(value) + moved)


def _fsum(*mags):
    """float32 rounding of a few additions of terms of these magnitudes."""
    return 4.0 * U_F32 * sum(mags)


# ---------------------------------------------------------- 3. one step


def _split(a, parts):
    return np.split(a, parts, axis=-1)


def lstm_step(x, h, c, w, precision):
    """Exact step from (h, c) and the bound on its local error.
    w = (w_ih, w_hh, b_ih, b_hh) float64. -> (h1, c1, dh1, dc1), each (B, H)."""
    w_ih, w_hh, b_ih, b_hh = w
    gx, gh = x @ w_ih.T, h @ w_hh.T
    a = gx + gh + b_ih + b_hh
    Sx, Sh = np.abs(x) @ np.abs(w_ih).T, np.abs(h) @ np.abs(w_hh).T
    da = (product_bound(w_ih, np.abs(x), precision, row_range(x))
          + product_bound(w_hh, np.abs(h), precision, row_range(h))
          + _fsum(Sx, Sh, np.abs(b_ih), np.abs(b_hh)))
    (a_i, a_f, a_g, a_o), (da_i, da_f, da_g, da_o) = _split(a, 4), _split(da, 4)
    i, f, g, o = (reference.sigmoid(a_i), reference.sigmoid(a_f), np.tanh(a_g),
                  reference.sigmoid(a_o))
    di = _activation_error(i, _slope_sigmoid(a_i, da_i), da_i)
    df = _activation_error(f, _slope_sigmoid(a_f, da_f), da_f)
    dg = _activation_error(g, _slope_tanh(a_g, da_g), da_g)
    do = _activation_error(o, _slope_sigmoid(a_o, da_o), da_o)

    c1 = f * c + i * g
    dc1 = (df * np.abs(c) + (i + di) * dg + np.abs(g) * di
           + _fsum((f + df) * np.abs(c), (i + di) * (np.abs(g) + dg)))
    t = np.tanh(c1)
    dt = _activation_error(t, _slope_tanh(c1, dc1), dc1)
    h1 = o * t
    dh1 = do * np.abs(t) + (o + do) * dt + _fsum((o + do) * (np.abs(t) + dt))
    return h1, c1, dh1, dc1


def gru_step(x, h, w, precision, linear_before_reset):
    """Exact GRU step from h and the bound on its local error -> (h1, dh1)."""
    w_ih, w_hh, b_ih, b_hh = w
    H = h.shape[-1]
    gx = x @ w_ih.T
    dgx = product_bound(w_ih, np.abs(x), precision, row_range(x))
    Sx = np.abs(x) @ np.abs(w_ih).T
    (gx_r, gx_z, gx_n), (dgx_r, dgx_z, dgx_n), (Sx_r, Sx_z, Sx_n) = _split(gx, 3), _split(dgx, 3), _split(Sx, 3)
    b_ir, b_iz, b_in = np.split(b_ih, 3)
    b_hr, b_hz, b_hn = np.split(b_hh, 3)

    # r and z: the hidden product of their 2H rows, the same in both forms.
    w_rz = w_hh[:2 * H]
    gh_rz = h @ w_rz.T
    dgh_rz = product_bound(w_rz, np.abs(h), precision, row_range(h))
    Sh_rz = np.abs(h) @ np.abs(w_rz).T
    (gh_r, gh_z), (dgh_r, dgh_z), (Sh_r, Sh_z) = _split(gh_rz, 2), _split(dgh_rz, 2), _split(Sh_rz, 2)
    a_r = gx_r + gh_r + b_ir + b_hr
    a_z = gx_z + gh_z + b_iz + b_hz
    da_r = dgx_r + dgh_r + _fsum(Sx_r, Sh_r, np.abs(b_ir), np.abs(b_hr))
    da_z = dgx_z + dgh_z + _fsum(Sx_z, Sh_z, np.abs(b_iz), np.abs(b_hz))
    r, z = reference.sigmoid(a_r), reference.sigmoid(a_z)
    dr = _activation_error(r, _slope_sigmoid(a_r, da_r), da_r)
    dz = _activation_error(z, _slope_sigmoid(a_z, da_z), da_z)

    w_n = w_hh[2 * H:]
    if linear_before_reset:
        # n = tanh(gx_n + b_in + r * (h W_hn^T + b_hn))
        ghn = h @ w_n.T + b_hn
        dghn = (product_bound(w_n, np.abs(h), precision, row_range(h))
                + _fsum(np.abs(h) @ np.abs(w_n).T, np.abs(b_hn)))
        a_n = gx_n + b_in + r * ghn
        da_n = (dgx_n + (r + dr) * dghn + dr * np.abs(ghn)
                + _fsum(Sx_n, np.abs(b_in), (r + dr) * (np.abs(ghn) + dghn)))
    else:
        # n = tanh(gx_n + (r * h) W_hn^T + b_in + b_hn): the operand r * h
        # already carries r's error, which the product passes on.
        rh = r * h
        drh = dr * np.abs(h) + U_F32 * (r + dr) * np.abs(h)
        mag = np.abs(rh) + drh
        dghn = product_bound(w_n, mag, precision, row_range(rh, drh)) + drh @ np.abs(w_n).T
        Shn = mag @ np.abs(w_n).T
        a_n = gx_n + rh @ w_n.T + b_in + b_hn
        da_n = dgx_n + dghn + _fsum(Sx_n, Shn, np.abs(b_in), np.abs(b_hn))
    n = np.tanh(a_n)
    dn = _activation_error(n, _slope_tanh(a_n, da_n), da_n)

    # h1 = n + z (h - n): the kernel's form; exact value in either form.
    h1 = n + z * (h - n)
    dh1 = (dn * (1.0 - z + dz) + dz * np.abs(h - n)
           + _fsum(np.abs(n) + dn, (z + dz) * (np.abs(h) + np.abs(n) + dn)))
    return h1, dh1


def step(cell, x, h, c, w, precision):
    """One exact step from (h, c) and its local bounds -> (h1, c1, dh1, dc1);
    c1 and dc1 are None for the GRU. cell: lstm, gru, gru_no_lbr."""
    if cell == "lstm":
        return lstm_step(x, h, c, w, precision)
    h1, dh1 = gru_step(x, h, w, precision, cell != "gru_no_lbr")
    return h1, None, dh1, None


# ------------------------------------------------ 4. Jacobians, end to end


def _lstm_jacobian(x, h, c, w):
    """d(h1, c1) / d(h, c) of one LSTM step for ONE row: (2H, 2H)."""
    w_ih, w_hh, b_ih, b_hh = w
    H = h.shape[-1]
    a = x @ w_ih.T + h @ w_hh.T + b_ih + b_hh
    a_i, a_f, a_g, a_o = np.split(a, 4)
    i, f, g, o = (reference.sigmoid(a_i), reference.sigmoid(a_f), np.tanh(a_g),
                  reference.sigmoid(a_o))
    W_i, W_f, W_g, W_o = np.split(w_hh, 4)
    c1 = f * c + i * g
    t = np.tanh(c1)
    dc1_dh = ((c * f * (1 - f))[:, None] * W_f + (g * i * (1 - i))[:, None] * W_i
              + (i * (1 - g ** 2))[:, None] * W_g)
    dc1_dc = np.diag(f)
    dh1_dc1 = o * (1 - t ** 2)
    dh1_dh = (t * o * (1 - o))[:, None] * W_o + dh1_dc1[:, None] * dc1_dh
    dh1_dc = dh1_dc1[:, None] * dc1_dc
    J = np.empty((2 * H, 2 * H))
    J[:H, :H], J[:H, H:], J[H:, :H], J[H:, H:] = dh1_dh, dh1_dc, dc1_dh, dc1_dc
    return J


def _gru_jacobian(x, h, w, linear_before_reset):
    """dh1 / dh of one GRU step for ONE row: (H, H)."""
    w_ih, w_hh, b_ih, b_hh = w
    H = h.shape[-1]
    gx_r, gx_z, gx_n = np.split(x @ w_ih.T + b_ih, 3)
    W_r, W_z, W_n = np.split(w_hh, 3)
    b_hr, b_hz, b_hn = np.split(b_hh, 3)
    r = reference.sigmoid(gx_r + W_r @ h + b_hr)
    z = reference.sigmoid(gx_z + W_z @ h + b_hz)
    dr_dh = (r * (1 - r))[:, None] * W_r
    dz_dh = (z * (1 - z))[:, None] * W_z
    if linear_before_reset:
        ghn = W_n @ h + b_hn
        n = np.tanh(gx_n + r * ghn)
        dapre = ghn[:, None] * dr_dh + r[:, None] * W_n
    else:
        n = np.tanh(gx_n + W_n @ (r * h) + b_hn)
        drh_dh = h[:, None] * dr_dh + np.diag(r)
        dapre = W_n @ drh_dh
    dn_dh = (1 - n ** 2)[:, None] * dapre
    return (1 - z)[:, None] * dn_dh + (h - n)[:, None] * dz_dh + np.diag(z)


def endtoend_bound(cell, xs, h0, c0, w, precision):
    """First-order end-to-end bounds along ONE sequence's reference
    trajectory. xs (L, I) in processing order, h0/c0 (H,) -> (h_ref (L, H),
    c_ref (L, H) or None, Eh (L, H), Ec (L, H) or None), row k after step k."""
    lstm = cell == "lstm"
    H = h0.shape[0]
    h, c = h0, c0
    props = np.zeros((0, 2 * H if lstm else H, 2 * H if lstm else H))  # P_{k,s} for s < k
    local = []
    hs, cs, Eh, Ec = [], [], [], []
    for x in xs:
        # Jacobian of this step at its input state, then the local error.
        if lstm:
            J = _lstm_jacobian(x, h, c, w)
        else:
            J = _gru_jacobian(x, h, w, cell != "gru_no_lbr")
        h1, c1, dh1, dc1 = step(cell, x[None], h[None], None if c is None else c[None], w, precision)
        L = np.concatenate([dh1[0], dc1[0]]) if lstm else dh1[0]
        # props[s] = J_k ... J_{s+1}: the older ones times J_k, then the identity for s = k.
        props = np.concatenate([J[None] @ props, np.eye(J.shape[0])[None]])
        local.append(L)
        E = np.einsum("sij,sj->i", np.abs(props), np.array(local)) * SECOND_ORDER
        h, c = h1[0], None if c1 is None else c1[0]
        hs.append(h)
        Eh.append(E[:H])
        if lstm:
            cs.append(c)
            Ec.append(E[H:])
    if lstm:
        return np.array(hs), np.array(cs), np.array(Eh), np.array(Ec)
    return np.array(hs), None, np.array(Eh), None


# ------------------------------------------------ running rnnkit, checking


def batch_sizes_of(lengths):
    """PackedSequence batch_sizes of lengths sorted longest first."""
    return np.array([sum(n > t for n in lengths) for t in range(lengths[0])], dtype=np.int64)


def _pack_sequences(seqs):
    """Sequences (L_b, F), longest first -> packed (sum L_b, F) rows and batch_sizes."""
    lengths = [len(s) for s in seqs]
    bs = batch_sizes_of(lengths)
    rows = [s[t] for t in range(lengths[0]) for s in seqs if len(s) > t]
    return np.ascontiguousarray(np.array(rows, dtype=np.float32)), bs


def _unpack_sequences(packed, lengths):
    """Inverse of _pack_sequences: packed rows -> list of (L_b, F)."""
    out = [[] for _ in lengths]
    r = 0
    for t in range(max(lengths)):
        for b, n in enumerate(lengths):
            if n > t:
                out[b].append(packed[r])
                r += 1
    return [np.array(o) for o in out]


def run_rnnkit(cell, packed_weights, seqs, h0, c0, reverse):
    """rnnkit inference on sequences (each (L_b, I) in time order, longest
    first; with batch_sizes unless all lengths are equal) -> (ys: list of
    (L_b, H) in time order, h_n (B, H), c_n (B, H) or None), float64."""
    lengths = [len(s) for s in seqs]
    if len(set(lengths)) == 1:
        x = np.ascontiguousarray(np.stack(seqs, axis=1), dtype=np.float32)
        bs = None
    else:
        x, bs = _pack_sequences(seqs)
    from rnnkit import _core
    h0 = np.ascontiguousarray(h0, dtype=np.float32)
    c0 = None if c0 is None else np.ascontiguousarray(c0, dtype=np.float32)
    if cell == "lstm":
        y, h_n, c_n = _core.lstm_forward(x, packed_weights, h0, c0, reverse=reverse, batch_sizes=bs)
    else:
        y, h_n = _core.gru_forward(x, packed_weights, h0, reverse=reverse, batch_sizes=bs)
        c_n = None
    assert y.dtype == np.float32
    ys = [y[:, b] for b in range(len(seqs))] if bs is None else _unpack_sequences(y, lengths)
    f64 = lambda a: None if a is None else np.asarray(a, dtype=np.float64)
    return [f64(v) for v in ys], f64(h_n), f64(c_n)


def kernel_states(cell, packed_weights, seqs, h0, c0, reverse):
    """The kernel's own state after every step of every sequence, from one
    run on all prefixes (in processing order) of all sequences: the state
    after k + 1 steps of sequence b is the final state of its prefix of
    k + 1 steps. -> list over b of (h (L_b, H), c (L_b, H) or None), in
    processing order. (Each row's arithmetic is its own -- per-row
    quantization, fixed summation order -- so a prefix run repeats the
    full run's steps bit for bit; the caller checks h against y.)"""
    subs, owners = [], []
    for b, s in enumerate(seqs):
        for n in range(1, len(s) + 1):
            subs.append(s[len(s) - n:] if reverse else s[:n])
            owners.append((b, n))
    order = sorted(range(len(subs)), key=lambda j: -len(subs[j]))   # stable: longest first
    subs = [subs[j] for j in order]
    owners = [owners[j] for j in order]
    rows = [o[0] for o in owners]
    h0s = np.ascontiguousarray(h0[rows], dtype=np.float32)
    c0s = None if c0 is None else np.ascontiguousarray(c0[rows], dtype=np.float32)
    _, h_n, c_n = run_rnnkit(cell, packed_weights, subs, h0s, c0s, reverse)
    H = h0.shape[1]
    hs = [np.empty((len(s), H)) for s in seqs]
    cs = [np.empty((len(s), H)) for s in seqs] if c_n is not None else None
    for j, (b, n) in enumerate(owners):
        hs[b][n - 1] = h_n[j]
        if cs is not None:
            cs[b][n - 1] = c_n[j]
    return [(hs[b], None if cs is None else cs[b]) for b in range(len(seqs))]


def processing_order(a, reverse):
    return a[::-1] if reverse else a


class Ratios:
    """The largest err / bound seen, with where, for reports and for the
    check that a bound is not vacuous."""

    def __init__(self):
        self.worst, self.where, self.count = 0.0, "", 0

    def check(self, name, actual, exact, bound):
        err = np.abs(actual - exact)
        ok = err <= bound
        ratio = np.where(bound > 0, err / np.where(bound > 0, bound, 1.0), np.where(err > 0, np.inf, 0.0))
        ratio = np.where(np.isnan(err), np.inf, ratio)
        if not np.all(ok):
            idx = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
            raise AssertionError(
                f"{name}: {np.count_nonzero(~ok)} of {ok.size} elements out of bound; worst at {idx}: "
                f"actual={actual[idx]!r} exact={exact[idx]!r} err={err[idx]:.3e} "
                f"bound={bound[idx]:.3e} err/bound={ratio[idx]:.3g}")
        self.count += err.size
        if err.size and ratio.max() > self.worst:
            self.worst = float(ratio.max())
            self.where = name
        return float(err.max()) if err.size else 0.0


def check_case(cell, precision, seqs, h0, c0, weights, reverse, packed_weights, e2e=None):
    """Runs rnnkit on the sequences and asserts, element-wise:
    - local: every step of every sequence from the kernel's own previous
      state is within the rigorous one-step bound (3.);
    - end to end: y, h_n, c_n within the first-order propagated bound (4.)
      (e2e: endtoend results per sequence, or None to compute them here).
    Returns (local Ratios, end-to-end Ratios, max end-to-end error)."""
    lstm = cell == "lstm"
    ys, h_n, c_n = run_rnnkit(cell, packed_weights, seqs, h0, c0, reverse)
    states = kernel_states(cell, packed_weights, seqs, h0, c0, reverse)
    local, whole = Ratios(), Ratios()
    # Local: gather every step of every sequence, with its input state.
    X, Hp, Cp, Hk, Ck = [], [], [], [], []
    for b, s in enumerate(seqs):
        hk, ck = states[b]
        y_proc = processing_order(ys[b], reverse)
        assert np.array_equal(hk, y_proc), \
            f"sequence {b}: the prefix runs' h_n differ from the full run's y (row-dependent arithmetic?)"
        X.append(processing_order(np.asarray(s, dtype=np.float64), reverse))
        Hp.append(np.vstack([h0[b:b + 1], hk[:-1]]))
        Hk.append(hk)
        if lstm:
            Cp.append(np.vstack([c0[b:b + 1], ck[:-1]]))
            Ck.append(ck)
    X, Hp, Hk = np.vstack(X), np.vstack(Hp), np.vstack(Hk)
    Cp = np.vstack(Cp) if lstm else None
    h1, c1, dh1, dc1 = step(cell, X, Hp, Cp, weights, precision)
    local.check("local h", Hk, h1, dh1)
    if lstm:
        Ck = np.vstack(Ck)
        local.check("local c", Ck, c1, dc1)
    local.kappa = product_scale_estimate(cell, X, Hp, Cp, weights, Hk, Ck if lstm else None)
    # End to end, against the reference's trajectory.
    if e2e is None:
        e2e = [endtoend_bound(cell, processing_order(np.asarray(s, np.float64), reverse), h0[b],
                              None if c0 is None else c0[b], weights, precision)
               for b, s in enumerate(seqs)]
    worst = 0.0
    for b, (h_ref, c_ref, Eh, Ec) in enumerate(e2e):
        y_proc = processing_order(ys[b], reverse)
        worst = max(worst, whole.check(f"y of sequence {b}", y_proc, h_ref, Eh))
        whole.check(f"h_n[{b}]", h_n[b], h_ref[-1], Eh[-1])
        if lstm:
            worst = max(worst, whole.check(f"c_n[{b}]", c_n[b], c_ref[-1], Ec[-1]))
    return local, whole, worst


# ------------------------------------------- 5. systematic (scale) errors


def product_scale_estimate(cell, X, Hp, Cp, weights, Hk, Ck):
    """Least-squares estimate kappa of a systematic relative error of the
    products (every product s computed as (1 + kappa) s), from the local
    errors of many steps, with its standard error.

    The bounds above must allow every rounding to go the worst way, so an
    error that is wrong by a few tenths of a percent but systematic -- a
    quantization scale off by 1 %, rounding toward zero instead of to
    nearest -- stays within them. Round-to-nearest errors are unbiased and
    uncorrelated with the products, so their projection on the direction
    D = d(step)/d(kappa) is ~0; a systematic error shows up as kappa != 0.
    X, Hp, Cp: the steps' inputs (kernel states); Hk, Ck: the kernel's
    results. -> (kappa, standard error)."""
    lstm = cell == "lstm"
    delta = 1e-4
    scaled = (weights[0] * (1 + delta), weights[1] * (1 + delta), weights[2], weights[3])
    # Only step()'s exact values are used here, not its bounds (so any precision).
    base = step(cell, X, Hp, Cp, weights, "bfloat16")
    moved = step(cell, X, Hp, Cp, scaled, "bfloat16")
    D = [(moved[0] - base[0]) / delta]
    eta = [Hk - base[0]]
    if lstm:
        D.append((moved[1] - base[1]) / delta)
        eta.append(Ck - base[1])
    D, eta = np.concatenate([d.ravel() for d in D]), np.concatenate([e.ravel() for e in eta])
    dd = float(D @ D)
    if dd == 0.0:
        return 0.0, np.inf
    kappa = float(D @ eta) / dd
    resid = eta - kappa * D
    # Heteroscedasticity-robust standard error of the slope.
    se = float(np.sqrt(np.sum((resid * D) ** 2))) / dd
    return kappa, se
