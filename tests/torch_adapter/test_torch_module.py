"""rnnkit.torch as a torch.nn module: convert(), state_dict interchange,
gradcheck, optimizer steps, torch's errors, fallbacks, and the training
example. Output/gradient parity over the full grid is in test_torch_parity.py.
"""

import copy
import io
import os
import pathlib
import runpy
import subprocess
import sys
import warnings

import numpy as np
import pytest

from helpers import assert_close

T, B, I, H = 4, 3, 3, 4
REPO = pathlib.Path(__file__).resolve().parents[2]


def close64(actual, ref, name, acc_len=I + H, steps=T):
    """the helpers' float64 bound on two float64 tensors."""
    assert_close(actual.detach().numpy(), ref.detach().numpy(), np.float64, acc_len, steps, name=name)


def test_import_rnnkit_does_not_import_torch():
    code = "import sys, rnnkit, rnnkit.layers; assert 'torch' not in sys.modules, 'torch was imported'"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


# ---- the module itself ----------------------------------------------------------

@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_same_module_surface_as_torch(torch, rt, mode):
    kw = dict(num_layers=2, bias=False, batch_first=True, dropout=0.25, bidirectional=True)
    ours, theirs = getattr(rt, mode)(I, H, **kw), getattr(torch.nn, mode)(I, H, **kw)
    assert isinstance(ours, getattr(torch.nn, mode))
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [(n, p.shape) for n, p in ours.named_parameters()] == \
           [(n, p.shape) for n, p in theirs.named_parameters()]
    bound = 1 / np.sqrt(H)
    assert all(p.abs().max() <= bound for p in ours.parameters())


def test_gru_linear_before_reset_repr(rt):
    assert repr(rt.GRU(I, H, linear_before_reset=False)) == f"GRU({I}, {H}, linear_before_reset=False)"
    assert rt.GRU(I, H).linear_before_reset is True


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_state_dict_both_ways(torch, rt, mode):
    kw = dict(num_layers=2, bidirectional=True, dtype=torch.float64)
    ours, theirs = getattr(rt, mode)(I, H, **kw), getattr(torch.nn, mode)(I, H, **kw)
    x = torch.randn(T, B, I, dtype=torch.float64)
    # torch -> rnnkit, then rnnkit -> a fresh torch module: all three agree.
    ours.load_state_dict(theirs.state_dict())
    back = getattr(torch.nn, mode)(I, H, **kw)
    back.load_state_dict(ours.state_dict())
    with torch.no_grad():
        want = theirs(x)[0]
        close64(ours(x)[0], want, "rnnkit y")
        close64(back(x)[0], want, "round-trip y")
    for (name, a), b in zip(theirs.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), name


def test_pickle_and_deepcopy_after_use(torch, rt):
    # The packed-weight cache is not part of the module's state. A copy stays
    # an rnnkit module; a pickle loads as the torch.nn module it stands for.
    m = rt.LSTM(I, H, dtype=torch.float64)
    x = torch.randn(T, B, I, dtype=torch.float64)
    with torch.no_grad():
        want = m(x)[0]
        buf = io.BytesIO()
        torch.save(m, buf)
        buf.seek(0)
        for other, cls in ((copy.deepcopy(m), rt.LSTM), (torch.load(buf, weights_only=False), torch.nn.LSTM)):
            assert type(other) is cls
            close64(other(x)[0], want, cls.__module__)


# ---- convert() -----------------------------------------------------------------------

def nested_model(torch):
    """LSTMs/GRUs at several depths, one held twice, plus two convert() must leave alone."""
    nn = torch.nn

    class MyLSTM(nn.LSTM):
        pass

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(I, H, num_layers=2, bidirectional=True)
            self.blocks = nn.Sequential(nn.Linear(2 * H, I), nn.ModuleList([nn.GRU(I, H, batch_first=True)]))
            self.shared = self.lstm
            self.custom = MyLSTM(I, H)
            self.projected = nn.LSTM(I, H, proj_size=2)

        def forward(self, x):
            y, _ = self.lstm(x)
            z, _ = self.blocks[1][0](self.blocks[0](y).transpose(0, 1))
            return z.sum() + self.custom(x)[0].sum() + self.projected(x)[0].sum(), y

    torch.manual_seed(0)
    return Model().double()


def test_convert_nested_model(torch, rt):
    model = nested_model(torch)
    model.blocks.eval()
    params = dict(model.named_parameters())
    original = copy.deepcopy(model)
    x = torch.randn(T, B, I, dtype=torch.float64)

    assert rt.convert(model) is model
    assert type(model.lstm) is rt.LSTM and model.shared is model.lstm
    assert type(model.blocks[1][0]) is rt.GRU
    # Left alone: a subclass that may override forward, and a projection LSTM.
    assert type(model.custom).__name__ == "MyLSTM" and type(model.projected) is torch.nn.LSTM
    # The very Parameter objects, so an optimizer built before convert() keeps working.
    for name, p in model.named_parameters():
        assert p is params[name], name
    assert model.lstm.training and not model.blocks[1][0].training
    with torch.no_grad():
        got, want = model(x), original(x)
    close64(got[1], want[1], "lstm output", acc_len=2 * H + H, steps=2 * T)
    close64(got[0], want[0], "model output", acc_len=T * B * H, steps=3 * T)


def test_convert_the_model_itself(torch, rt):
    m = torch.nn.GRU(I, H, num_layers=2, dropout=0.5, dtype=torch.float64).eval()
    new = rt.convert(m)
    assert type(new) is rt.GRU and type(m) is torch.nn.GRU
    assert new.dropout == 0.5 and not new.training and new.weight_hh_l1 is m.weight_hh_l1
    assert new.weight_ih_l0.dtype == torch.float64
    x = torch.randn(T, B, I, dtype=torch.float64)
    with torch.no_grad():
        close64(new(x)[0], m(x)[0], "y", acc_len=2 * H, steps=2 * T)
    assert rt.convert(new) is new


# ---- autograd --------------------------------------------------------------------------

GRADCHECK = [("LSTM", 1, False, False), ("LSTM", 2, True, False), ("GRU", 1, False, False),
             ("GRU", 2, True, False), ("LSTM", 2, True, True), ("GRU", 2, True, True)]


@pytest.mark.parametrize("mode,num_layers,bidirectional,packed", GRADCHECK)
def test_gradcheck(torch, rt, mode, num_layers, bidirectional, packed):
    m = getattr(rt, mode)(I, H, num_layers=num_layers, bidirectional=bidirectional, dtype=torch.float64)
    gradcheck_module(torch, m, packed)


def test_gradcheck_gru_reset_before_linear(torch, rt):
    m = rt.GRU(I, H, num_layers=2, bidirectional=True, linear_before_reset=False, dtype=torch.float64)
    gradcheck_module(torch, m, packed=False)


def gradcheck_module(torch, m, packed):
    """torch.autograd.gradcheck over x, the states and every parameter of `m`."""
    names = [n for n, _ in m.named_parameters()]
    nstates = 2 if m.mode == "LSTM" else 1
    L = m.num_layers * (2 if m.bidirectional else 1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(T, B, I, dtype=torch.float64, generator=g)
    states = [torch.randn(L, B, H, dtype=torch.float64, generator=g) for _ in range(nstates)]
    lengths = [2, T, 1]

    def f(x, *tensors):
        hx = tuple(tensors[:nstates]) if m.mode == "LSTM" else tensors[0]
        inp = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False) if packed else x
        y, h = torch.func.functional_call(m, dict(zip(names, tensors[nstates:])), (inp, hx))
        return (y.data if packed else y,) + (tuple(h) if m.mode == "LSTM" else (h,))

    inputs = [t.requires_grad_() for t in [x, *states, *(p.detach().clone() for p in m.parameters())]]
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-6)


def test_gru_reset_before_linear_matches_reference(torch, rt):
    # torch has no such GRU: the oracle is rnnkit.reference (float64), one layer.
    from rnnkit import reference
    m = rt.GRU(I, H, linear_before_reset=False, dtype=torch.float64)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, B, H, dtype=torch.float64, requires_grad=True)
    y, h_n = m(x, h0)
    dy, dh = torch.randn_like(y), torch.randn_like(h_n)
    torch.autograd.backward([y, h_n], [dy, dh])
    w = [p.detach().numpy() for p in (m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0, m.bias_hh_l0)]
    ry, rh, cache = reference.gru_forward(x.detach().numpy(), *w, h0[0].detach().numpy(),
                                          linear_before_reset=False)
    rdx, rdh0, *rdw = reference.gru_backward(dy.numpy(), dh[0].numpy(), cache)
    for name, got, want, acc in [("y", y, ry, I + H), ("h_n", h_n[0], rh, I + H), ("dx", x.grad, rdx, 3 * H),
                                 ("dh0", h0.grad[0], rdh0, 3 * H)]:
        assert_close(got.detach().numpy(), want, np.float64, acc, T, name=name)
    for name, p, want in zip(("dweight_ih", "dweight_hh", "dbias_ih", "dbias_hh"), m.parameters(), rdw):
        assert_close(p.grad.numpy(), want, np.float64, T * B, T, name=name)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_input_changed_in_place_before_backward_raises_like_torch(torch, rt, mode):
    # rnnkit's context refers to the input, as torch's saved tensors do:
    # an in-place change between forward and backward is refused alike.
    raised = []
    for m in (getattr(torch.nn, mode)(I, H), getattr(rt, mode)(I, H)):
        x = torch.randn(T, B, I, requires_grad=True) * 1.0
        y = m(x)[0]
        x.add_(1.0)
        with pytest.raises(RuntimeError, match="modified by an inplace operation") as info:
            y.sum().backward()
        raised.append(info.value)
    assert type(raised[1]) is type(raised[0])


def test_no_grad_and_eval(torch, rt):
    m = rt.LSTM(I, H, num_layers=2, dropout=0.5, dtype=torch.float64)
    ref = torch.nn.LSTM(I, H, num_layers=2, dropout=0.5, dtype=torch.float64)
    ref.load_state_dict(m.state_dict())
    m.eval(), ref.eval()
    x = torch.randn(T, B, I, dtype=torch.float64)
    with torch.inference_mode():
        got, want = m(x), ref(x)
    assert not got[0].requires_grad
    close64(got[0], want[0], "y", acc_len=2 * H, steps=2 * T)


# ---- training: weights change, packed copies follow ---------------------------------------

@pytest.mark.parametrize("opt_name,opt_kw", [("SGD", dict(lr=0.1, momentum=0.9)),
                                             ("Adam", dict(lr=0.05)),
                                             ("Adam", dict(lr=0.05, fused=True))],
                         ids=["sgd", "adam", "adam-fused"])
def test_optimizer_steps_track_torch(torch, rt, opt_name, opt_kw):
    ours = rt.GRU(I, H, num_layers=2, dtype=torch.float64)
    ref = torch.nn.GRU(I, H, num_layers=2, dtype=torch.float64)
    ref.load_state_dict(ours.state_dict())
    opts = [getattr(torch.optim, opt_name)(m.parameters(), **opt_kw) for m in (ours, ref)]
    x = torch.randn(T, B, I, dtype=torch.float64)
    target = torch.randn(T, B, H, dtype=torch.float64)
    for step in range(4):
        for m, opt in zip((ours, ref), opts):
            loss = (m(x)[0] - target).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        # An inference call right after a step must see the stepped weights (fused
        # optimizers change them without bumping their versions).
        with torch.no_grad():
            close64(ours(x)[0], ref(x)[0], f"y after step {step}", acc_len=2 * H, steps=2 * T)
    for (name, a), b in zip(ours.named_parameters(), ref.parameters()):
        close64(a, b, name, acc_len=T * B, steps=8 * T)


def test_weight_writes_autograd_cannot_see(torch, rt):
    # Writes through .data skip _version; both kinds of call see them anyway.
    m = rt.LSTM(I, H, dtype=torch.float64)
    ref = torch.nn.LSTM(I, H, dtype=torch.float64)
    x = torch.randn(T, B, I, dtype=torch.float64)
    with torch.no_grad():
        m(x)
    for p in m.parameters():
        p.data.mul_(0.5)
    ref.load_state_dict(m.state_dict())
    close64(m(x)[0], ref(x)[0], "training call after .data write")
    for p in m.parameters():
        p.data.mul_(0.5)
    ref.load_state_dict(m.state_dict())
    with torch.no_grad():
        close64(m(x)[0], ref(x)[0], "inference call after .data write")


# ---- errors and fallbacks ---------------------------------------------------------------------

def bad_calls(torch):
    x = torch.randn(T, B, I)
    z = torch.zeros
    return {
        "input size": lambda m, s: m(torch.randn(T, B, I + 1)),
        "4-D input": lambda m, s: m(x[..., None]),
        "1-D input": lambda m, s: m(torch.randn(I)),
        "input dtype": lambda m, s: m(x.double()),
        "hx batch": lambda m, s: m(x, s(z(1, B + 1, H))),
        "hx layers": lambda m, s: m(x, s(z(2, B, H))),
        "hx 2-D for batched input": lambda m, s: m(x, s(z(B, H))),
        "hx 3-D for unbatched input": lambda m, s: m(x[:, 0], s(z(1, 1, H))),
    }


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_bad_input_raises_like_torch(torch, rt, mode):
    states = (lambda h: (h, h.clone())) if mode == "LSTM" else (lambda h: h)
    for name, call in bad_calls(torch).items():
        raised = []
        for m in (getattr(torch.nn, mode)(I, H), getattr(rt, mode)(I, H)):
            with pytest.raises(Exception) as info:
                call(m, states)
            raised.append(info.value)
        assert type(raised[1]) is type(raised[0]), \
            f"{name}: torch raised {type(raised[0]).__name__}, rnnkit.torch {type(raised[1]).__name__}"
        assert str(raised[1]) == str(raised[0]), f"{name}: {raised[1]} != {raised[0]}"


def test_clear_errors_where_torch_has_none(torch, rt):
    x = torch.randn(T, B, I)
    with pytest.raises(TypeError, match="hx must be a tuple"):
        rt.LSTM(I, H)(x, torch.zeros(1, B, H))
    with pytest.raises(RuntimeError, match=r"hx\[1\]: dtype torch.float64"):
        rt.LSTM(I, H)(x, (torch.zeros(1, B, H), torch.zeros(1, B, H, dtype=torch.float64)))
    with pytest.raises(TypeError, match="input must be a Tensor or a PackedSequence"):
        rt.GRU(I, H)(x.tolist())


def test_fallbacks_warn_once_and_match_torch(torch, rt):
    x = torch.randn(T, B, I)
    # (bfloat16 modules run rnnkit's bfloat16 kernels, training included:
    # tests/torch_adapter/test_reduced_precision.py)
    cases = [(rt.LSTM(I, H, proj_size=2), torch.nn.LSTM(I, H, proj_size=2), x, "proj_size"),
             (rt.GRU(I, H).half(), torch.nn.GRU(I, H).half(), x.half(), "float16")]
    for ours, ref, inp, reason in cases:
        ref.load_state_dict(ours.state_dict())
        with pytest.warns(RuntimeWarning, match=reason):
            got = ours(inp)[0]
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # a second call stays silent
            ours(inp)
        assert torch.equal(got, ref(inp)[0])


def test_reset_before_linear_falls_back_to_torch_operations(torch, rt):
    # torch has no such GRU: other dtypes run the same math in torch operations.
    m = rt.GRU(I, H, linear_before_reset=False, dtype=torch.float64)
    x = torch.randn(T, B, I, dtype=torch.float64)
    with torch.no_grad():
        want = m(x)[0]
        # (bfloat16 runs rnnkit's bfloat16 kernels: tests/torch_adapter/test_reduced_precision.py)
        half = copy.deepcopy(m).half()
        with pytest.warns(RuntimeWarning, match="float16"):
            got = half(x.half())[0]
    assert got.dtype == torch.float16
    assert (got.double() - want).abs().max() < 0.01


def test_empty_batch_like_torch(torch, rt):
    m, ref = rt.LSTM(I, H), torch.nn.LSTM(I, H)
    got, want = m(torch.zeros(T, 0, I)), ref(torch.zeros(T, 0, I))
    assert got[0].shape == want[0].shape and got[1][0].shape == want[1][0].shape


# ---- the training example -------------------------------------------------------------------

def test_training_example_curves_agree(torch, rt):
    # A tiny float64 run: both curves come from the same weights, batches and
    # dropout masks, so they agree to float64 precision grown over the steps.
    example = runpy.run_path(str(REPO / "examples" / "char_lm.py"))
    curves = example["main"](["--quiet", "--dtype", "float64", "--epochs", "2", "--max-chars", "3000",
                              "--hidden", "12", "--embed", "6", "--seq-len", "12", "--batch", "8",
                              "--sample", "20"])
    a, b = curves["torch.nn"], curves["rnnkit.torch"]
    assert a["rnn"] is torch.nn.LSTM and b["rnn"] is rt.LSTM
    for key in ("train_loss", "val_loss"):
        assert len(a[key]) == len(b[key]) == 2
        np.testing.assert_allclose(b[key], a[key], rtol=1e-9, err_msg=key)
    assert a["train_loss"][1] < a["train_loss"][0], "the model did not learn"


def test_training_steps_pack_into_the_same_weights(torch, rt):
    # Each training call packs the stepped weights into the last packing's
    # memory (PackedWeights.update); the optimizer test above checks values.
    m = rt.LSTM(I, H, num_layers=2, bidirectional=True, dtype=torch.float64)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    x = torch.randn(T, B, I, dtype=torch.float64)
    packs = []
    for _ in range(3):
        loss = m(x)[0].square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        packs.append(m._rnnkit_cache.packed)
    assert packs[0] is packs[1] is packs[2]
    assert len(packs[0]) == 4
