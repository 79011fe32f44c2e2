"""copy.copy, copy.deepcopy and pickle (every protocol) of PackedWeights,
TrainingContext and the NumPy modules (issue 16, item 6).

Copies are independent of their originals; a pickle holds weights in
PyTorch layout, not the panels of one ISA, so it loads under any ISA.
"""

import copy
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import rnnkit
from rnnkit import _core
from helpers import (CELL_FORMS, accumulation_length, assert_close, make_case, pack,
                      reference_forward_backward)

T, B, I, H = 5, 3, 7, 6
PROTOCOLS = list(range(pickle.HIGHEST_PROTOCOL + 1))
COPIES = {"copy": copy.copy, "deepcopy": copy.deepcopy,
          **{f"pickle{p}": (lambda o, p=p: pickle.loads(pickle.dumps(o, protocol=p))) for p in PROTOCOLS}}


def base_cell(cell):
    return "gru" if cell == "gru_no_lbr" else cell


def forward(cell, case, w, **kw):
    if base_cell(cell) == "lstm":
        return rnnkit.lstm_forward(case["x"], w, case["h0"], case["c0"], **kw)
    return rnnkit.gru_forward(case["x"], w, case["h0"], **kw)


def backward(cell, case, ctx):
    if base_cell(cell) == "lstm":
        return rnnkit.lstm_backward(ctx, case["dy"], case["dh_n"], case["dc_n"])
    return rnnkit.gru_backward(ctx, case["dy"], case["dh_n"])


def assert_same(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        assert u.dtype == v.dtype and u.shape == v.shape
        np.testing.assert_array_equal(u, v)


@pytest.fixture(params=CELL_FORMS)
def cell(request):
    return request.param


# ---- PackedWeights ---------------------------------------------------------------------

@pytest.mark.parametrize("how", sorted(COPIES))
def test_packed_weights_copy_runs_identically(cell, isa, dtype, how):
    case = make_case(base_cell(cell), T, B, I, H, dtype, seed=1)
    w = pack(cell, case)
    w2 = COPIES[how](w)
    assert type(w2) is rnnkit.PackedWeights and w2 is not w
    for attr in ("cell", "dtype", "input_size", "hidden_size", "isa", "linear_before_reset"):
        assert getattr(w2, attr) == getattr(w, attr), attr
    assert_same(forward(cell, case, w), forward(cell, case, w2))


@pytest.mark.parametrize("how", ["copy", "deepcopy", "pickle4"])
def test_packed_weights_copies_are_independent(cell, isa, how):
    case = make_case(base_cell(cell), T, B, I, H, np.float64, seed=2)
    w = pack(cell, case)
    before = forward(cell, case, w)
    w2 = COPIES[how](w)
    # An optimizer step on the copy leaves the original alone, and the other way round.
    w2.update(case["weight_ih"] * 2, case["weight_hh"], case["bias_ih"], case["bias_hh"])
    assert_same(forward(cell, case, w), before)
    assert not np.array_equal(forward(cell, case, w2)[0], before[0])
    w.update(case["weight_ih"] * 3, case["weight_hh"])
    w3 = COPIES[how](w)
    assert_same(forward(cell, case, w3), forward(cell, case, w))


def test_pickle_keeps_both_lstm_biases():
    # The panels keep only b_ih + b_hh; the pickle must keep what was given.
    case = make_case("lstm", T, B, I, H, np.float64, seed=3)
    w = pack("lstm", case)
    _, (state,) = w.__reduce__()
    w_ih, w_hh, b_ih, b_hh = state[3]
    for name, got in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), (w_ih, w_hh, b_ih, b_hh)):
        np.testing.assert_array_equal(got, case[name])
    # A copy of the caller's arrays: changing them later does not change the pickle.
    case["bias_ih"][:] = 0
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(w)).__reduce__()[1][0][3][2], b_ih)


@pytest.mark.parametrize("src", rnnkit.available_isas())
@pytest.mark.parametrize("dst", rnnkit.available_isas())
def test_packed_weights_pickle_loads_under_another_isa(cell, dtype, src, dst):
    case = make_case(base_cell(cell), T, B, I, H, dtype, seed=4)
    with rnnkit.use_isa(src):
        data = pickle.dumps(pack(cell, case))
    with rnnkit.use_isa(dst):
        w = pickle.loads(data)
        fresh = pack(cell, case)
    assert w.isa == dst
    assert_same(forward(cell, case, w), forward(cell, case, fresh))


def test_pickle_made_under_avx512_loads_under_scalar_in_another_process(tmp_path):
    best = rnnkit.available_isas()[-1]
    path = tmp_path / "w.pkl"
    code = ("import pickle, sys, numpy as np, rnnkit\n"
            "rng = np.random.default_rng(0)\n"
            "w = [rng.standard_normal(s).astype(np.float32) for s in [(4*6, 7), (4*6, 6), (4*6,), (4*6,)]]\n"
            "x = rng.standard_normal((5, 3, 7)).astype(np.float32)\n"
            "if sys.argv[1] == 'save':\n"
            "    pickle.dump(rnnkit.pack_lstm(*w), open(sys.argv[2], 'wb'))\n"
            "else:\n"
            "    p = pickle.load(open(sys.argv[2], 'rb'))\n"
            "    assert p.isa == 'scalar', p.isa\n"
            "    y = rnnkit.lstm_forward(x, p)[0]\n"
            "    assert np.array_equal(y, rnnkit.lstm_forward(x, rnnkit.pack_lstm(*w))[0])\n"
            "    print('ok')\n")
    env = dict(os.environ)
    for isa_name, step in ((best, "save"), ("scalar", "load")):
        env["RNNKIT_ISA"] = isa_name
        run = subprocess.run([sys.executable, "-c", code, step, str(path)], env=env, capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "ok"


# ---- TrainingContext ---------------------------------------------------------------------

@pytest.mark.parametrize("how", sorted(COPIES))
@pytest.mark.parametrize("reverse", [False, True])
def test_training_context_copy_gives_the_same_gradients(cell, isa, dtype, how, reverse):
    case = make_case(base_cell(cell), T, B, I, H, dtype, seed=5)
    w = pack(cell, case)
    ctx = forward(cell, case, w, reverse=reverse, training=True)[-1]
    ctx2 = COPIES[how](ctx)
    assert type(ctx2) is rnnkit.TrainingContext and ctx2.cell == ctx.cell
    assert_same(backward(cell, case, ctx2), backward(cell, case, ctx))


def test_training_context_of_a_packed_sequence_and_of_a_step(cell, isa):
    case = make_case(base_cell(cell), T, B, I, H, np.float64, seed=6)
    w = pack(cell, case)
    bs = np.array([3, 3, 2, 1, 1])
    x = case["x"].reshape(T * B, I)[:bs.sum()].copy()
    fwd = rnnkit.lstm_forward if base_cell(cell) == "lstm" else rnnkit.gru_forward
    bwd = rnnkit.lstm_backward if base_cell(cell) == "lstm" else rnnkit.gru_backward
    ctx = fwd(x, w, batch_sizes=bs, reverse=True, training=True)[-1]
    dy = np.ones((bs.sum(), H))
    assert_same(bwd(pickle.loads(pickle.dumps(ctx)), dy), bwd(ctx, dy))
    if base_cell(cell) == "lstm":
        step = rnnkit.lstm_cell(case["x"][0], w, case["h0"], case["c0"], training=True)[-1]
        grads = lambda c: rnnkit.lstm_cell_backward(c, case["dh_n"], case["dc_n"])  # noqa: E731
    else:
        step = rnnkit.gru_cell(case["x"][0], w, case["h0"], training=True)[-1]
        grads = lambda c: rnnkit.gru_cell_backward(c, case["dh_n"])  # noqa: E731
    assert copy.deepcopy(step).single_step
    assert_same(grads(copy.deepcopy(step)), grads(step))


def test_training_context_pickle_under_another_isa_matches_the_reference(cell, dtype):
    isas = rnnkit.available_isas()
    case = make_case(base_cell(cell), T, B, I, H, dtype, seed=7)
    with rnnkit.use_isa(isas[-1]):
        data = pickle.dumps(forward(cell, case, pack(cell, case), training=True)[-1])
    with rnnkit.use_isa(isas[0]):
        grads = backward(cell, case, pickle.loads(data))
    _, ref = reference_forward_backward(cell, case, False)
    for name, got in zip(grads._fields, grads):
        ref_name = {"dh": "dh0", "dc": "dc0"}.get(name, name)
        assert_close(got, ref[ref_name], dtype, accumulation_length(ref_name, base_cell(cell), T, B, I, H), T, name)


def test_copy_made_before_x_changed_keeps_its_own_x(cell):
    case = make_case(base_cell(cell), T, B, I, H, np.float64, seed=8)
    ctx = forward(cell, case, pack(cell, case), training=True)[-1]
    ctx2 = copy.deepcopy(ctx)
    expected = backward(cell, case, ctx)
    case["x"][0] += 1.0
    with pytest.raises(ValueError, match="x"):
        backward(cell, case, ctx)
    assert_same(backward(cell, case, ctx2), expected)


def test_context_keeps_the_weights_it_was_made_with(cell):
    case = make_case(base_cell(cell), T, B, I, H, np.float64, seed=9)
    w = pack(cell, case)
    ctx = forward(cell, case, w, training=True)[-1]
    expected = backward(cell, case, ctx)
    w.update(case["weight_ih"] + 1, case["weight_hh"] + 1)
    assert_same(backward(cell, case, pickle.loads(pickle.dumps(ctx))), expected)


@pytest.mark.parametrize("damage", ["truncate_gates", "wrong_version", "bad_sizes", "bad_x"])
def test_a_damaged_state_is_a_clean_error(damage):
    case = make_case("lstm", T, B, I, H, np.float32, seed=10)
    ctx = forward("lstm", case, pack("lstm", case), training=True)[-1]
    rebuild, (state,) = ctx.__reduce__()
    state = list(state)
    if damage == "truncate_gates":
        state[9] = state[9][:-4]
    elif damage == "wrong_version":
        state[0] = 99
    elif damage == "bad_sizes":
        state[7] = [B] * (T - 1) + [B + 1]
    else:
        state[8] = state[8][:, :, :-1]
    with pytest.raises((ValueError, TypeError)):
        rebuild(tuple(state))
    with pytest.raises((ValueError, TypeError)):
        _core._packed_weights_from_state((1, "lstm", True, (np.zeros((4, 3)), np.zeros((4, 2)), None, None)))


# ---- the NumPy modules ------------------------------------------------------------------------

def train(module, x, steps, lr=0.1):
    """A few SGD steps on sum(y); returns the last y."""
    for _ in range(steps):
        y, _ = module(x)
        module.backward(np.ones_like(y))
        for name, g in module.grads.items():
            setattr(module, name, getattr(module, name) - lr * g)
    return y


@pytest.mark.parametrize("cls", [rnnkit.LSTM, rnnkit.GRU])
@pytest.mark.parametrize("how", ["copy", "deepcopy", "pickle0", "pickle2", f"pickle{pickle.HIGHEST_PROTOCOL}"])
def test_module_copies_after_a_training_call(cls, how):
    m = cls(I, H, num_layers=2, bidirectional=True, dropout=0.25, seed=3, dtype=np.float64)
    x = np.random.default_rng(1).standard_normal((T, B, I))
    y, _ = m(x)
    m2 = COPIES[how](m)
    # The copy's backward is the original's (the context travels with it) ...
    dx2 = m2.backward(np.ones_like(y))[0]
    assert_same([dx2], [m.backward(np.ones_like(y))[0]])
    # ... it trains identically (same weights, same dropout masks) ...
    m3 = COPIES[how](m)
    assert_same([train(m3, x, 3)], [train(m, x, 3)])
    for name in m.parameters():
        np.testing.assert_array_equal(getattr(m3, name), getattr(m, name))
    # ... and independently: steps on one leave the other alone.
    before = {k: v.copy() for k, v in m.parameters().items()}
    train(m3, x, 2)
    for name, value in before.items():
        np.testing.assert_array_equal(getattr(m, name), value)
    m.weight_hh_l0 += 1.0
    assert not np.array_equal(m3.weight_hh_l0, m.weight_hh_l0)


@pytest.mark.parametrize("cls", [rnnkit.LSTM, rnnkit.GRU])
@pytest.mark.parametrize("how", ["copy", "deepcopy", "pickle4"])
def test_module_copies_in_eval_mode(cls, how):
    m = cls(I, H, seed=4).eval()
    x = np.random.default_rng(2).standard_normal((T, B, I)).astype(np.float32)
    y = m(x)[0]
    m2 = COPIES[how](m)
    assert_same([COPIES[how](m)(x)[0]], [y])
    # The copy's parameters are its own and writable (the original's are
    # read-only while it holds its packing); writing them in place changes
    # the copy's next result, not the original's.
    assert m2.weight_ih_l0.flags.writeable and not m.weight_ih_l0.flags.writeable
    m2.weight_ih_l0[...] = 0
    assert_same([m(x)[0]], [y])
    assert not np.array_equal(m2(x)[0], y)


def test_update_never_writes_into_weights_someone_else_holds():
    # update() refreshes the kept copies in place only while nothing else
    # refers to them: a pickle state taken before keeps the old values.
    case = make_case("lstm", T, B, I, H, np.float64, seed=11)
    w = pack("lstm", case)
    held = w.__reduce__()[1][0][3][0]
    w.update(case["weight_ih"] + 1, case["weight_hh"], case["bias_ih"], case["bias_hh"])
    np.testing.assert_array_equal(held, case["weight_ih"])
    w.update(case["weight_ih"] + 2, case["weight_hh"], case["bias_ih"], case["bias_hh"])
    w.update(case["weight_ih"] + 3, case["weight_hh"])
    state = w.__reduce__()[1][0][3]
    np.testing.assert_array_equal(state[0], case["weight_ih"] + 3)
    assert state[2] is None and state[3] is None
    np.testing.assert_array_equal(held, case["weight_ih"])
