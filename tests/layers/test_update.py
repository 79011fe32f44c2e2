"""PackedWeights.update: new weights into existing packed weights (an
optimizer step), in place when nothing else holds them."""

import gc

import numpy as np
import pytest

import rnnkit
from helpers import (CELL_FORMS, GATES, assert_all_close, assert_all_equal, linear_before_reset, make_case,
                      pack, reference_forward_backward, rnnkit_forward_backward)

WEIGHT_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def weights_of(case):
    return [case[n] for n in WEIGHT_NAMES]


def assert_same_step(a, b, what):
    """Bitwise equality of two (outputs, grads) results of a training step."""
    for part_a, part_b in zip(a, b):
        assert_all_equal(part_a, part_b, what)


# Shapes whose last unit block is partial (H = 37), with I != H, T = 1, and
# one big enough that the drivers split work over threads.
SHAPES = [(5, 3, 19, 37), (1, 1, 7, 33), (12, 16, 64, 96)]


@pytest.mark.parametrize("T,B,I,H", SHAPES)
@pytest.mark.parametrize("cell", CELL_FORMS)
def test_update_equals_a_fresh_pack(cell, T, B, I, H, isa, dtype):
    """A training step, update, another training step: the second gives
    exactly what freshly packed weights give, and matches the reference
    (the backward packs of the first step must not be reused stale)."""
    old = make_case(cell, T, B, I, H, dtype, seed=1)
    new = make_case(cell, T, B, I, H, dtype, seed=2)
    w = pack(cell, old)
    first = rnnkit_forward_backward(cell, old, reverse=False, w=w)
    del first
    gc.collect()
    w.update(*weights_of(new))
    assert w.isa == isa and w.dtype == dtype
    assert (w.input_size, w.hidden_size) == (I, H)
    assert w.linear_before_reset == linear_before_reset(cell)
    for reverse in (False, True):
        got = rnnkit_forward_backward(cell, new, reverse=reverse, w=w)
        want = rnnkit_forward_backward(cell, new, reverse=reverse)
        assert_same_step(got, want, "updated vs fresh pack: ")
        ref = reference_forward_backward(cell, new, reverse)
        for got_part, ref_part in zip(got, ref):
            assert_all_close(cell, got_part, ref_part, dtype, T, B, I, H, "updated: ")


@pytest.mark.parametrize("cell", CELL_FORMS)
def test_update_without_biases_zeroes_them(cell, isa, dtype):
    """Biases left out are zeros, as in pack_*: the old ones do not survive."""
    case = make_case(cell, 4, 2, 9, 40, dtype, seed=3)
    w = pack(cell, case)
    w.update(case["weight_ih"], case["weight_hh"])
    unbiased = dict(case, bias_ih=None, bias_hh=None)
    assert_same_step(rnnkit_forward_backward(cell, unbiased, reverse=False, w=w),
                     rnnkit_forward_backward(cell, unbiased, reverse=False), "no biases: ")


@pytest.mark.parametrize("cell", CELL_FORMS)
def test_contexts_keep_the_weights_they_were_made_with(cell, dtype):
    """An update while a training context lives leaves the context's
    weights alone (copy on write): its backward still gives the gradients
    of the weights that ran forward."""
    T, B, I, H = 6, 4, 24, 70
    old = make_case(cell, T, B, I, H, dtype, seed=4)
    new = make_case(cell, T, B, I, H, dtype, seed=5)
    w = pack(cell, old)
    lstm = cell == "lstm"
    forward = rnnkit.lstm_forward if lstm else rnnkit.gru_forward
    backward = rnnkit.lstm_backward if lstm else rnnkit.gru_backward
    out = forward(old["x"], w, training=True)
    w.update(*weights_of(new))
    grads = backward(out[-1], old["dy"])
    fresh_out = forward(old["x"], pack(cell, old), training=True)
    want = backward(fresh_out[-1], old["dy"])
    for name, a, b in zip(want._fields, grads, want):
        np.testing.assert_array_equal(a, b, err_msg=f"context after update: {name}")
    # The handle itself now runs the new weights.
    np.testing.assert_array_equal(forward(new["x"], w)[0], forward(new["x"], pack(cell, new))[0])


@pytest.mark.parametrize("cell", ("lstm", "gru"))
def test_update_packs_for_the_active_isa(cell):
    """Weights packed under one ISA and updated under another are packed
    for the active one, as pack_* would."""
    isas = rnnkit.available_isas()
    if len(isas) < 2:
        pytest.skip("one ISA on this CPU")
    case = make_case(cell, 3, 2, 8, 16, np.float32, seed=6)
    with rnnkit.use_isa(isas[-1]):
        w = pack(cell, case)
    with rnnkit.use_isa(isas[0]):
        w.update(*weights_of(case))
        assert w.isa == isas[0]
        assert_same_step(rnnkit_forward_backward(cell, case, reverse=False, w=w),
                         rnnkit_forward_backward(cell, case, reverse=False), "other ISA: ")


def test_update_rejects_what_pack_would_not_match():
    H, I = 16, 8
    rng = np.random.default_rng(7)
    w_ih = rng.standard_normal((4 * H, I)).astype(np.float32)
    w_hh = rng.standard_normal((4 * H, H)).astype(np.float32)
    w = rnnkit.pack_lstm(w_ih, w_hh)
    with pytest.raises(ValueError, match=r"weight_ih: expected shape \(64, 8\), got shape \(64, 9\)"):
        w.update(np.zeros((4 * H, I + 1), np.float32), w_hh)
    with pytest.raises(ValueError, match=r"weight_hh: expected shape \(64, 16\)"):
        w.update(w_ih, np.zeros((3 * H, H), np.float32))
    with pytest.raises(ValueError, match=r"bias_hh: expected shape \(64,\)"):
        w.update(w_ih, w_hh, None, np.zeros(4 * H + 1, np.float32))
    with pytest.raises(TypeError, match="weight_ih: expected dtype float32, got float64"):
        w.update(w_ih.astype(np.float64), w_hh)
    with pytest.raises(TypeError, match="bias_ih: expected a numpy.ndarray"):
        w.update(w_ih, w_hh, [0.0] * (4 * H))
    # A refused update leaves the weights as they were.
    x = rng.standard_normal((3, 2, I)).astype(np.float32)
    np.testing.assert_array_equal(rnnkit.lstm_forward(x, w)[0],
                                  rnnkit.lstm_forward(x, rnnkit.pack_lstm(w_ih, w_hh))[0])


@pytest.mark.parametrize("cell", ("lstm", "gru"))
def test_update_keeps_gates_per_cell(cell):
    """A GRU's weights have 3H rows, an LSTM's 4H: each checks its own."""
    H, I = 8, 5
    G = GATES[cell]
    rng = np.random.default_rng(8)
    w = (rnnkit.pack_lstm if cell == "lstm" else rnnkit.pack_gru)(
        rng.standard_normal((G * H, I)).astype(np.float32), rng.standard_normal((G * H, H)).astype(np.float32))
    other = 7 - G  # the other cell's gate count
    with pytest.raises(ValueError, match=f"expected shape \\({G * H}, {I}\\)"):
        w.update(np.zeros((other * H, I), np.float32), np.zeros((G * H, H), np.float32))


def test_update_while_another_thread_runs_the_weights():
    """Forward calls on other threads while the weights are updated see
    either the old or the new weights, whole: a running call holds its own
    reference, so the update packs afresh instead of writing under it."""
    import threading
    T, B, I, H = 20, 8, 64, 128
    cases = [make_case("lstm", T, B, I, H, np.float32, seed=s) for s in (11, 12)]
    x = cases[0]["x"]
    w = pack("lstm", cases[0])
    want = [rnnkit.lstm_forward(x, pack("lstm", c))[0] for c in cases]
    seen, errors = [], []

    def run():
        try:
            for _ in range(60):
                seen.append(rnnkit.lstm_forward(x, w)[0])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    k = 0
    while worker.is_alive():
        k += 1
        w.update(*weights_of(cases[k % 2]))
    worker.join()
    assert not errors, errors
    assert k > 0
    for y in seen:
        assert any(np.array_equal(y, ref) for ref in want), "a forward saw a mix of old and new weights"
