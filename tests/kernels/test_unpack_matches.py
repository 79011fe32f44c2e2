"""PackedWeights.unpack() and PackedWeights.matches(): the exact inverse of
packing and a bit-for-bit staleness check, both read from the packed panels
(no copy of the weights is kept anywhere)."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import rnnkit
from helpers import CELL_FORMS, GATES, linear_before_reset, require_optional

# (H, I): H around the unit block (32) and the panel widths (8, 16), I != H, I = 1.
SHAPES = [(1, 1), (1, 5), (7, 3), (15, 15), (16, 1), (17, 17), (33, 40), (7, 1)]


def make_weights(cell, H, I, dtype, seed=0, bias=True):
    rng = np.random.default_rng(seed)
    G = GATES[cell]
    w = [rng.standard_normal(shape).astype(dtype) for shape in [(G * H, I), (G * H, H), (G * H,), (G * H,)]]
    return w if bias else w[:2] + [None, None]


def pack(cell, weights):
    if cell == "lstm":
        return rnnkit.pack_lstm(*weights)
    return rnnkit.pack_gru(*weights, linear_before_reset=linear_before_reset(cell))


def bits(a):
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def assert_same_bits(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if w is None:
            assert g is None
            continue
        assert g.dtype == w.dtype and g.shape == w.shape and g.flags.c_contiguous
        np.testing.assert_array_equal(bits(g), bits(w))


# ---- unpack ------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELL_FORMS)
@pytest.mark.parametrize("H,I", SHAPES)
def test_unpack_gives_back_exactly_what_was_packed(cell, isa, dtype, H, I):
    weights = make_weights(cell, H, I, dtype, seed=H * 100 + I)
    p = pack(cell, weights)
    assert p.isa == isa
    assert_same_bits(p.unpack(), weights)
    assert p.matches(*weights)


@pytest.mark.parametrize("cell", CELL_FORMS)
def test_unpack_without_biases_gives_none(cell, isa, dtype):
    weights = make_weights(cell, 7, 5, dtype, bias=False)
    p = pack(cell, weights)
    assert_same_bits(p.unpack(), weights)
    # One bias given, the other left out.
    one = make_weights(cell, 7, 5, dtype)
    one[3] = None
    assert_same_bits(pack(cell, one).unpack(), one)


@pytest.mark.parametrize("cell", CELL_FORMS)
@pytest.mark.parametrize("H,I", [(5, 1100), (1030, 2)])
def test_unpack_across_k_blocks(cell, isa, H, I):
    # I or H above the k block (1024): the panels of several k blocks.
    weights = make_weights(cell, H, I, np.float32, seed=5)
    p = pack(cell, weights)
    assert_same_bits(p.unpack(), weights)
    assert p.matches(*weights)
    # One value in the second k block of the wide one.
    k = 1 if H > 1024 else 0
    changed = list(weights)
    changed[k] = weights[k].copy()
    changed[k][-1, 1025] += 1
    assert not p.matches(*changed)


def test_unpack_of_special_values_is_exact(isa, dtype):
    # -0.0, NaNs with payloads, infinities, subnormals: bits, not values.
    weights = make_weights("lstm", 3, 4, dtype)
    ints = bits(weights[0])
    top = ints.dtype.type(0xFFF0000000000000 if dtype == np.float64 else 0xFF800000)
    ints[0, 0] = top | ints.dtype.type(12345)  # a negative NaN with a payload
    weights[0][0, 1] = -0.0
    weights[1][1, 2] = np.inf
    weights[2][3] = np.finfo(dtype).smallest_subnormal
    weights[3][4] = -0.0
    assert_same_bits(pack("lstm", weights).unpack(), weights)


def test_unpack_after_update_and_under_another_isa(dtype):
    isas = rnnkit.available_isas()
    first, second = make_weights("gru", 9, 4, dtype, seed=1), make_weights("gru", 9, 4, dtype, seed=2)
    with rnnkit.use_isa(isas[0]):
        p = pack("gru_no_lbr", first)
    with rnnkit.use_isa(isas[-1]):
        p.update(*second)  # packed afresh for the other ISA
        assert p.isa == isas[-1]
    assert_same_bits(p.unpack(), second)
    assert p.matches(*second) and not p.matches(*first)
    p.update(*first)  # in place this time
    assert_same_bits(p.unpack(), first)


def test_unpack_returns_new_arrays():
    weights = make_weights("lstm", 4, 3, np.float64)
    p = pack("lstm", weights)
    a = p.unpack()
    a[0][:] = 0
    a[2][:] = 0
    assert_same_bits(p.unpack(), weights)
    assert p.matches(*weights)


# ---- matches -------------------------------------------------------------------

def flipped_copies(weights):
    """(name, weights with one element changed) for the first, a middle and
    the last element of each array."""
    for k, a in enumerate(weights):
        for pos in (0, a.size // 2, a.size - 1):
            changed = [w.copy() for w in weights]
            flat = changed[k].reshape(-1)
            flat[pos] = flat[pos] + 1 if flat[pos] != 0 else 1
            yield f"array {k} element {pos}", changed


@pytest.mark.parametrize("cell", CELL_FORMS)
@pytest.mark.parametrize("H,I", [(1, 1), (7, 3), (17, 33), (33, 1)])
def test_matches_sees_any_single_changed_element(cell, isa, dtype, H, I):
    weights = make_weights(cell, H, I, dtype, seed=7)
    p = pack(cell, weights)
    assert p.matches(*weights)
    for what, changed in flipped_copies(weights):
        assert not p.matches(*changed), what
    assert p.matches(*weights)


@pytest.mark.parametrize("cell", CELL_FORMS)
def test_matches_compares_bits_not_values(cell, isa, dtype):
    weights = make_weights(cell, 17, 5, dtype, seed=8)
    for a in weights:
        a.reshape(-1)[0] = 0.0
        a.reshape(-1)[-1] = np.nan
    p = pack(cell, weights)
    assert p.matches(*weights)
    for k in range(4):
        # +0.0 -> -0.0: equal values, another weight.
        changed = [w.copy() for w in weights]
        changed[k].reshape(-1)[0] = -0.0
        assert not p.matches(*changed), f"array {k}: -0.0"
        # Another NaN payload: NaN either way, other bits.
        changed = [w.copy() for w in weights]
        b = bits(changed[k]).reshape(-1)
        b[-1] = b[-1] ^ b.dtype.type(1)
        assert np.isnan(changed[k].reshape(-1)[-1])
        assert not p.matches(*changed), f"array {k}: NaN payload"


def test_matches_treats_left_out_biases_as_zeros(dtype):
    weights = make_weights("lstm", 5, 3, dtype, bias=False)
    p = pack("lstm", weights)
    G5 = GATES["lstm"] * 5
    zeros = np.zeros(G5, dtype)
    assert p.matches(weights[0], weights[1])
    assert p.matches(weights[0], weights[1], zeros, zeros)
    assert not p.matches(weights[0], weights[1], -zeros, zeros)
    one = zeros.copy()
    one[3] = 1
    assert not p.matches(weights[0], weights[1], None, one)
    # And the other way round: packed with zeros, compared with none.
    q = pack("lstm", [weights[0], weights[1], zeros, zeros])
    assert q.matches(weights[0], weights[1])
    q = pack("lstm", [weights[0], weights[1], one, zeros])
    assert not q.matches(weights[0], weights[1])
    assert q.matches(weights[0], weights[1], one)


@pytest.mark.parametrize("cell", CELL_FORMS)
def test_matches_of_strided_and_misaligned_arrays(cell, dtype):
    weights = make_weights(cell, 7, 4, dtype, seed=3)
    p = pack(cell, weights)
    fortran = [np.asfortranarray(w) for w in weights]
    assert not fortran[0].flags.c_contiguous
    assert p.matches(*fortran)
    wider = np.zeros((weights[0].shape[0], 2 * weights[0].shape[1]), dtype)
    wider[:, ::2] = weights[0]
    assert p.matches(wider[:, ::2], *weights[1:])
    wider[-1, -2] += 1
    assert not p.matches(wider[:, ::2], *weights[1:])
    raw = np.zeros(weights[1].nbytes + 1, np.uint8)
    odd = np.frombuffer(raw.data, dtype=dtype, count=weights[1].size, offset=1).reshape(weights[1].shape)
    odd[...] = weights[1]
    assert not odd.flags.aligned
    assert p.matches(weights[0], odd, *weights[2:])


def test_matches_is_false_for_another_dtype_or_shape():
    weights = make_weights("gru", 6, 4, np.float32)
    p = pack("gru", weights)
    other = [w.astype(np.float64) for w in weights]
    for k in range(4):
        assert not p.matches(*[other[j] if j == k else weights[j] for j in range(4)]), k
    w_ih, w_hh, b_ih, b_hh = weights
    assert not p.matches(w_ih[:, :3], w_hh, b_ih, b_hh)
    assert not p.matches(w_ih[:-3], w_hh[:-3], b_ih[:-3], b_hh[:-3])
    assert not p.matches(w_ih, w_hh[None], b_ih, b_hh)
    assert not p.matches(w_ih, w_hh, b_ih[:, None], b_hh)
    assert not p.matches(w_ih, w_hh, b_ih, b_hh[:-1])
    assert not p.matches(w_ih.T.copy(), w_hh, b_ih, b_hh)
    assert not p.matches(w_ih.astype(np.int32), w_hh, b_ih, b_hh)
    assert p.matches(w_ih, w_hh, b_ih, b_hh)


def test_matches_refuses_what_is_not_an_array():
    weights = make_weights("lstm", 2, 2, np.float64)
    p = pack("lstm", weights)
    with pytest.raises(TypeError, match="weight_ih: expected a numpy.ndarray"):
        p.matches(weights[0].tolist(), weights[1])
    with pytest.raises(TypeError, match="weight_hh"):
        p.matches(weights[0], None)
    # Even when an earlier argument is already no match.
    with pytest.raises(TypeError, match="bias_hh"):
        p.matches(weights[0][:1], weights[1], weights[2], "zeros")


def test_context_pickles_the_weights_it_was_made_with_after_an_in_place_update():
    import pickle
    weights = make_weights("lstm", 5, 3, np.float64, seed=11)
    p = pack("lstm", weights)
    x = np.random.default_rng(0).standard_normal((4, 2, 3))
    ctx = rnnkit.lstm_forward(x, p, training=True)[-1]
    expected = rnnkit.lstm_backward(ctx, np.ones((4, 2, 5)))
    p.update(*[w * 2 for w in weights])  # the context holds the old pack: a fresh one
    _, (state,) = ctx.__reduce__()
    assert_same_bits(state[1][-1], weights)
    got = rnnkit.lstm_backward(pickle.loads(pickle.dumps(ctx)), np.ones((4, 2, 5)))
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)


# ---- no copy of the weights ------------------------------------------------------

MEMORY_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import rnnkit

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    H = 1024
    rng = np.random.default_rng(0)
    w = [rng.standard_normal(s).astype(np.float32) for s in [(4 * H, H), (4 * H, H), (4 * H,), (4 * H,)]]
    weight_bytes = w[0].nbytes + w[1].nbytes
    before = rss()
    p = rnnkit.pack_lstm(*w)
    packed = rss() - before
    if sys.argv[1] == "torch":
        import torch
        import rnnkit.torch
        rnnkit.torch.LSTM(8, 8)(torch.zeros(1, 1, 8))  # first-call allocations of torch and rnnkit
        m = rnnkit.torch.LSTM(H, H)
        x = torch.zeros(1, 1, H)
        before = rss()
        m(x)  # packs
        packed = rss() - before
    print(packed / weight_bytes)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
@pytest.mark.parametrize("how", ["pack", "torch"])
def test_packing_costs_the_panels_and_no_copy_of_the_weights(how):
    # Panels alone are ~1x the weights' bytes; each kept copy adds 1x more.
    if how == "torch":
        require_optional("torch")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, how], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    ratio = float(out.stdout.split()[-1])
    assert 0.9 < ratio < 1.5, ratio


# ---- rnnkit.torch: the staleness check is matches() -------------------------------

@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_no_lbr"])
@pytest.mark.parametrize("bias", [True, False])
def test_torch_module_repacks_after_any_bit_of_any_parameter_changed(kind, bias):
    torch = require_optional("torch")
    import rnnkit.torch as rt
    if kind == "lstm":
        m = rt.LSTM(5, 4, num_layers=2, bidirectional=True, bias=bias)
    else:
        m = rt.GRU(5, 4, num_layers=2, bidirectional=True, bias=bias, linear_before_reset=kind == "gru")
    m = m.double()
    x = torch.randn(3, 2, 5, dtype=torch.float64)
    with torch.no_grad():
        for p in m.parameters():
            p.view(-1)[1] = 0.0

    def assert_packs_hold_the_parameters():
        packs = m._rnnkit_cache.packed
        assert len(packs) == 4
        for layer in range(2):
            for d, sfx in enumerate(("", "_reverse")):
                names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                want = [getattr(m, f"{n}_l{layer}{sfx}").detach().numpy() if bias or n[0] == "w" else None
                        for n in names]
                assert_same_bits(packs[layer * 2 + d].unpack(), want)

    m(x)
    assert_packs_hold_the_parameters()
    for name, p in m.named_parameters():
        # +0.0 -> -0.0 and back through .data: the same value, other bits, a change all the same.
        for value in (-0.0, 0.0):
            p.data.view(-1)[1] = value
            m(x)
            assert_packs_hold_the_parameters()
