"""rnnkit's LSTM/GRU layers and cells, forward and backward, against the
float64 NumPy reference, for every ISA of this CPU and both dtypes; the GRU
in both forms (cell name "gru_no_lbr": reset before linear).

The reference gets float64 copies of exactly the (possibly float32-rounded)
inputs rnnkit gets, so the comparison measures only the kernels' arithmetic.
"""

import gc

import numpy as np
import pytest

import rnnkit
from rnnkit import reference
from helpers import (CELL_FORMS, GATES, GRU_CELL_GRADS, GRU_GRADS, LSTM_CELL_GRADS, LSTM_GRADS,
                      assert_all_close, assert_all_equal, cached_reference, grads_dict,
                      linear_before_reset, make_case, pack, rnnkit_forward_backward)


def forward_inference(cell, case, w, reverse):
    """Forward without training=True: no ctx in the result."""
    if cell == "lstm":
        res = rnnkit.lstm_forward(case["x"], w, case["h0"], case["c0"], reverse=reverse)
        assert len(res) == 3, "lstm_forward without training returns (y, h_n, c_n)"
        return dict(zip(("y", "h_n", "c_n"), res))
    res = rnnkit.gru_forward(case["x"], w, case["h0"], reverse=reverse)
    assert len(res) == 2, "gru_forward without training returns (y, h_n)"
    return dict(zip(("y", "h_n"), res))


def check_layer(cell, T, B, I, H, dtype, reverse, *, seed=0, none=()):
    """Forward (training and inference) and backward vs the reference."""
    none = tuple(sorted(none))
    case = make_case(cell, T, B, I, H, dtype, seed, none=none)
    w = pack(cell, case)
    # A pack is made for the ISA active when it is made (the `isa` fixture's).
    assert w.isa == rnnkit.isa()

    out, grads = rnnkit_forward_backward(cell, case, reverse, w)
    ref_out, ref_grads = cached_reference(cell, T, B, I, H, dtype.name, seed, none, reverse)
    assert_all_close(cell, out, ref_out, dtype, T, B, I, H)
    assert_all_close(cell, grads, ref_grads, dtype, T, B, I, H)
    # Inference mode may take another code path; it must be just as right.
    assert_all_close(cell, forward_inference(cell, case, w, reverse), ref_out,
                     dtype, T, B, I, H, what="inference ")
    return case, out, grads


# ------------------------------------------------------------ shape sweeps

# Sizes around the SIMD widths (8 floats / 4 doubles per AVX2 register, 16 / 8
# for AVX-512) and micro-kernel tiles: 1, one below/at/above a multiple of 8
# and 16, an odd 33 and a 100 that is no power of two.
SIZES = (1, 7, 8, 9, 15, 16, 17, 33, 100)

# The full I x H cross product at T=3, B=2. Alternating reverse over the
# cases covers both directions without doubling the run time.
GRID = [(I, H, k % 2 == 1) for k, (I, H) in
        enumerate((I, H) for I in SIZES for H in SIZES)]


@pytest.mark.parametrize("I,H,reverse", GRID,
                         ids=[f"I{I}-H{H}-{'rev' if r else 'fwd'}" for I, H, r in GRID])
@pytest.mark.parametrize("cell", CELL_FORMS)
def test_layer_shape_grid(cell, I, H, reverse, isa, dtype):
    check_layer(cell, 3, 2, I, H, dtype, reverse)


# Single-step and single-batch-row layers, and the all-ones shape: the
# degenerate loop bounds and GEMMs with M = 1.
EDGE_SHAPES = [(1, 2, 7, 9), (1, 3, 16, 17), (4, 1, 9, 8), (5, 1, 33, 15),
               (1, 1, 100, 33), (1, 1, 1, 1),
               # I and H off every panel width: packs end in partial panels.
               (2, 3, 290, 261),
               # I and G*H above the GEMM's k block (1024): the projection,
               # dx and dh products span several k blocks, each adding onto
               # what the last one stored.
               (2, 3, 1030, 350)]


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("T,B,I,H", EDGE_SHAPES)
@pytest.mark.parametrize("cell", CELL_FORMS)
def test_layer_edge_shapes(cell, T, B, I, H, reverse, isa, dtype):
    check_layer(cell, T, B, I, H, dtype, reverse)


# One realistic shape, large enough for several micro-kernel tiles in every
# dimension, blocking of K, and threading.
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("cell", CELL_FORMS)
def test_layer_large(cell, reverse, isa, dtype):
    check_layer(cell, 12, 13, 320, 272, dtype, reverse)


# Shapes where the drivers' own blocking shows: the input projection is
# computed in chunks of steps once T * B * G * H passes 2^16 elements (W_hh
# above 512 KiB; weights this small stay in cache, so a chunk may be one
# step: here 22 chunks, so both directions cross chunk boundaries; a short
# last chunk is in test_threads_and_layout), the batch exceeds one 96-row block
# of the GEMM driver, G * H = 900 or 1200 spans one or two k blocks of
# the backward products, and the 2200 rows are three k blocks of dW_hh's
# product, its 300-wide operand packed one k block at a time.
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("cell", CELL_FORMS)
def test_layer_projection_chunks_and_tall_batch(cell, reverse, isa, dtype):
    check_layer(cell, 22, 100, 20, 300, dtype, reverse)


# The reset-before-linear GRU runs each step in two halves over unit blocks
# of 32 (r, z; then n from r * h of every unit), so its own sweep: H off the
# block size by one (31, 33) and by a prime (47, 97), H and I around the
# vector widths (15, 17), primes, I != H, T = 1, and batches of 1 and past
# one micro-tile of rows.
RBL_SHAPES = [(1, 3, 17, 31), (2, 5, 13, 33), (3, 1, 31, 47), (4, 9, 15, 97),
              (1, 7, 3, 64), (5, 2, 41, 15), (3, 11, 7, 65)]


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("T,B,I,H", RBL_SHAPES)
def test_gru_no_lbr_shapes(T, B, I, H, reverse, isa, dtype):
    check_layer("gru_no_lbr", T, B, I, H, dtype, reverse)


@pytest.mark.parametrize("lbr", [True, False])
def test_gru_forms_differ(lbr, isa):
    # The two forms must not be mixed up: each pack matches its own
    # reference form and not the other one.
    dtype = np.dtype(np.float64)
    case = make_case("gru", 3, 2, 5, 6, dtype, seed=9)
    w = rnnkit.pack_gru(case["weight_ih"], case["weight_hh"], case["bias_ih"], case["bias_hh"],
                        linear_before_reset=lbr)
    assert w.linear_before_reset is lbr
    y, _ = rnnkit.gru_forward(case["x"], w, case["h0"])
    wts = (case["weight_ih"], case["weight_hh"], case["bias_ih"], case["bias_hh"])
    same, _, _ = reference.gru_forward(case["x"], *wts, case["h0"], linear_before_reset=lbr)
    other, _, _ = reference.gru_forward(case["x"], *wts, case["h0"], linear_before_reset=not lbr)
    np.testing.assert_allclose(y, same, rtol=1e-12, atol=1e-12)
    assert np.max(np.abs(y - other)) > 1e-3


# ------------------------------------------------------ None means zeros

NONE_SETS = {
    "no-state-no-bias": ("h0", "c0", "bias_ih", "bias_hh"),
    "no-dy": ("dy",),
    "no-dh_n": ("dh_n", "dc_n"),
    # Every incoming gradient None: all gradients must be exactly zero.
    "no-grads": ("dy", "dh_n", "dc_n"),
}


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("none", list(NONE_SETS.values()), ids=list(NONE_SETS))
@pytest.mark.parametrize("cell", CELL_FORMS)
def test_none_inputs_match_reference_and_zeros(cell, none, reverse, isa, dtype):
    T, B, I, H = 4, 3, 9, 17
    case, out, grads = check_layer(cell, T, B, I, H, dtype, reverse, seed=1, none=none)

    # The same run with explicit zeros in place of every None.
    full = make_case(cell, T, B, I, H, dtype, seed=1)
    zeros = {k: (np.zeros_like(full[k]) if case[k] is None else v) for k, v in case.items()}
    z_out, z_grads = rnnkit_forward_backward(cell, zeros, reverse)
    assert_all_close(cell, out, z_out, dtype, T, B, I, H, what="None vs zeros: ")
    assert_all_close(cell, grads, z_grads, dtype, T, B, I, H, what="None vs zeros: ")

    # Gradients of biases that were None still come back, shaped (G*H,).
    for name in ("db_ih", "db_hh"):
        assert grads[name].shape == (GATES[cell] * H,)
    # With no incoming gradient at all, 0 * anything finite is exactly 0.
    if all(case.get(k) is None for k in ("dy", "dh_n", "dc_n")):
        for name, g in grads.items():
            assert not np.any(g), f"{name}: nonzero gradient from zero incoming gradients"


# ---------------------------------------------------------- PackedWeights


@pytest.mark.parametrize("cell", CELL_FORMS)
def test_packed_weights_attributes(cell, isa, dtype):
    case = make_case(cell, 2, 2, 5, 3, dtype)
    w = pack(cell, case)
    assert isinstance(w, rnnkit.PackedWeights)
    assert w.cell == ("gru" if cell == "gru_no_lbr" else cell)
    assert w.linear_before_reset is linear_before_reset(cell)
    assert np.dtype(w.dtype) == dtype
    assert w.input_size == 5
    assert w.hidden_size == 3
    assert w.isa == isa
    # The attributes describe the packed buffer, so they must be read-only.
    for attr, value in [("cell", "gru"), ("input_size", 6), ("hidden_size", 4),
                        ("isa", "scalar"), ("dtype", np.float16), ("linear_before_reset", False)]:
        with pytest.raises(AttributeError):
            setattr(w, attr, value)


# ------------------------------------------------------------ single step

CELL_SHAPES = [(1, 1, 1), (2, 7, 9), (3, 16, 17), (5, 33, 100)]
CELL_NONE_SETS = {"full": (), "no-state": ("h0", "c0"), "no-dh": ("dh_n",)}


def cell_forward_backward(cell, x, w, h, c, dh, dc):
    """rnnkit cell forward (training + inference) and backward."""
    if cell == "lstm":
        h1, c1, ctx = rnnkit.lstm_cell(x, w, h, c, training=True)
        g = grads_dict(rnnkit.lstm_cell_backward(ctx, dh, dc), LSTM_CELL_GRADS)
        h1_inf, c1_inf = rnnkit.lstm_cell(x, w, h, c)
        return dict(h1=h1, c1=c1), dict(h1=h1_inf, c1=c1_inf), g
    h1, ctx = rnnkit.gru_cell(x, w, h, training=True)
    g = grads_dict(rnnkit.gru_cell_backward(ctx, dh), GRU_CELL_GRADS)
    h1_inf = rnnkit.gru_cell(x, w, h)
    return dict(h1=h1), dict(h1=h1_inf), g


def cell_reference(cell, x, case, h, c, dh, dc):
    wts = (case["weight_ih"], case["weight_hh"], case["bias_ih"], case["bias_hh"])
    if cell == "lstm":
        h1, c1, cache = reference.lstm_cell_forward(x, h, c, *wts)
        g = reference.lstm_cell_backward(dh, dc, cache)
        return dict(h1=h1, c1=c1), dict(zip(LSTM_CELL_GRADS, g))
    h1, cache = reference.gru_cell_forward(x, h, *wts, linear_before_reset(cell))
    g = reference.gru_cell_backward(dh, cache)
    return dict(h1=h1), dict(zip(GRU_CELL_GRADS, g))


@pytest.mark.parametrize("none", list(CELL_NONE_SETS.values()), ids=list(CELL_NONE_SETS))
@pytest.mark.parametrize("B,I,H", CELL_SHAPES)
@pytest.mark.parametrize("cell", CELL_FORMS)
def test_cell_matches_reference(cell, B, I, H, none, isa, dtype):
    case = make_case(cell, 1, B, I, H, dtype, seed=2, none=none)
    x, h, c = case["x"][0], case["h0"], case.get("c0")
    dh, dc = case["dh_n"], case.get("dc_n")
    w = pack(cell, case)

    out, out_inf, grads = cell_forward_backward(cell, x, w, h, c, dh, dc)
    ref_out, ref_grads = cell_reference(cell, x, case, h, c, dh, dc)
    # A cell is a layer with T = 1.
    assert_all_close(cell, out, ref_out, dtype, 1, B, I, H)
    assert_all_close(cell, out_inf, ref_out, dtype, 1, B, I, H, what="inference ")
    assert_all_close(cell, grads, ref_grads, dtype, 1, B, I, H)


# ---------------------------------------------------------------- the ctx


@pytest.mark.parametrize("cell", CELL_FORMS)
def test_ctx_can_be_used_for_several_backward_calls(cell, isa, dtype):
    T, B, I, H = 5, 3, 9, 17
    case = make_case(cell, T, B, I, H, dtype, seed=3)
    other = make_case(cell, T, B, I, H, dtype, seed=4)
    w = pack(cell, case)
    if cell == "lstm":
        *_, ctx = rnnkit.lstm_forward(case["x"], w, case["h0"], case["c0"], training=True)

        def backward(c):
            return grads_dict(rnnkit.lstm_backward(ctx, c["dy"], c["dh_n"], c["dc_n"]),
                              LSTM_GRADS)
    else:
        *_, ctx = rnnkit.gru_forward(case["x"], w, case["h0"], training=True)

        def backward(c):
            return grads_dict(rnnkit.gru_backward(ctx, c["dy"], c["dh_n"]), GRU_GRADS)

    first = backward(case)
    # A backward with other incoming gradients in between must not leave
    # anything behind in the ctx's workspace.
    backward(other)
    again = backward(case)
    assert_all_equal(first, again, what="second backward: ")


def forward_ctx(cell, x, w, h0, c0):
    """A training forward's ctx, and a function running its backward with a case's gradients."""
    if cell == "lstm":
        *_, ctx = rnnkit.lstm_forward(x, w, h0, c0, training=True)
        return lambda c: grads_dict(rnnkit.lstm_backward(ctx, c["dy"], c["dh_n"], c["dc_n"]), LSTM_GRADS)
    *_, ctx = rnnkit.gru_forward(x, w, h0, training=True)
    return lambda c: grads_dict(rnnkit.gru_backward(ctx, c["dy"], c["dh_n"]), GRU_GRADS)


@pytest.mark.parametrize("cell", CELL_FORMS)
def test_ctx_keeps_its_own_copy_of_the_initial_states(cell, isa, dtype):
    T, B, I, H = 4, 3, 9, 17
    case = make_case(cell, T, B, I, H, dtype, seed=5)
    expected = rnnkit_forward_backward(cell, case, reverse=False)

    # Overwrite h0 (and c0) before the backward: dW_hh needs h0, and the
    # gradients must not change.
    h0, c0 = case["h0"].copy(), None if case.get("c0") is None else case["c0"].copy()
    backward = forward_ctx(cell, case["x"], pack(cell, case), h0, c0)
    h0[...] = -5.0
    if c0 is not None:
        c0[...] = 7.0
    assert_all_equal(expected[1], backward(case), what="after changing h0, c0: ")


@pytest.mark.parametrize("where", [0, 53, -1], ids=["first", "middle", "last"])
@pytest.mark.parametrize("cell", CELL_FORMS)
def test_backward_refuses_a_changed_x(cell, where, isa, dtype):
    # The ctx refers to the caller's x (no copy). Changing one element by
    # one ulp before the backward must be refused, not give wrong dW_ih;
    # x restored, the backward runs and gives the gradients it should.
    T, B, I, H = 4, 3, 9, 17
    case = make_case(cell, T, B, I, H, dtype, seed=5)
    expected = rnnkit_forward_backward(cell, case, reverse=False)
    x = case["x"].copy()
    backward = forward_ctx(cell, x, pack(cell, case), case["h0"], case.get("c0"))
    flat = x.reshape(-1)
    kept = flat[where]
    flat[where] = np.nextafter(kept, np.inf)
    with pytest.raises(ValueError, match=r"ctx: x, the input of the training forward call .* has changed"):
        backward(case)
    flat[where] = kept
    assert_all_equal(expected[1], backward(case), what="after restoring x: ")


@pytest.mark.parametrize("cell", CELL_FORMS)
def test_ctx_keeps_x_alive(cell, isa, dtype):
    # The ctx holds the only reference to a temporary x: its memory must
    # not be freed (and reused) before the backward reads it.
    T, B, I, H = 4, 3, 9, 17
    case = make_case(cell, T, B, I, H, dtype, seed=5)
    expected = rnnkit_forward_backward(cell, case, reverse=False)
    backward = forward_ctx(cell, case["x"].copy(), pack(cell, case), case["h0"], case.get("c0"))
    gc.collect()
    reuse = [np.full_like(case["x"], 9.0) for _ in range(8)]
    assert_all_equal(expected[1], backward(case), what="with x kept only by the ctx: ")
    del reuse


@pytest.mark.parametrize("cell", CELL_FORMS)
def test_ctx_of_a_converted_x_is_private(cell, isa, dtype):
    # A non-contiguous x is copied once by the call; that copy is the
    # ctx's own, so changing the caller's array afterwards changes nothing.
    T, B, I, H = 4, 3, 9, 17
    case = make_case(cell, T, B, I, H, dtype, seed=5)
    expected = rnnkit_forward_backward(cell, case, reverse=False)
    wide = np.zeros((T, B, 2 * I), dtype)
    wide[:, :, ::2] = case["x"]
    backward = forward_ctx(cell, wide[:, :, ::2], pack(cell, case), case["h0"], case.get("c0"))
    wide[...] = 3.0
    assert_all_equal(expected[1], backward(case), what="after changing the strided x: ")


@pytest.mark.parametrize("n", [1, 2, 7, 16, 17, 67])
def test_fingerprint_sees_every_single_change(n):
    # The guard of test_backward_refuses_a_changed_x: any one changed
    # element (the whole words, the lanes' remainder and the tail bytes)
    # changes the fingerprint, as does the length.
    data = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    base = rnnkit._core._testing.fingerprint(data.tobytes())
    assert rnnkit._core._testing.fingerprint(data.tobytes()) == base
    assert rnnkit._core._testing.fingerprint(data[:-1].tobytes()) != base
    for i in range(n):
        changed = data.copy()
        changed[i] = np.nextafter(changed[i], np.inf)
        assert rnnkit._core._testing.fingerprint(changed.tobytes()) != base, i
    # Two elements swapped (the same values in another order).
    if n > 1:
        assert rnnkit._core._testing.fingerprint(data[::-1].tobytes()) != base


@pytest.mark.parametrize("cell", CELL_FORMS)
def test_pack_keeps_its_own_copy_of_the_weights(cell, isa, dtype):
    case = make_case(cell, 3, 2, 9, 17, dtype, seed=6)
    expected = rnnkit_forward_backward(cell, case, reverse=False)

    mutable = dict(case)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        mutable[name] = case[name].copy()
    w = pack(cell, mutable)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        mutable[name][...] = 0.25
    got = rnnkit_forward_backward(cell, case, reverse=False, w=w)
    assert_all_equal(expected[0], got[0], what="after mutating the weights: ")
    assert_all_equal(expected[1], got[1], what="after mutating the weights: ")


@pytest.mark.parametrize("cell", CELL_FORMS)
def test_cell_ctx_copies_the_states_and_guards_x(cell, isa, dtype):
    B, I, H = 3, 9, 17
    case = make_case(cell, 1, B, I, H, dtype, seed=7)
    w = pack(cell, case)
    x, h, c = case["x"][0], case["h0"], case.get("c0")
    dh, dc = case["dh_n"], case.get("dc_n")
    _, _, expected = cell_forward_backward(cell, x, w, h, c, dh, dc)

    x2, h2 = x.copy(), h.copy()
    if cell == "lstm":
        c2 = c.copy()
        _, _, ctx = rnnkit.lstm_cell(x2, w, h2, c2, training=True)
        h2[...], c2[...] = -5.0, 7.0
        backward = lambda: grads_dict(rnnkit.lstm_cell_backward(ctx, dh, dc), LSTM_CELL_GRADS)  # noqa: E731
    else:
        _, ctx = rnnkit.gru_cell(x2, w, h2, training=True)
        h2[...] = -5.0
        backward = lambda: grads_dict(rnnkit.gru_cell_backward(ctx, dh), GRU_CELL_GRADS)  # noqa: E731
    assert_all_equal(expected, backward(), what="after changing the states: ")
    x2[-1, -1] += 1
    with pytest.raises(ValueError, match="ctx: x, the input"):
        backward()


# ------------------------------------------------- outputs are fresh arrays


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("cell", CELL_FORMS)
def test_outputs_do_not_alias_inputs(cell, reverse, isa, dtype):
    # Writing into a returned array must not change the inputs or other outputs.
    case = make_case(cell, 3, 2, 5, 4, dtype, seed=8)
    saved = {k: (None if v is None else v.copy()) for k, v in case.items()}
    out, grads = rnnkit_forward_backward(cell, case, reverse)
    arrays = list(out.values()) + list(grads.values())
    for i, a in enumerate(arrays):
        for b in arrays[i + 1:]:
            assert not np.shares_memory(a, b)
        for v in case.values():
            if v is not None:
                assert not np.shares_memory(a, v)
    assert_all_equal({k: v for k, v in case.items() if v is not None},
                     {k: v for k, v in saved.items() if v is not None},
                     what="inputs changed by the call: ")
    # y[t] for the last processed step is the final state.
    last = 0 if reverse else -1
    assert np.array_equal(out["y"][last], out["h_n"])

