"""bfloat16 training: forward with workspace and backward of LSTM and both GRU
forms, for weights packed with precision='bfloat16' (design, "Precisions":
every product's operands in bf16 -- weights, x, h_{t-1}, the gate gradients
-- with float32 sums; gate math, states, workspace and every gradient
accumulation in float32).

Two checks per case, on every ISA:

1. Against the float64 reference (rnnkit.reference), element-wise,
       |g - g_ref| <= C_REF * u * (M + mean(M)),   u = 2^-8,
   M the magnitude of the last sum that made the element: sum_k |a_k| |b_k|
   over the final product's terms (dx: |dgates| @ |W_ih|, dW_ih: |dgates|^T
   @ |X|, dW_hh: |dgates|^T @ |H_prev|, dh0: |dgates| @ |W_hh| plus the
   GRU's direct path; db: sum |dgates|; dc0: |dc * f|), computed by
   emulate() from the reference's own values. Why: rounding an operand to
   bf16 (8 significant bits, to nearest) changes it by at most u relative,
   so each product term by at most (1 + u)^2 - 1 ~ 2u relative and the
   product by at most 2u M (float32 sums add ~K 2^-24 M, negligible); its
   operands bring the errors of the products before them (dgates: the
   forward's and dh's, each at most ~2u of their own magnitude, which the
   recurrence does not amplify at these weight scales: |W_hh| times the
   gates' slopes stays below 1). C_REF = 4 = 2 + 2. The mean(M) floor is for
   elements whose own terms cancel while their operands carry the errors of
   larger neighbours. (Measured worst over 4 seeds of these shapes: 1.8.)

2. Against a NumPy model of the same arithmetic (emulate(..., bf16)):
   float64 everywhere, but exactly the operands the design rounds are
   rounded to bf16; its forward follows rnnkit's own h_t (the outputs y), so
   both round the very same h values. The two then differ by float32
   rounding only (~1e-5 u M), except where an operand lies so close to a
   bf16 rounding midpoint that float32 and float64 round it to different
   neighbours: that one term moves by one bf16 step, and the elements
   downstream of it by up to ~0.1 u M. So the check is on the TYPICAL
   element, the median of |g - g_emu| / (u (M + mean(M))) <= 2^-10, for
   every gradient that comes out of a bf16 product (dx, dh0, dW_ih, dW_hh):
   measured <= 3e-5, while leaving out the rounding of the backward's
   operands alone (dgates, W) gives >= 4e-3 for each of them -- the check
   sees the rounding of each operand class, which check 1 cannot.

The model is itself checked: with the identity instead of bf16() it is the
float64 reference, to 1e-12.
"""

import numpy as np
import pytest

import rnnkit
from rnnkit import reference
from helpers import CELL_FORMS, GATES, linear_before_reset, make_case, reference_forward_backward

U = 2.0 ** -8
C_REF = 4.0
EMU_MEDIAN = 2.0 ** -10
# Gradients a bf16 product makes (the median check's subjects).
PRODUCT_GRADS = ("dx", "dh0", "dw_ih", "dw_hh")


# ---------------------------------------------------------------- the model


def bf16(a):
    """Round to the nearest bfloat16 (8 significant bits), ties to even;
    float64 in and out. (Subnormals and overflow do not occur in the tests.)"""
    m, e = np.frexp(np.asarray(a, dtype=np.float64))
    return np.ldexp(np.round(m * 256.0), e - 8)


def identity(a):
    return np.asarray(a, dtype=np.float64)


def _zeros_or(a, shape):
    return np.zeros(shape) if a is None else np.array(a, dtype=np.float64)


def emulate(cell, case, reverse, sizes, rnd, forced_y=None, rnd_bwd=None):
    """Forward (training) and backward of one layer on padded time-major
    arrays (case: x (T, B, I), dy (T, B, H) or None, weights, states, as
    helpers.make_case). cell: lstm, gru, gru_no_lbr.
    -> (outputs {y, h_n[, c_n]}, grads {dx, dh0[, dc0], dw_ih, dw_hh, db_ih, db_hh}, mags)."""
    lstm, lbr = cell == "lstm", cell != "gru_no_lbr"
    x = np.asarray(case["x"], dtype=np.float64)
    T, B, I = x.shape
    w_ih, w_hh = (np.asarray(case[k], dtype=np.float64) for k in ("weight_ih", "weight_hh"))
    GH, H = w_hh.shape
    b_ih, b_hh = _zeros_or(case["bias_ih"], GH), _zeros_or(case["bias_hh"], GH)
    W_ih, W_hh = rnd(w_ih), rnd(w_hh)
    h = _zeros_or(case["h0"], (B, H))
    c = _zeros_or(case.get("c0"), (B, H)) if lstm else None
    y = np.zeros((T, B, H))
    steps = []
    order = range(T - 1, -1, -1) if reverse else range(T)

    # ---- forward, keeping what backward needs (the workspace)
    for t in order:
        n = sizes[t]
        xt, hp = x[t, :n], h[:n].copy()
        gx = rnd(xt) @ W_ih.T + b_ih
        if lstm:
            cp = c[:n].copy()
            a = gx + rnd(hp) @ W_hh.T + b_hh
            a_i, a_f, a_g, a_o = np.split(a, 4, axis=1)
            i, f, g, o = reference.sigmoid(a_i), reference.sigmoid(a_f), np.tanh(a_g), reference.sigmoid(a_o)
            c1 = f * cp + i * g
            tc = np.tanh(c1)
            h1 = o * tc
            c[:n] = c1
            steps.append(dict(t=t, n=n, x=xt, h=hp, c=cp, i=i, f=f, g=g, o=o, tc=tc))
        else:
            gx_r, gx_z, gx_n = np.split(gx, 3, axis=1)
            gh_r, gh_z = np.split(rnd(hp) @ W_hh[:2 * H].T + b_hh[:2 * H], 2, axis=1)
            r, z = reference.sigmoid(gx_r + gh_r), reference.sigmoid(gx_z + gh_z)
            if lbr:
                gh_n = rnd(hp) @ W_hh[2 * H:].T + b_hh[2 * H:]
                nn = np.tanh(gx_n + r * gh_n)
                h_for_n = hp
            else:
                gh_n = None
                h_for_n = r * hp
                nn = np.tanh(gx_n + rnd(h_for_n) @ W_hh[2 * H:].T + b_hh[2 * H:])
            h1 = (1.0 - z) * nn + z * hp
            steps.append(dict(t=t, n=n, x=xt, h=hp, r=r, z=z, nn=nn, gh_n=gh_n, h_for_n=h_for_n))
        h[:n] = h1 if forced_y is None else forced_y[t, :n]
        y[t, :n] = h1
    outputs = dict(y=y, h_n=h.copy())
    if lstm:
        outputs["c_n"] = c.copy()

    # ---- backward, the steps last first
    if rnd_bwd is not None:
        rnd = rnd_bwd
        W_ih, W_hh = rnd(w_ih), rnd(w_hh)
    dy = _zeros_or(case["dy"], (T, B, H))
    dh = _zeros_or(case["dh_n"], (B, H))
    dc = _zeros_or(case.get("dc_n"), (B, H)) if lstm else None
    grads = dict(dx=np.zeros((T, B, I)), dw_ih=np.zeros((GH, I)), dw_hh=np.zeros((GH, H)),
                 db_ih=np.zeros(GH), db_hh=np.zeros(GH))
    mags = {k: np.zeros_like(v) for k, v in grads.items()}
    mags["dh0"] = np.zeros((B, H))
    if lstm:
        mags["dc0"] = np.zeros((B, H))
    A_ih, A_hh = np.abs(W_ih), np.abs(W_hh)
    for s in reversed(steps):
        t, n = s["t"], s["n"]
        dh1 = dh[:n] + dy[t, :n]
        if lstm:
            i, f, g, o, tc = s["i"], s["f"], s["g"], s["o"], s["tc"]
            dc1 = dc[:n] + dh1 * o * (1.0 - tc ** 2)
            dgx = np.concatenate([dc1 * g * i * (1.0 - i), dc1 * s["c"] * f * (1.0 - f),
                                  dc1 * i * (1.0 - g ** 2), dh1 * tc * o * (1.0 - o)], axis=1)
            dgh = dgx
            dh_prev = rnd(dgh) @ W_hh
            mags["dh0"][:n] = np.abs(rnd(dgh)) @ A_hh
            dc[:n] = dc1 * f
            mags["dc0"][:n] = np.abs(dc1 * f)
        else:
            r, z, nn, hp = s["r"], s["z"], s["nn"], s["h"]
            da_n = dh1 * (1.0 - z) * (1.0 - nn ** 2)
            dz = dh1 * (hp - nn)
            dh_prev = dh1 * z
            direct = np.abs(dh_prev)
            if lbr:
                dr = da_n * s["gh_n"]
                dgh_n = da_n * r
            else:
                d_rh = rnd(da_n) @ W_hh[2 * H:]
                dr = d_rh * hp
                dh_prev = dh_prev + d_rh * r
                direct = direct + (np.abs(rnd(da_n)) @ A_hh[2 * H:]) * r
                dgh_n = da_n
            da_r, da_z = dr * r * (1.0 - r), dz * z * (1.0 - z)
            dgx = np.concatenate([da_r, da_z, da_n], axis=1)
            dgh = np.concatenate([da_r, da_z, dgh_n], axis=1)
            rows = GH if lbr else 2 * H
            dh_prev = dh_prev + rnd(dgh[:, :rows]) @ W_hh[:rows]
            mags["dh0"][:n] = direct + np.abs(rnd(dgh[:, :rows])) @ A_hh[:rows]
        dh[:n] = dh_prev
        grads["dx"][t, :n] = rnd(dgx) @ W_ih
        mags["dx"][t, :n] = np.abs(rnd(dgx)) @ A_ih
        grads["dw_ih"] += rnd(dgx).T @ rnd(s["x"])
        mags["dw_ih"] += np.abs(rnd(dgx)).T @ np.abs(rnd(s["x"]))
        if lstm or lbr:
            grads["dw_hh"] += rnd(dgh).T @ rnd(s["h"])
            mags["dw_hh"] += np.abs(rnd(dgh)).T @ np.abs(rnd(s["h"]))
        else:
            for lo, hi, operand in ((0, 2 * H, s["h"]), (2 * H, GH, s["h_for_n"])):
                grads["dw_hh"][lo:hi] += rnd(dgh[:, lo:hi]).T @ rnd(operand)
                mags["dw_hh"][lo:hi] += np.abs(rnd(dgh[:, lo:hi])).T @ np.abs(rnd(operand))
        grads["db_ih"] += dgx.sum(axis=0)
        grads["db_hh"] += dgh.sum(axis=0)
        mags["db_ih"] += np.abs(dgx).sum(axis=0)
        mags["db_hh"] += np.abs(dgh).sum(axis=0)
    grads["dh0"] = dh
    if lstm:
        grads["dc0"] = dc
    return outputs, grads, mags


# ------------------------------------------------------------------ running


def batch_sizes_of(lengths):
    """PackedSequence batch_sizes of lengths sorted longest first."""
    return np.array([sum(n > t for n in lengths) for t in range(lengths[0])], dtype=np.int64)


def pack_steps(a, sizes):
    return np.ascontiguousarray(np.concatenate([a[t, :n] for t, n in enumerate(sizes)]))


def unpack_steps(a, sizes, B):
    out = np.zeros((len(sizes), B) + a.shape[1:], dtype=a.dtype)
    r = 0
    for t, n in enumerate(sizes):
        out[t, :n] = a[r:r + n]
        r += n
    return out


def pack_bf16(cell, case):
    w = (case["weight_ih"], case["weight_hh"], case["bias_ih"], case["bias_hh"])
    name = "lstm" if cell == "lstm" else "gru"
    return rnnkit._core.pack(name, *w, linear_before_reset(cell), precision="bfloat16")


def run_rnnkit(cell, case, reverse, sizes=None, w=None):
    """bf16 training forward + backward on padded arrays (packed through
    batch_sizes when sizes is given) -> (y padded, grads dict)."""
    w = pack_bf16(cell, case) if w is None else w
    T, B = case["x"].shape[:2]
    x, dy = case["x"], case["dy"]
    kw = dict(reverse=reverse, training=True)
    if sizes is not None:
        kw["batch_sizes"] = np.asarray(sizes, dtype=np.int64)
        x, dy = pack_steps(x, sizes), pack_steps(dy, sizes)
    if cell == "lstm":
        y, _, _, ctx = rnnkit.lstm_forward(x, w, case["h0"], case["c0"], **kw)
        g = rnnkit.lstm_backward(ctx, dy, case["dh_n"], case["dc_n"])
    else:
        y, _, ctx = rnnkit.gru_forward(x, w, case["h0"], **kw)
        g = rnnkit.gru_backward(ctx, dy, case["dh_n"])
    grads = g._asdict()
    if sizes is not None:
        y, grads["dx"] = unpack_steps(y, sizes, B), unpack_steps(grads["dx"], sizes, B)
    return y, grads


def ratio(actual, expected, mag):
    """|actual - expected| / (u (M + mean(M))), element-wise (NaN -> inf)."""
    err = np.abs(np.asarray(actual, dtype=np.float64) - expected)
    r = err / (U * (mag + mag.mean()))
    return np.where(np.isnan(r), np.inf, r)


def check_against_reference_and_model(cell, case, reverse, sizes, y, grads):
    ref_out, ref, mags = emulate(cell, case, reverse, sizes, identity)
    _, model, _ = emulate(cell, case, reverse, sizes, bf16, forced_y=y)
    assert set(grads) == set(ref)
    for name, g in grads.items():
        assert g.dtype == np.float32 and g.shape == ref[name].shape, name
        r = ratio(g, ref[name], mags[name])
        worst = np.unravel_index(int(np.argmax(r)), r.shape)
        assert r.max() <= C_REF, (
            f"{name}: vs float64 reference, {np.count_nonzero(r > C_REF)} of {r.size} elements above "
            f"{C_REF} u (M + mean M); worst {r[worst]:.3g} at {tuple(int(i) for i in worst)}: "
            f"{float(g[worst])!r} vs {float(ref[name][worst])!r}")
        if name in PRODUCT_GRADS:
            m = float(np.median(ratio(g, model[name], mags[name])))
            assert m <= EMU_MEDIAN, (f"{name}: median |g - bf16 model| = {m:.3g} u (M + mean M), "
                                     f"above {EMU_MEDIAN:.3g}")
    return ref_out


# -------------------------------------------------------------------- cases

# (T, B, I, H): awkward H around the panel and unit-block widths (1, 7, 31,
# 33, 37), I != H, T = 1, B = 1.
FULL = [(5, 3, 7, 37), (1, 1, 1, 1), (4, 2, 33, 7), (3, 1, 5, 31), (6, 4, 13, 33), (8, 2, 3, 1), (1, 3, 9, 33)]
# (lengths, I, H): ties, a length-1 sequence, one sequence.
PACKED = [((7, 5, 5, 2, 1), 7, 31), ((4, 1), 3, 33), ((6, 6, 3), 17, 7), ((1,), 1, 1)]


def shape_id(v):
    return "-".join(map(str, v)) if isinstance(v, tuple) else str(v)


@pytest.mark.parametrize("shape", FULL, ids=shape_id)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell", CELL_FORMS)
def test_gradients_full_sequences(cell, reverse, shape, isa):
    T, B, I, H = shape
    case = make_case(cell, T, B, I, H, np.float32, seed=11)
    y, grads = run_rnnkit(cell, case, reverse)
    check_against_reference_and_model(cell, case, reverse, [B] * T, y, grads)


@pytest.mark.parametrize("lengths,I,H", PACKED, ids=shape_id)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell", CELL_FORMS)
def test_gradients_with_lengths(cell, reverse, lengths, I, H, isa):
    sizes = list(batch_sizes_of(lengths))
    case = make_case(cell, len(sizes), int(sizes[0]), I, H, np.float32, seed=12)
    y, grads = run_rnnkit(cell, case, reverse, sizes)
    check_against_reference_and_model(cell, case, reverse, sizes, y, grads)


@pytest.mark.parametrize("cell", CELL_FORMS)
@pytest.mark.parametrize("B,I,H", [(1, 1, 1), (3, 7, 33), (2, 31, 37)], ids=shape_id)
def test_single_step_cells(cell, B, I, H, isa):
    case = make_case(cell, 1, B, I, H, np.float32, seed=13)
    w = pack_bf16(cell, case)
    x = case["x"][0]
    if cell == "lstm":
        h1, _, ctx = rnnkit.lstm_cell(x, w, case["h0"], case["c0"], training=True)
        g = rnnkit.lstm_cell_backward(ctx, case["dh_n"] + case["dy"][0], case["dc_n"])._asdict()
        g["dh0"], g["dc0"] = g.pop("dh"), g.pop("dc")
    else:
        h1, ctx = rnnkit.gru_cell(x, w, case["h0"], training=True)
        g = rnnkit.gru_cell_backward(ctx, case["dh_n"] + case["dy"][0])._asdict()
        g["dh0"] = g.pop("dh")
    g["dx"] = g["dx"][None]
    check_against_reference_and_model(cell, case, False, [B], h1[None], g)


@pytest.mark.parametrize("cell", CELL_FORMS)
def test_model_is_the_reference_without_rounding(cell):
    # The bf16 model is only as good as its arithmetic: with the identity
    # for bf16() it must be rnnkit.reference itself.
    for T, B, I, H in FULL[:3]:
        for reverse in (False, True):
            case = make_case(cell, T, B, I, H, np.float64, seed=14)
            out, grads, _ = emulate(cell, case, reverse, [B] * T, identity)
            ref_out, ref = reference_forward_backward(cell, case, reverse)
            for name in ref:
                np.testing.assert_allclose(grads[name], ref[name], rtol=1e-12, atol=1e-12, err_msg=name)
            np.testing.assert_allclose(out["y"], ref_out["y"], rtol=1e-12, atol=1e-12)


def test_bf16_rounding_of_the_model():
    # Ties to even at 8 significant bits, and the same values as the
    # kernels' rounding of float32 weights (a bf16 pack unpacked).
    v = np.array([1.0, 1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8, 1.0 + 2.0 ** -9, -3.0 - 2.0 ** -7, 0.0])
    np.testing.assert_array_equal(bf16(v), [1.0, 1.0, 1.0 + 2.0 ** -6, 1.0, -3.0, 0.0])
    rng = np.random.default_rng(3)
    w_ih = rng.standard_normal((3 * 5, 4)).astype(np.float32)
    w_hh = rng.standard_normal((3 * 5, 5)).astype(np.float32)
    packed = rnnkit._core.pack("gru", w_ih, w_hh, None, None, True, precision="bfloat16")
    np.testing.assert_array_equal(packed.unpack()[0], bf16(w_ih))
    np.testing.assert_array_equal(packed.unpack()[1], bf16(w_hh))


@pytest.mark.parametrize("cell", CELL_FORMS)
def test_backward_follows_an_update(cell, isa):
    # The backward's W_hh panels are made on first use; update() must
    # retire them: a pack trained, updated and trained again gives the
    # gradients of a fresh pack of the new weights, bit for bit.
    old, new = (make_case(cell, 4, 3, 7, 33, np.float32, seed=s) for s in (16, 17))
    w = pack_bf16(cell, old)
    run_rnnkit(cell, old, False, w=w)
    w.update(new["weight_ih"], new["weight_hh"], new["bias_ih"], new["bias_hh"])
    y, grads = run_rnnkit(cell, new, False, w=w)
    y_fresh, fresh = run_rnnkit(cell, new, False)
    assert np.array_equal(y, y_fresh)
    for name in fresh:
        assert np.array_equal(grads[name], fresh[name]), name


# H = 96 (three unit blocks) and 8 rows a step make a recurrent step of
# 2 * 8 * G * 96^2 >= 4.4e5 flops: the time loop, dx and the weight
# gradients run on 2 threads when 2 are allowed. 30 rows a step and H = 40
# (2 * 30 * G * 40^2 >= 2.8e5) likewise, and give the weight gradients a
# depth of 1036 packed rows: more than one k block (1024).
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell", CELL_FORMS)
@pytest.mark.parametrize("T,B,H,lengths", [(6, 8, 96, None), (40, 30, 40, (40,) * 20 + (36,) * 6 + (5,) * 4)],
                         ids=["steps", "k-blocks"])
def test_results_do_not_depend_on_thread_count(cell, reverse, T, B, H, lengths, isa):
    sizes = None if lengths is None else list(batch_sizes_of(lengths))
    case = make_case(cell, T, B, 24, H, np.float32, seed=15)
    saved = rnnkit.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            rnnkit.set_num_threads(n)
            results.append(run_rnnkit(cell, case, reverse, sizes))
    finally:
        rnnkit.set_num_threads(saved)
    (y1, g1), (y2, g2) = results
    assert np.array_equal(y1, y2), "y: 1 vs 2 threads differ"
    for name in g1:
        assert np.array_equal(g1[name], g2[name]), f"{name}: 1 vs 2 threads differ"
    check_against_reference_and_model(cell, case, reverse, [B] * T if sizes is None else sizes, y2, g2)


@pytest.mark.parametrize("cell", CELL_FORMS)
def test_int8_packs_do_not_train(cell):
    case = make_case(cell, 2, 2, 3, 4, np.float32)
    name = "lstm" if cell == "lstm" else "gru"
    w = rnnkit._core.pack(name, case["weight_ih"], case["weight_hh"], case["bias_ih"], case["bias_hh"],
                          linear_before_reset(cell), precision="int8")
    with pytest.raises(ValueError, match=r"training.*int8|int8.*training"):
        if cell == "lstm":
            rnnkit.lstm_forward(case["x"], w, training=True)
        else:
            rnnkit.gru_forward(case["x"], w, training=True)
    with pytest.raises(ValueError, match=r"training.*int8|int8.*training"):
        if cell == "lstm":
            rnnkit.lstm_cell(case["x"][0], w, training=True)
        else:
            rnnkit.gru_cell(case["x"][0], w, training=True)
    # Inference with the same pack still runs.
    out = rnnkit.lstm_forward(case["x"], w) if cell == "lstm" else rnnkit.gru_forward(case["x"], w)
    assert np.all(np.isfinite(out[0]))
