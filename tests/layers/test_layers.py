"""Stacked, bidirectional, variable-length layers (rnnkit.layers and the NumPy
rnnkit.LSTM / rnnkit.GRU modules) against the float64 reference's
rnn_forward / rnn_backward, which runs every sequence on its own."""

import math

import numpy as np
import pytest

import rnnkit
from helpers import GATES, assert_close
from rnnkit import reference

T, B, I, H = 6, 4, 7, 5
# Unsorted, with ties, a full-length and a length-1 sequence.
LENGTHS = np.array([3, 6, 1, 3])


def make_module(mode, dtype, num_layers, bidirectional, seed=0, **kw):
    cls = rnnkit.LSTM if mode == "LSTM" else rnnkit.GRU
    return cls(I, H, num_layers, bidirectional=bidirectional, dtype=dtype, seed=seed, **kw)


def random_inputs(mode, dtype, num_layers, dirs, seed=1):
    rng = np.random.default_rng(seed)
    states = (num_layers * dirs, B, H)
    data = dict(x=0.5 * rng.standard_normal((T, B, I)), h0=0.5 * rng.standard_normal(states),
                c0=rng.standard_normal(states), dy=rng.standard_normal((T, B, dirs * H)),
                dh_n=rng.standard_normal(states), dc_n=rng.standard_normal(states))
    if mode == "GRU":
        del data["c0"], data["dc_n"]
    return {k: v.astype(dtype) for k, v in data.items()}


def run_module(m, d, lengths=None):
    """Forward in training mode and backward; everything in one dict."""
    lstm = m.mode == "LSTM"
    hx = (d["h0"], d["c0"]) if lstm else d["h0"]
    y, state = m(d["x"], hx, lengths=lengths)
    dhx_n = (d["dh_n"], d["dc_n"]) if lstm else d["dh_n"]
    dx, dhx = m.backward(d["dy"], dhx_n)
    out = dict(y=y, dx=dx)
    out.update(dict(h_n=state[0], c_n=state[1], dh0=dhx[0], dc0=dhx[1]) if lstm else dict(h_n=state, dh0=dhx))
    out.update({"d" + k: v for k, v in m.grads.items()})
    return out


def run_reference(m, d, lengths=None, masks=None):
    lstm = m.mode == "LSTM"
    y, h_n, c_n, cache = reference.rnn_forward(
        m.mode, d["x"], m.parameters(), m.num_layers, m.bidirectional, d["h0"], d.get("c0"), lengths, masks,
        linear_before_reset=m.linear_before_reset)
    dx, dh0, dc0, grads = reference.rnn_backward(d["dy"], d["dh_n"], d.get("dc_n"), cache)
    out = dict(y=y, dx=dx, h_n=h_n, dh0=dh0)
    if lstm:
        out.update(c_n=c_n, dc0=dc0)
    out.update({"d" + k: v for k, v in grads.items()})
    return out


def assert_matches(actual, ref, mode, dtype, num_layers, dirs):
    assert set(actual) == set(ref)
    for name, value in ref.items():
        # Errors compound through the layers: count each as more steps.
        steps = T * num_layers
        if name.startswith("dweight") or name.startswith("dbias"):
            acc = T * B
        elif name in ("dx", "dh0", "dc0"):
            acc = GATES[mode.lower()] * H * dirs
        else:
            acc = max(I, dirs * H) + H
        assert_close(actual[name], value, dtype, acc, steps, name=name)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_stack_matches_reference(isa, dtype, mode, num_layers, bidirectional, with_lengths):
    m = make_module(mode, dtype, num_layers, bidirectional)
    d = random_inputs(mode, dtype, num_layers, 2 if bidirectional else 1)
    lengths = LENGTHS if with_lengths else None
    actual = run_module(m, d, lengths)
    ref = run_reference(m, d, lengths)
    assert_matches(actual, ref, mode, dtype, num_layers, 2 if bidirectional else 1)
    if with_lengths:
        # Outputs past each sequence's end are exactly zero.
        for b, n in enumerate(LENGTHS):
            assert not actual["y"][n:, b].any() and not actual["dx"][n:, b].any()


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_dropout_matches_reference_with_the_same_masks(mode, with_lengths):
    dtype = np.float64
    m = make_module(mode, dtype, 3, True)
    m.dropout = 0.4
    d = random_inputs(mode, dtype, 3, 2)
    lengths = LENGTHS if with_lengths else None
    actual = run_module(m, d, lengths)

    # The same masks, drawn again from an identically seeded module, put in
    # the padded (T, B, 2H) layout the reference takes.
    again = make_module(mode, dtype, 3, True)
    drawn = []
    hx = (d["h0"], d["c0"]) if mode == "LSTM" else d["h0"]
    layers_mask = again._mask
    again._mask = lambda shape, dt: drawn.append(layers_mask(shape, dt)) or drawn[-1]
    again.dropout = 0.4
    again(d["x"], hx, lengths=lengths)
    assert len(drawn) == 2
    masks = [padded_mask(mk, lengths) for mk in drawn]
    ref = run_reference(m, d, lengths, masks)
    assert_matches(actual, ref, mode, dtype, 3, 2)
    # Dropout really dropped: about 40% of the first layer's outputs.
    kept = np.mean(masks[0][:, :, :] != 0) if lengths is None else None
    if kept is not None:
        assert 0.45 < kept < 0.75


def padded_mask(mask, lengths):
    """A mask over the kernels' rows as a (T, B, C) array."""
    if lengths is None:
        return mask
    order = np.argsort(-lengths, kind="stable")
    out = np.zeros((T, B, mask.shape[-1]))
    row = 0
    for t in range(T):
        for b in order[: int((lengths > t).sum())]:
            out[t, b] = mask[row]
            row += 1
    assert row == mask.shape[0]
    return out


def test_dropout_is_seeded_and_only_in_training():
    d = random_inputs("LSTM", np.float32, 2, 1)
    runs = []
    for seed in (5, 5, 6):
        m = rnnkit.LSTM(I, H, 2, dropout=0.5, seed=0)
        m._rng = np.random.default_rng(seed)
        runs.append(m(d["x"])[0])
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])
    m = rnnkit.LSTM(I, H, 2, dropout=0.5, seed=0).eval()
    assert np.array_equal(m(d["x"])[0], m(d["x"])[0])


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_batch_first_and_unbatched_are_the_same_computation(mode):
    m = make_module(mode, np.float64, 2, True)
    d = random_inputs(mode, np.float64, 2, 2)
    hx = (d["h0"], d["c0"]) if mode == "LSTM" else d["h0"]
    y, state = m(d["x"], hx)
    m.batch_first = True
    y_bf, state_bf = m(d["x"].transpose(1, 0, 2), hx)
    assert np.array_equal(y_bf, y.transpose(1, 0, 2))
    dx_bf, _ = m.backward(d["dy"].transpose(1, 0, 2))
    m.batch_first = False
    m(d["x"], hx)
    dx, _ = m.backward(d["dy"])
    assert np.array_equal(dx_bf, dx.transpose(1, 0, 2))
    # Unbatched: (T, I) in, batch element 0 of the batched result out.
    hx0 = tuple(s[:, 0] for s in hx) if mode == "LSTM" else hx[:, 0]
    y0, state0 = m(d["x"][:, 0], hx0)
    assert y0.shape == (T, 2 * H)
    np.testing.assert_allclose(y0, y[:, 0], rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_threads_give_bitwise_identical_results(mode):
    m = rnnkit.LSTM(64, 96, 2, bidirectional=True, seed=3) if mode == "LSTM" else \
        rnnkit.GRU(64, 96, 2, bidirectional=True, seed=3)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((9, 40, 64)).astype(np.float32)
    lengths = rng.integers(1, 10, 40)
    results = []
    previous = rnnkit.get_num_threads()
    try:
        for n in (1, 2):
            rnnkit.set_num_threads(n)
            y, _ = m(x, lengths=lengths)
            dx, _ = m.backward(np.ones_like(y))
            results.append((y, dx, dict(m.grads)))
    finally:
        rnnkit.set_num_threads(previous)
    (y1, dx1, g1), (y2, dx2, g2) = results
    assert np.array_equal(y1, y2) and np.array_equal(dx1, dx2)
    assert all(np.array_equal(g1[k], g2[k]) for k in g1)


def test_module_parameters_follow_torch_names_shapes_and_init():
    m = rnnkit.GRU(10, 20, num_layers=2, bidirectional=True, seed=0)
    names = list(m.parameters())
    assert names[:8] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_ih_l0_reverse",
                         "weight_hh_l0_reverse", "bias_ih_l0_reverse", "bias_hh_l0_reverse"]
    assert m.weight_ih_l1.shape == (60, 40) and m.weight_hh_l1_reverse.shape == (60, 20)
    bound = 1 / math.sqrt(20)
    assert all(np.abs(p).max() <= bound and p.dtype == np.float32 for p in m.parameters().values())
    no_bias = rnnkit.LSTM(3, 4, bias=False)
    assert list(no_bias.parameters()) == ["weight_ih_l0", "weight_hh_l0"]
    d = rnnkit.LSTM(3, 4, seed=1).state_dict()
    e = rnnkit.LSTM(3, 4, seed=1).state_dict()
    assert all(np.array_equal(d[k], e[k]) for k in d)


def test_no_bias_matches_reference_with_zero_biases():
    m = rnnkit.LSTM(I, H, 2, bias=False, dtype=np.float64, seed=0)
    d = random_inputs("LSTM", np.float64, 2, 1)
    actual = run_module(m, d)
    ref = run_reference(m, d)
    for name in ("dbias_ih_l0", "dbias_hh_l0", "dbias_ih_l1", "dbias_hh_l1"):
        del ref[name]
    assert_matches(actual, ref, "LSTM", np.float64, 2, 1)


def test_eval_mode_reuses_packed_weights_and_refuses_in_place_updates():
    m = rnnkit.GRU(I, H, seed=0).eval()
    x = np.ones((T, B, I), np.float32)
    y1, _ = m(x)
    with pytest.raises(ValueError, match="read-only"):
        m.weight_hh_l0 *= 2
    # Replacing a parameter, or train(), drops the packed copy.
    m.weight_hh_l0 = m.weight_hh_l0 * 2
    y2, _ = m(x)
    assert not np.array_equal(y1, y2)
    m.train()
    m.weight_ih_l0 *= 0.5
    assert m.weight_ih_l0.flags.writeable


def test_load_state_dict_checks_keys_and_shapes():
    m = rnnkit.LSTM(3, 4)
    sd = m.state_dict()
    with pytest.raises(KeyError, match="weight_hh_l0"):
        m.load_state_dict({k: v for k, v in sd.items() if k != "weight_hh_l0"})
    sd["bias_ih_l0"] = np.zeros(15)
    with pytest.raises(ValueError, match=r"bias_ih_l0.*\(16,\)"):
        m.load_state_dict(sd)


@pytest.mark.parametrize("call, match", [
    (lambda: rnnkit.LSTM(0, 4), "input_size"),
    (lambda: rnnkit.GRU(3, 4.5), "hidden_size"),
    (lambda: rnnkit.GRU(3, 4, num_layers=0), "num_layers"),
    (lambda: rnnkit.LSTM(3, 4, dropout=1.5), "dropout"),
    (lambda: rnnkit.LSTM(3, 4, dtype=np.int32), "dtype"),
    (lambda: rnnkit.LSTM(3, 4)(np.zeros((2, 2, 5), np.float32)), "x"),
    (lambda: rnnkit.LSTM(3, 4)(np.zeros((2, 2, 3), np.float64)), "x: expected dtype float32"),
    (lambda: rnnkit.LSTM(3, 4)(np.zeros((2, 2, 3), np.float32), np.zeros((1, 2, 4), np.float32)), "hx"),
    (lambda: rnnkit.GRU(3, 4)(np.zeros((2, 2, 3), np.float32), np.zeros((2, 2, 4), np.float32)), "hx"),
    (lambda: rnnkit.GRU(3, 4)(np.zeros((2, 2, 3), np.float32), lengths=[1, 3]), "lengths"),
    (lambda: rnnkit.GRU(3, 4)(np.zeros((2, 2, 3), np.float32), lengths=[0, 2]), "lengths"),
    (lambda: rnnkit.GRU(3, 4)(np.zeros((2, 2, 3), np.float32), lengths=[1]), "lengths"),
    (lambda: rnnkit.GRU(3, 4).eval().backward(np.zeros((2, 2, 4), np.float32)), "backward"),
])
def test_bad_arguments_name_what_is_wrong(call, match):
    with pytest.raises((ValueError, TypeError, RuntimeError), match=match):
        call()


def test_functional_core_takes_packed_rows_like_torch_packed_sequences():
    # Packed rows + batch_sizes give the padded + lengths result, rows for rows.
    m = rnnkit.LSTM(I, H, 2, bidirectional=True, dtype=np.float64, seed=0).eval()
    d = random_inputs("LSTM", np.float64, 2, 2)
    y, (h_n, c_n) = m(d["x"], lengths=LENGTHS)
    order = np.argsort(-LENGTHS, kind="stable")
    batch_sizes = np.array([(LENGTHS > t).sum() for t in range(LENGTHS.max())])
    rows = np.concatenate([d["x"][t, order[:n]] for t, n in enumerate(batch_sizes)])
    yp, hp, cp, _ = rnnkit.layers.rnn_forward("LSTM", rows, m._packed_weights(), num_layers=2,
                                              bidirectional=True, batch_sizes=batch_sizes)
    expect = np.concatenate([y[t, order[:n]] for t, n in enumerate(batch_sizes)])
    assert np.array_equal(yp, expect)
    assert np.array_equal(hp, h_n[:, order]) and np.array_equal(cp, c_n[:, order])



@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_pack_layer_weights_into_earlier_packs(mode):
    """into=: new weights of the same layers go into the earlier packs (the
    same list comes back) and run exactly like a fresh packing; packs that
    no longer match the layers are replaced by fresh ones."""
    from rnnkit import layers
    kw = dict(num_layers=2, bidirectional=True)
    old = make_module(mode, np.float32, 2, True, seed=3).parameters()
    new = make_module(mode, np.float32, 2, True, seed=4).parameters()
    packs = layers.pack_layer_weights(mode, old, **kw)
    assert layers.pack_layer_weights(mode, new, **kw, into=packs) is packs
    fresh = layers.pack_layer_weights(mode, new, **kw)
    x = random_inputs(mode, np.float32, 2, 2)["x"]
    np.testing.assert_array_equal(layers.rnn_forward(mode, x, packs, **kw)[0],
                                  layers.rnn_forward(mode, x, fresh, **kw)[0])
    # One layer fewer, or float64 weights: not the same layers any more.
    one = layers.pack_layer_weights(mode, new, num_layers=1, bidirectional=True, into=packs)
    assert one is not packs and len(one) == 2
    wide = {k: v.astype(np.float64) for k, v in new.items()}
    assert layers.pack_layer_weights(mode, wide, **kw, into=packs)[0].dtype == np.float64
