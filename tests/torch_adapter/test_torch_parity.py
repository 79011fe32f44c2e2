"""rnnkit.torch.LSTM/GRU against torch.nn.LSTM/GRU: outputs and the gradients
of the input, the initial states and every parameter.

The reference is torch's module in float64 loaded with the same weights (a
float32 case's weights and inputs are rounded to float32 first, so both sides
see the same values). float64 results must match to the helpers' float64 bound;
float32 results to the helpers' float32 rule (eps * log2(accumulation length *
steps)), where the steps an error can travel are T per layer, T * num_layers
in all.
"""

import itertools
import math

import numpy as np
import pytest

from helpers import assert_close

T, B, I, H = 5, 4, 3, 4
# Unsorted, with a length-1 sequence and a full-length one.
LENGTHS = [3, T, 1, 4]
GATES = {"LSTM": 4, "GRU": 3}


# ---- helpers ----------------------------------------------------------------------

def build(torch, rt, mode, dtype, seed=0, **cfg):
    """(rnnkit module in `dtype`, torch.nn float64 reference with the same weights)."""
    ours = getattr(rt, mode)(I, H, dtype=dtype, **cfg)
    g = torch.Generator().manual_seed(seed)
    bound = 1.0 / math.sqrt(H)
    with torch.no_grad():
        for p in ours.parameters():
            p.uniform_(-bound, bound, generator=g)
    ref = getattr(torch.nn, mode)(I, H, dtype=torch.float64, **cfg)
    ref.load_state_dict({k: v.double() for k, v in ours.state_dict().items()})
    return ours, ref


def randn(torch, shape, dtype, g):
    """N(0, 1) drawn in float64 and rounded to `dtype` (the reference upcasts these values)."""
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)


def make_inputs(torch, mode, dtype, num_layers, bidirectional, batch_first, with_hx, batched=True, seed=1):
    g = torch.Generator().manual_seed(seed)
    shape = ((B, T, I) if batch_first else (T, B, I)) if batched else (T, I)
    x = 0.5 * randn(torch, shape, dtype, g)
    if not with_hx:
        return x, None
    sshape = (num_layers * (2 if bidirectional else 1),) + ((B, H) if batched else (H,))
    states = [0.5 * randn(torch, sshape, dtype, g) for _ in range(2 if mode == "LSTM" else 1)]
    return x, states


def forward_backward(torch, module, x, states, *, packed=False, batch_first=False, upstream_dtype):
    """Run `module` on copies of x and the states (cast to its dtype), backpropagate
    fixed random upstream gradients; -> {name: numpy array} of outputs and gradients."""
    dtype = next(module.parameters()).dtype
    x = x.detach().to(dtype).clone().requires_grad_()
    states = None if states is None else [s.detach().to(dtype).clone().requires_grad_() for s in states]
    inp = x
    if packed:
        inp = torch.nn.utils.rnn.pack_padded_sequence(x, LENGTHS, batch_first=batch_first,
                                                      enforce_sorted=False)
    hx = None if states is None else (tuple(states) if module.mode == "LSTM" else states[0])
    module.zero_grad()
    y, h = module(inp, hx)
    finals = list(h) if module.mode == "LSTM" else [h]
    if packed:
        assert isinstance(y, torch.nn.utils.rnn.PackedSequence)
        assert torch.equal(y.batch_sizes, inp.batch_sizes)
        assert torch.equal(y.sorted_indices, inp.sorted_indices)
        assert torch.equal(y.unsorted_indices, inp.unsorted_indices)
        y = y.data
    outs = [y] + finals
    # The same upstream values on both sides: drawn in float64, rounded to the case's dtype.
    g = torch.Generator().manual_seed(99)
    grads = [randn(torch, o.shape, upstream_dtype, g).to(o.dtype) for o in outs]
    torch.autograd.backward(outs, grads)

    res = {"y": y, "h_n": finals[0], "dx": x.grad}
    if module.mode == "LSTM":
        res["c_n"] = finals[1]
    if states is not None:
        res["dh0"] = states[0].grad
        if module.mode == "LSTM":
            res["dc0"] = states[1].grad
    for name, p in module.named_parameters():
        res["d" + name] = p.grad
    return {k: v.detach().numpy() for k, v in res.items()}


def acc_len(name, mode, num_layers, dirs):
    """the helpers' accumulation length of an output or gradient of a stacked layer."""
    if name in ("y", "h_n", "c_n"):
        return max(I, dirs * H if num_layers > 1 else 0) + H
    if name in ("dx", "dh0", "dc0"):
        return GATES[mode] * H * dirs   # both directions' dgates products add up in dx
    return T * B                        # weight and bias gradients sum over steps and batch


def assert_matches(ours, ref, dtype, mode, num_layers, bidirectional):
    assert set(ours) == set(ref)
    np_dtype = np.float32 if "float32" in str(dtype) else np.float64
    dirs = 2 if bidirectional else 1
    for name in ref:
        assert_close(ours[name], ref[name], np_dtype, acc_len(name, mode, num_layers, dirs),
                     T * num_layers, name=name)


# ---- the grid ------------------------------------------------------------------------

GRID = list(itertools.product(("LSTM", "GRU"), (1, 2, 3), (False, True), (False, True),
                              ("dense", "packed"), ("float32", "float64"), ("hx", "no_hx")))


@pytest.mark.parametrize("mode,num_layers,bidirectional,batch_first,lengths,dtype_name,hx", GRID,
                         ids=["-".join(map(str, case)) for case in GRID])
def test_parity_grid(torch, rt, mode, num_layers, bidirectional, batch_first, lengths, dtype_name, hx):
    dtype = getattr(torch, dtype_name)
    cfg = dict(num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first)
    ours, ref = build(torch, rt, mode, dtype, **cfg)
    x, states = make_inputs(torch, mode, dtype, num_layers, bidirectional, batch_first, hx == "hx")
    kw = dict(packed=lengths == "packed", batch_first=batch_first, upstream_dtype=dtype)
    got = forward_backward(torch, ours, x, states, **kw)
    want = forward_backward(torch, ref, x, states, **kw)
    assert_matches(got, want, dtype, mode, num_layers, bidirectional)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
@pytest.mark.parametrize("lengths", ["dense", "packed"])
@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_every_isa(torch, rt, isa, mode, lengths, dtype_name):
    # The grid above runs the best ISA; here every ISA this CPU has (the helpers'
    # `isa` fixture), and the module packs its weights for the active one.
    dtype = getattr(torch, dtype_name)
    ours, ref = build(torch, rt, mode, dtype, num_layers=2, bidirectional=True)
    x, states = make_inputs(torch, mode, dtype, 2, True, False, True)
    kw = dict(packed=lengths == "packed", upstream_dtype=dtype)
    got = forward_backward(torch, ours, x, states, **kw)
    want = forward_backward(torch, ref, x, states, **kw)
    assert_matches(got, want, dtype, mode, 2, True)
    assert all(w.isa == isa for w in ours._rnnkit_cache.packed)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_hx", [False, True])
def test_unbatched_input(torch, rt, mode, batch_first, with_hx):
    dtype = torch.float64
    cfg = dict(num_layers=2, bidirectional=True, batch_first=batch_first)
    ours, ref = build(torch, rt, mode, dtype, **cfg)
    x, states = make_inputs(torch, mode, dtype, 2, True, batch_first, with_hx, batched=False)
    got = forward_backward(torch, ours, x, states, upstream_dtype=dtype)
    want = forward_backward(torch, ref, x, states, upstream_dtype=dtype)
    assert got["y"].shape == (T, 2 * H) and got["h_n"].shape == (4, H)
    assert_matches(got, want, dtype, mode, 2, True)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_no_bias(torch, rt, mode):
    dtype = torch.float64
    ours, ref = build(torch, rt, mode, dtype, num_layers=2, bias=False, bidirectional=True)
    x, states = make_inputs(torch, mode, dtype, 2, True, False, True)
    got = forward_backward(torch, ours, x, states, upstream_dtype=dtype)
    want = forward_backward(torch, ref, x, states, upstream_dtype=dtype)
    assert_matches(got, want, dtype, mode, 2, True)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_packed_output_pads_like_torch(torch, rt, mode):
    # Padding a packed result: zeros past each sequence's end, in the caller's batch order.
    ours, ref = build(torch, rt, mode, torch.float64, bidirectional=True)
    x, _ = make_inputs(torch, mode, torch.float64, 1, True, False, False)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, LENGTHS, enforce_sorted=False)
    with torch.no_grad():
        got, got_len = torch.nn.utils.rnn.pad_packed_sequence(ours(packed)[0])
        want, _ = torch.nn.utils.rnn.pad_packed_sequence(ref(packed)[0])
    assert got_len.tolist() == LENGTHS
    assert_close(got.numpy(), want.numpy(), np.float64, I + H, T, name="padded y")
    for b, n in enumerate(LENGTHS):
        assert not got[n:, b].any(), f"sequence {b}: outputs past its length {n} are not zero"


# ---- dropout ---------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("lengths", ["dense", "packed"])
def test_dropout_matches_torch_at_the_same_seed(torch, rt, mode, bidirectional, lengths):
    # rnnkit.torch draws its masks from torch's RNG as torch's RNN does, so at
    # one seed both drop the same units; outputs and all gradients then agree,
    # which also proves backward uses the forward's masks.
    dtype = torch.float64
    ours, ref = build(torch, rt, mode, dtype, num_layers=3, dropout=0.5, bidirectional=bidirectional)
    ours.train(), ref.train()
    x, states = make_inputs(torch, mode, dtype, 3, bidirectional, False, True)
    kw = dict(packed=lengths == "packed", upstream_dtype=dtype)
    torch.manual_seed(1234)
    got = forward_backward(torch, ours, x, states, **kw)
    torch.manual_seed(1234)
    want = forward_backward(torch, ref, x, states, **kw)
    assert_matches(got, want, dtype, mode, 3, bidirectional)
    # Dropout really acted: without it the output differs.
    ref.eval()
    undropped = forward_backward(torch, ref, x, states, **kw)
    assert np.abs(undropped["y"] - got["y"]).max() > 1e-3


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_dropout_seeded_reproducible(torch, rt, mode):
    dtype = torch.float32
    ours, _ = build(torch, rt, mode, dtype, num_layers=2, dropout=0.3)
    x, states = make_inputs(torch, mode, dtype, 2, False, False, False)
    results = {}
    for run, seed in (("a", 5), ("b", 5), ("c", 6)):
        torch.manual_seed(seed)
        results[run] = forward_backward(torch, ours, x, states, upstream_dtype=dtype)
    for name in results["a"]:
        assert np.array_equal(results["a"][name], results["b"][name]), f"{name}: same seed, different result"
    assert not np.array_equal(results["a"]["y"], results["c"]["y"]), "different seeds gave the same masks"
    assert not np.array_equal(results["a"]["dweight_ih_l0"], results["c"]["dweight_ih_l0"])


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_dropout_gradients_finite_difference(torch, rt, mode):
    # Independent of torch's RNN: with the seed fixed per call every forward
    # draws the same masks, so float64 finite differences check the backward.
    ours, _ = build(torch, rt, mode, torch.float64, num_layers=2, dropout=0.5, bidirectional=True)
    names = [n for n, _ in ours.named_parameters()]
    x, states = make_inputs(torch, mode, torch.float64, 2, True, False, True)

    def f(x, *tensors):
        params = dict(zip(names, tensors[len(states):]))
        hx = tuple(tensors[:2]) if mode == "LSTM" else tensors[0]
        torch.manual_seed(3)
        y, h = torch.func.functional_call(ours, params, (x, hx))
        return (y,) + (tuple(h) if mode == "LSTM" else (h,))

    inputs = [x.requires_grad_()] + [s.requires_grad_() for s in states] + \
             [p.detach().clone().requires_grad_() for p in ours.parameters()]
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-6)


def test_eval_mode_ignores_dropout(torch, rt):
    ours, ref = build(torch, rt, "LSTM", torch.float64, num_layers=2, dropout=0.9)
    ours.eval(), ref.eval()
    x, states = make_inputs(torch, "LSTM", torch.float64, 2, False, False, True)
    got = forward_backward(torch, ours, x, states, upstream_dtype=torch.float64)
    want = forward_backward(torch, ref, x, states, upstream_dtype=torch.float64)
    assert_matches(got, want, torch.float64, "LSTM", 2, False)
