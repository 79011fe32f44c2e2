"""rnnkit.torch where users leave the plain eager call: gradients of
gradients, weights changed behind autograd's back, tracing / scripting /
export / fake tensors / torch.func / torch.compile, checkpoints, autocast,
argument checks, and the torch.nn utilities that rewrite parameters.

Every case compares with torch.nn's own LSTM/GRU on the same weights
(float64 where values are compared), or with rnnkit's eager result where
torch has no counterpart (GRU(linear_before_reset=False)).
"""

import copy
import io
import os
import pickle
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from helpers import require_optional

T, B, I, H = 5, 3, 4, 6
MODES = ["LSTM", "GRU"]


def pair(torch, rt, mode, dtype=None, **kw):
    """(rnnkit module, torch.nn module with the same weights)."""
    dtype = dtype or torch.float64
    torch.manual_seed(0)
    ref = getattr(torch.nn, mode)(I, H, dtype=dtype, **kw)
    ours = getattr(rt, mode)(I, H, dtype=dtype, **kw)
    ours.load_state_dict(ref.state_dict())
    return ours, ref


def hx_for(torch, mode, layers, dtype=None, batch=B, requires_grad=False):
    dtype = dtype or torch.float64
    h = torch.randn(layers, batch, H, dtype=dtype, requires_grad=requires_grad)
    if mode == "LSTM":
        return h, torch.randn(layers, batch, H, dtype=dtype, requires_grad=requires_grad)
    return h


def states_of(out):
    """Every output tensor of an LSTM/GRU call, flattened."""
    y, h = out
    y = y.data if hasattr(y, "batch_sizes") else y
    return [y, *h] if isinstance(h, tuple) else [y, h]


def assert_all_close(got, want, rtol=1e-9, atol=1e-11, what=""):
    assert len(got) == len(want), what
    for k, (a, b) in enumerate(zip(got, want)):
        assert a.shape == b.shape and a.dtype == b.dtype, f"{what}[{k}]: {a.shape} {a.dtype} vs {b.shape} {b.dtype}"
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=rtol, atol=atol,
                                   err_msg=f"{what}[{k}]")


# ---- 3. gradients of gradients ----------------------------------------------------------

def gradient_penalty_grads(torch, m, x, hx, packed_lengths=None):
    """d/dparams of |d loss / d (x, hx)|^2 (a WGAN-GP style penalty) plus the first gradient."""
    inp = x if packed_lengths is None else torch.nn.utils.rnn.pack_padded_sequence(
        x, packed_lengths, batch_first=m.batch_first, enforce_sorted=False)
    outs = states_of(m(inp, hx))
    loss = sum((o * torch.linspace(-1, 1, o.numel(), dtype=o.dtype).reshape(o.shape)).sin().sum() for o in outs)
    hxs = list(hx) if isinstance(hx, tuple) else [hx]
    first = torch.autograd.grad(loss, [x, *hxs], create_graph=True)
    penalty = sum(g.square().sum() for g in first)
    second = torch.autograd.grad(penalty, [x, *hxs, *m.parameters()])
    return [g.detach() for g in first], list(second)


CONFIGS = [dict(), dict(num_layers=2, bidirectional=True), dict(num_layers=2, batch_first=True),
           dict(bias=False)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kw", CONFIGS, ids=["1layer", "2layer-bidir", "batch-first", "no-bias"])
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
def test_gradient_penalty_matches_torch(torch, rt, mode, kw, packed):
    ours, ref = pair(torch, rt, mode, **kw)
    layers = kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1)
    shape = (B, T, I) if kw.get("batch_first") else (T, B, I)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    hx = hx_for(torch, mode, layers, requires_grad=True)
    lengths = [T, 2, 4] if packed else None
    got_first, got = gradient_penalty_grads(torch, ours, x, hx, lengths)
    want_first, want = gradient_penalty_grads(torch, ref, x, hx, lengths)
    assert_all_close(got_first, want_first, what="first gradient")
    assert_all_close(got, want, rtol=1e-8, atol=1e-10, what="gradient of the penalty")
    assert max(g.abs().max() for g in want) > 1e-3  # the check has something to see


@pytest.mark.parametrize("mode", MODES)
def test_hessian_vector_product_matches_torch(torch, rt, mode):
    ours, ref = pair(torch, rt, mode, num_layers=2)
    x = torch.randn(T, B, I, dtype=torch.float64)
    results = []
    for m in (ours, ref):
        params = list(m.parameters())
        loss = m(x)[0].tanh().square().sum()
        grads = torch.autograd.grad(loss, params, create_graph=True)
        torch.manual_seed(1)
        vs = [torch.randn_like(p) for p in params]
        hv = torch.autograd.grad(sum((g * v).sum() for g, v in zip(grads, vs)), params)
        results.append(hv)
    assert_all_close(results[0], results[1], rtol=1e-8, atol=1e-10, what="Hessian-vector product")


@pytest.mark.parametrize("mode", MODES)
def test_double_backward_with_dropout_matches_torch_at_the_same_seed(torch, rt, mode):
    # The recomputation in backward must reuse the forward's dropout masks.
    ours, ref = pair(torch, rt, mode, num_layers=3, dropout=0.4)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    results = []
    for m in (ours, ref):
        torch.manual_seed(7)
        loss = m(x)[0].sin().sum()
        (gx,) = torch.autograd.grad(loss, x, create_graph=True)
        results.append(torch.autograd.grad(gx.square().sum(), list(m.parameters())))
    assert_all_close(results[0], results[1], rtol=1e-8, atol=1e-10, what="penalty gradient under dropout")


@pytest.mark.parametrize("mode", MODES)
def test_backward_twice_through_a_retained_graph(torch, rt, mode):
    ours, ref = pair(torch, rt, mode, num_layers=2, dropout=0.3)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    results = []
    for m in (ours, ref):
        torch.manual_seed(5)
        loss = m(x)[0].sin().sum()
        first = torch.autograd.grad(loss, [x, *m.parameters()], retain_graph=True)
        second = torch.autograd.grad(loss, [x, *m.parameters()])
        assert not any(g.requires_grad for g in second)
        results.append(list(first) + list(second))
    assert_all_close(results[0], results[1], rtol=1e-8, atol=1e-10, what="two backwards")


def test_kernel_context_freed_with_the_saved_tensors(torch, rt):
    # Like torch's saved buffers: kept through retain_graph, freed by the
    # last backward, so the next training call's packing and workspace
    # need not wait for the old graph's outputs to die.
    m = rt.GRU(I, H)
    x = torch.randn(T, B, I, requires_grad=True)
    y = m(x)[0]
    alive = y.grad_fn.rnn
    y.sum().backward(retain_graph=True)
    assert alive() is not None
    y.sum().backward()
    assert alive() is None


@pytest.mark.parametrize("cfg", [("LSTM", True, True), ("GRU", True, True), ("GRU", False, True),
                                 ("LSTM", False, False), ("GRU", False, False)],
                         ids=["lstm-packed", "gru-packed", "gru-no-lbr-packed", "lstm", "gru-no-lbr"])
def test_gradgradcheck(torch, rt, cfg):
    mode, packed, lbr_or_packed = cfg[0], cfg[2], cfg[1]
    kw = dict(num_layers=2, bidirectional=True, dtype=torch.float64)
    if mode == "GRU":
        kw["linear_before_reset"] = lbr_or_packed if packed else False
    m = getattr(rt, mode)(2, 3, **kw)
    names = [n for n, _ in m.named_parameters()]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 2, dtype=torch.float64, generator=g)
    h0 = torch.randn(4, 2, 3, dtype=torch.float64, generator=g)
    lengths = [3, 2]

    def f(x, h0, *params):
        inp = torch.nn.utils.rnn.pack_padded_sequence(x, lengths) if packed else x
        hx = (h0, h0.cos()) if mode == "LSTM" else h0
        y, h = torch.func.functional_call(m, dict(zip(names, params)), (inp, hx))
        return (y.data if packed else y,) + (tuple(h) if mode == "LSTM" else (h,))

    # functional_call is not a transform: the kernels run the first derivative.
    inputs = [t.requires_grad_() for t in [x, h0, *(p.detach().clone() for p in m.parameters())]]
    assert torch.autograd.gradgradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


def test_reset_before_linear_penalty_matches_reference_formula(torch, rt):
    # No torch counterpart: compare the second derivative with a finite
    # difference of the (kernel-computed, float64) first derivative.
    m = rt.GRU(I, H, linear_before_reset=False, dtype=torch.float64)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)

    def first_grad_norm():
        (gx,) = torch.autograd.grad(m(x)[0].sin().sum(), x, create_graph=True)
        return gx.square().sum()

    (dw,) = torch.autograd.grad(first_grad_norm(), [m.weight_hh_l0])
    assert dw.abs().max() > 1e-3
    eps = 1e-6
    for idx in [(0, 0), (H, 1), (2 * H + 1, 2), (3 * H - 1, H - 1)]:
        values = []
        for delta in (eps, -2 * eps, eps):
            with torch.no_grad():
                m.weight_hh_l0[idx] += delta
            values.append(first_grad_norm().item())
        fd = (values[0] - values[1]) / (2 * eps)
        assert abs(dw[idx].item() - fd) <= 1e-6 * max(1.0, abs(fd)), (idx, dw[idx].item(), fd)


# ---- 4. weights changed where autograd cannot see ------------------------------------------

def weight_writes(torch):
    """Ways users change weights in place, each given a module and a torch.nn twin to write alike."""
    def data_mul(m):
        for p in m.parameters():
            p.data.mul_(0.5)

    def data_copy(m):
        torch.manual_seed(3)
        for p in m.parameters():
            p.data.copy_(torch.randn_like(p))

    def numpy_view(m):
        for p in m.parameters():
            p.detach().numpy()[...] *= -1.0

    def no_grad_ema(m):
        with torch.no_grad():
            for p in m.parameters():
                p.mul_(0.9).add_(torch.ones_like(p), alpha=0.1)

    def load_state(m):
        torch.manual_seed(4)
        m.load_state_dict({k: torch.randn_like(v) for k, v in m.state_dict().items()})

    def data_assign(m):
        for p in m.parameters():
            p.data = p.data * 2.0

    return {"data-mul": data_mul, "data-copy": data_copy, "numpy-view": numpy_view, "no-grad-ema": no_grad_ema,
            "load-state-dict": load_state, "data-assign": data_assign}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("how", ["data-mul", "data-copy", "numpy-view", "no-grad-ema", "load-state-dict",
                                 "data-assign"])
@pytest.mark.parametrize("grad", [False, True], ids=["inference", "training"])
def test_next_call_sees_changed_weights(torch, rt, mode, how, grad):
    ours, ref = pair(torch, rt, mode, num_layers=2)
    x = torch.randn(T, B, I, dtype=torch.float64)
    with torch.no_grad():
        ours(x)  # packs the weights
    write = weight_writes(torch)[how]
    for _ in range(2):
        write(ours)
        ref.load_state_dict(ours.state_dict())
        with torch.set_grad_enabled(grad):
            assert_all_close(states_of(ours(x)), states_of(ref(x)), what=f"after {how}")


@pytest.mark.parametrize("opt", ["adam-fused", "adam-foreach", "sgd-foreach", "adamw"])
def test_optimizer_steps_then_inference(torch, rt, opt):
    ours, ref = pair(torch, rt, "LSTM", num_layers=2)
    name, variant = opt.split("-") if "-" in opt else (opt, None)
    cls = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "adamw": torch.optim.AdamW}[name]
    kw = {"fused": True} if variant == "fused" else ({"foreach": True} if variant == "foreach" else {})
    opts = [cls(m.parameters(), lr=0.05, **kw) for m in (ours, ref)]
    x = torch.randn(T, B, I, dtype=torch.float64)
    for _ in range(3):
        for m, o in zip((ours, ref), opts):
            o.zero_grad()
            m(x)[0].square().mean().backward()
            o.step()
        with torch.no_grad():
            assert_all_close(states_of(ours(x)), states_of(ref(x)), rtol=1e-8, atol=1e-10, what=opt)


def test_unchanged_weights_are_not_packed_again(torch, rt, monkeypatch):
    # Neither inference nor training calls pack while the weights stay the
    # same; a change (here an optimizer step) packs once.
    from rnnkit import layers
    packs = []
    real = layers.pack_layer_weights
    monkeypatch.setattr(layers, "pack_layer_weights", lambda *a, **k: packs.append(1) or real(*a, **k))
    m = rt.LSTM(I, H, num_layers=2)
    x = torch.randn(T, B, I)
    with torch.no_grad():
        m(x)
        m(x)
    assert len(packs) == 1
    for _ in range(3):
        m(x)[0].sum().backward()  # gradient accumulation: no step, no change
    assert len(packs) == 1
    torch.optim.SGD(m.parameters(), lr=0.1).step()
    m(x)[0].sum().backward()
    m(x)
    assert len(packs) == 2


def test_first_call_in_inference_mode_then_changed_weights(torch, rt):
    ours, ref = pair(torch, rt, "LSTM")
    x = torch.randn(T, B, I, dtype=torch.float64)
    with torch.inference_mode():
        ours(x)
    for p in ours.parameters():
        p.data.mul_(0.5)
    ref.load_state_dict(ours.state_dict())
    with torch.no_grad():
        assert_all_close(states_of(ours(x)), states_of(ref(x)), what="no_grad after inference_mode")
    assert_all_close(states_of(ours(x)), states_of(ref(x)), what="training call")


def test_nan_and_signed_zero_weights_are_changes(torch, rt):
    # The check compares bytes: -0.0 vs 0.0 and NaN payloads are seen as they are.
    m, ref = pair(torch, rt, "GRU")
    x = torch.randn(T, B, I, dtype=torch.float64)
    with torch.no_grad():
        m(x)
        m.bias_hh_l0.data[0] = float("nan")
        ref.load_state_dict(m.state_dict())
        assert torch.isnan(m(x)[0]).any() and torch.isnan(ref(x)[0]).any()
        m.bias_hh_l0.data[0] = 0.25
        ref.load_state_dict(m.state_dict())
        assert_all_close(states_of(m(x)), states_of(ref(x)), what="after NaN -> value")


@pytest.mark.parametrize("mode", MODES)
def test_trace_does_not_freeze_weights(torch, rt, mode):
    ours, ref = pair(torch, rt, mode)
    x = torch.randn(T, B, I, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(ours, (x,))
    assert "PythonOp" not in str(traced.inlined_graph)
    assert_all_close(states_of(traced(x)), states_of(ref(x)), what="traced")
    for p in ours.parameters():
        p.data.mul_(-0.5)
    ref.load_state_dict(ours.state_dict())
    assert_all_close(states_of(traced(x)), states_of(ref(x)), what="traced after .data write")


# ---- 5. graph capture, export, transforms -------------------------------------------------

class Model:
    """A small model built from torch.nn modules, converted in the tests."""

    @staticmethod
    def build(torch, batch_first=False):
        nn = torch.nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.lstm = nn.LSTM(I, H, num_layers=2, bidirectional=True, batch_first=batch_first)
                self.gru = nn.GRU(2 * H, H, batch_first=batch_first)
                self.head = nn.Linear(H, 2)

            def forward(self, x):
                y, _ = self.lstm(x)
                z, h = self.gru(y)
                return self.head(z), h

        torch.manual_seed(0)
        return Net().eval()


def test_jit_script_of_converted_model(torch, rt):
    model = Model.build(torch)
    x = torch.randn(T, B, I)
    with torch.no_grad():
        want = model(x)
        rt.convert(model)
        scripted = torch.jit.script(model)
        got = scripted(x)
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    buf.seek(0)
    loaded = torch.jit.load(buf)
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    with torch.no_grad():
        assert torch.equal(loaded(x)[0], want[0])


def test_jit_script_reset_before_linear_is_a_clear_error(torch, rt):
    with pytest.raises(NotImplementedError, match="linear_before_reset=False"):
        torch.jit.script(rt.GRU(I, H, linear_before_reset=False))


@pytest.mark.parametrize("batch_first", [False, True])
def test_onnx_export_runs_in_onnxruntime(torch, rt, tmp_path, batch_first):
    ort = require_optional("onnxruntime")
    model = rt.convert(Model.build(torch, batch_first))
    x = torch.randn(B, T, I) if batch_first else torch.randn(T, B, I)
    path = str(tmp_path / "model.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), path, dynamo=False, input_names=["x"])
    with torch.no_grad():
        want = model(x)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x.numpy()})
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-5, atol=1e-5)


def test_onnx_export_reset_before_linear_gru(torch, rt, tmp_path):
    ort = require_optional("onnxruntime")
    m = rt.GRU(I, H, linear_before_reset=False, num_layers=2).eval()
    x = torch.randn(T, B, I)
    path = str(tmp_path / "gru.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (x,), path, dynamo=False, input_names=["x"])
    with torch.no_grad():
        want = m(x)
    got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})
    np.testing.assert_allclose(got[0], want[0].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[1], want[1].numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("lbr", [True, False])
def test_onnx_dynamo_export(torch, rt, lbr):
    # torch.onnx.export's default exporter (dynamo=True) needs onnxscript.
    require_optional("onnxscript")
    ort = require_optional("onnxruntime")
    model = rt.convert(Model.build(torch))
    if not lbr:
        model.gru = rt.GRU(2 * H, H, linear_before_reset=False).eval()
    x = torch.randn(T, B, I)
    prog = torch.onnx.export(model, (x,), dynamo=True)
    buf = prog.model_proto.SerializeToString()
    sess = ort.InferenceSession(buf, providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        want = model(x)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("lbr", [True, False])
def test_torch_export(torch, rt, lbr):
    nn_model = Model.build(torch)
    model = rt.convert(nn_model)
    if not lbr:
        model.gru = rt.GRU(2 * H, H, linear_before_reset=False).eval()
    x = torch.randn(T, B, I)
    ep = torch.export.export(model, (x,))
    with torch.no_grad():
        want = model(x)
    got = ep.module()(x)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_fake_tensors(torch, rt, mode):
    from torch._subclasses.fake_tensor import FakeTensorMode
    ours, ref = pair(torch, rt, mode, dtype=torch.float32, num_layers=2)
    with FakeTensorMode(allow_non_fake_inputs=True) as fake:
        x = fake.from_tensor(torch.randn(T, B, I))
        got, want = states_of(ours(x)), states_of(ref(x))
    assert [(t.shape, t.dtype) for t in got] == [(t.shape, t.dtype) for t in want]


@pytest.mark.parametrize("mode", MODES)
def test_vmap_over_unbatched_inputs(torch, rt, mode):
    # torch.nn's LSTM/GRU have no batching rule (vmap raises); rnnkit's run
    # torch operations there, and give torch.nn's per-sample results.
    ours, ref = pair(torch, rt, mode, num_layers=2, bidirectional=True)
    xs = torch.randn(B, T, I, dtype=torch.float64)
    got = torch.func.vmap(lambda x: ours(x)[0])(xs)
    want = torch.stack([ref(x)[0] for x in xs])
    assert_all_close([got], [want], what="vmap")


def test_per_sample_gradients_with_vmap_of_grad(torch, rt):
    ours, ref = pair(torch, rt, "LSTM")
    params = {k: v.detach() for k, v in ours.named_parameters()}
    xs = torch.randn(B, T, I, dtype=torch.float64)

    def loss(p, x):
        return torch.func.functional_call(ours, p, (x,))[0].square().sum()

    got = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))(params, xs)
    for b in range(B):
        want = torch.autograd.grad(ref(xs[b])[0].square().sum(), list(ref.parameters()))
        assert_all_close([got[k][b] for k in params], list(want), what=f"sample {b}")


@pytest.mark.parametrize("lbr", [True, False])
def test_func_grad_and_jacrev(torch, rt, lbr):
    m = rt.GRU(I, H, linear_before_reset=lbr, dtype=torch.float64)
    params = {k: v.detach() for k, v in m.named_parameters()}
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)

    def loss(p, x):
        return torch.func.functional_call(m, p, (x,))[0].sin().sum()

    g = torch.func.grad(loss)(params, x)
    want = torch.autograd.grad(loss(dict(m.named_parameters()), x), list(m.parameters()))
    assert_all_close([g[k] for k in params], list(want), what="torch.func.grad")
    jx = torch.func.jacrev(lambda x: m(x)[1].sum(0).sum(0))(x.detach())
    eye = [torch.autograd.grad(m(x)[1][0, :, j].sum(), x)[0] for j in range(H)]
    assert_all_close([jx], [torch.stack(eye)], what="jacrev")


@pytest.mark.parametrize("allow_rnn", [False, True])
def test_torch_compile(torch, rt, allow_rnn):
    # As for torch.nn's RNNs: a graph break around the module by default,
    # traced (torch.nn's forward) with allow_rnn.
    import torch._dynamo
    model = rt.convert(Model.build(torch))
    x = torch.randn(T, B, I, requires_grad=True)
    torch._dynamo.reset()
    with torch._dynamo.config.patch(allow_rnn=allow_rnn):
        compiled = torch.compile(model, backend="aot_eager", fullgraph=allow_rnn)
        got = compiled(x)
    want = model(x)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    gx = torch.autograd.grad(got[0].sum(), x)[0]
    torch.testing.assert_close(gx, torch.autograd.grad(want[0].sum(), x)[0], rtol=1e-5, atol=1e-6)


def test_forward_mode_ad(torch, rt):
    import torch.autograd.forward_ad as fwAD
    ours, ref = pair(torch, rt, "LSTM")
    x, t = torch.randn(T, B, I, dtype=torch.float64), torch.randn(T, B, I, dtype=torch.float64)
    tangents = []
    for m in (ours, ref):
        with fwAD.dual_level():
            tangents.append(fwAD.unpack_dual(m(fwAD.make_dual(x, t))[0]).tangent)
    assert_all_close(tangents[:1], tangents[1:], what="jvp")


# ---- 6. checkpoints --------------------------------------------------------------------

BLOCK_RNNKIT = textwrap.dedent("""
    import sys
    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name == "rnnkit" or name.startswith("rnnkit."):
                raise ImportError("rnnkit is blocked in this process")
    sys.meta_path.insert(0, _Block())
""")


def test_whole_model_checkpoint_loads_like_torch_nn_without_rnnkit(torch, rt, tmp_path):
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.LSTM(I, H, num_layers=2), nn.GRU(I, H, bidirectional=True, batch_first=True))
    plain_path, conv_path = tmp_path / "plain.pt", tmp_path / "converted.pt"
    torch.save(model, plain_path)
    rt.convert(model)
    x = torch.randn(T, B, I)
    with torch.no_grad():
        model[0](x), model[1](x)  # packed caches exist: they must not travel
        want = [model[0](x)[0], model[1](x)[0]]
    torch.save(model, conv_path)
    torch.save([x] + want, tmp_path / "want.pt")
    script = BLOCK_RNNKIT + textwrap.dedent(f"""
        import torch
        from torch import nn
        x, *want = torch.load({str(tmp_path / "want.pt")!r})
        for path in ({str(plain_path)!r}, {str(conv_path)!r}):
            try:
                torch.load(path)
                raise SystemExit("the default load of a whole model was expected to refuse it")
            except Exception as exc:
                assert "Weights only load failed" in str(exc), exc
            with torch.serialization.safe_globals([nn.Sequential, nn.LSTM, nn.GRU]):
                model = torch.load(path)
            assert [type(m) for m in model] == [nn.LSTM, nn.GRU], [type(m) for m in model]
        with torch.no_grad():
            for m, w in zip(model, want):
                torch.testing.assert_close(m(x)[0], w, rtol=1e-5, atol=1e-6)
        print("ok")
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    # Values: the checkpoint computes what the converted model did.
    with torch.serialization.safe_globals([nn.Sequential, nn.LSTM, nn.GRU]):
        loaded = torch.load(conv_path)
    with torch.no_grad():
        for m, w in zip(loaded, want):
            torch.testing.assert_close(m(x)[0], w, rtol=1e-5, atol=1e-6)


def test_pickle_reset_before_linear_gru_as_itself(torch, rt, tmp_path):
    m = rt.GRU(I, H, linear_before_reset=False, dtype=torch.float64)
    x = torch.randn(T, B, I, dtype=torch.float64)
    with torch.no_grad():
        want = m(x)[0]
    torch.save(m, tmp_path / "gru.pt")
    with torch.serialization.safe_globals([rt.GRU]):
        back = torch.load(tmp_path / "gru.pt")
    assert type(back) is rt.GRU and back.linear_before_reset is False
    with torch.no_grad():
        assert torch.equal(back(x)[0], want)
    again = pickle.loads(pickle.dumps(m))
    assert type(again) is rt.GRU and again.linear_before_reset is False


@pytest.mark.parametrize("mode", MODES)
def test_deepcopy_is_independent_and_stays_rnnkit(torch, rt, mode):
    m, ref = pair(torch, rt, mode, num_layers=2)
    x = torch.randn(T, B, I, dtype=torch.float64)
    with torch.no_grad():
        want = m(x)[0]
        twin = copy.deepcopy(m)
        assert type(twin) is type(m)
        for p in twin.parameters():
            p.mul_(2.0)
        assert torch.equal(m(x)[0], want)
        ref.load_state_dict(twin.state_dict())
        assert_all_close(states_of(twin(x)), states_of(ref(x)), what="copy after its own change")
    loaded = pickle.loads(pickle.dumps(m))
    assert type(loaded) is getattr(torch.nn, mode)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[0], want, rtol=1e-12, atol=1e-12)
    assert type(rt.convert(loaded)) is type(m)


def test_pickled_model_keeps_sharing(torch, rt):
    nn = torch.nn
    model = rt.convert(nn.ModuleDict({"a": nn.LSTM(I, H)}))
    model["b"] = model["a"]
    back = pickle.loads(pickle.dumps(model))
    assert back["a"] is back["b"]


# ---- 7. autocast ----------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("with_hx", [False, True])
def test_autocast_follows_torch_nn(torch, rt, mode, with_hx):
    ours, ref = pair(torch, rt, mode, dtype=torch.float32, num_layers=2)
    x = torch.randn(T, B, I)
    hx = hx_for(torch, mode, 2, dtype=torch.float32) if with_hx else None
    exact = copy.deepcopy(ref).double()
    results = []
    for m, autocast in ((ours, True), (ref, True), (exact, False)):
        xi = (x.double() if not autocast else x.clone()).requires_grad_()
        h = hx if autocast or hx is None else tuple(s.double() for s in hx) if mode == "LSTM" else hx.double()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = states_of(m(xi, h))
        out[0].float().square().sum().backward() if autocast else out[0].square().sum().backward()
        results.append((out, xi.grad, [p.grad for p in m.parameters()]))
    (got, gx, gw), (want, wx, ww), (f64, fx, fw) = results
    assert [t.dtype for t in got] == [t.dtype for t in want]
    assert gx.dtype == wx.dtype and [g.dtype for g in gw] == [g.dtype for g in ww]
    # Both run their products in bfloat16 (rnnkit on its own kernels, with
    # float32 gate math and states), so they agree to bf16's precision, not
    # bit for bit: rnnkit's error against float64 may not exceed twice
    # torch.nn's (plus a rounding step of the result's dtype). The element
    # bounds are asserted in tests/layers/test_bf16_training.py.
    for a, b, r in zip(got + [gx] + gw, want + [wx] + ww, f64 + [fx] + fw):
        ours_err = (a.double() - r).abs().max().item()
        torch_err = (b.double() - r).abs().max().item()
        assert ours_err <= 2 * torch_err + 2 ** -8 * r.abs().max().item(), (ours_err, torch_err)


def test_autocast_reset_before_linear_gru_keeps_the_gru_contract(torch, rt):
    # No torch counterpart: products in bfloat16 as autocast makes them, the
    # result float32 like torch.nn.GRU's under autocast.
    m = rt.GRU(I, H, linear_before_reset=False, num_layers=2)
    x = torch.randn(T, B, I)
    with torch.no_grad():
        want = states_of(m(x))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = states_of(m(x))
    assert [t.dtype for t in got] == [torch.float32] * 2
    assert max((a - b).abs().max() for a, b in zip(got, want)) < 0.05
    assert any(not torch.equal(a, b) for a, b in zip(got, want))  # the products did run in bfloat16


# ---- 8. argument checks ---------------------------------------------------------------------

def test_convert_rejects_non_modules(torch, rt):
    for bad in (None, 3, [torch.nn.LSTM(I, H)]):
        with pytest.raises(TypeError, match="model: expected a torch.nn.Module"):
            rt.convert(bad)


def test_linear_before_reset_must_be_a_bool(torch, rt):
    with pytest.raises(TypeError, match="linear_before_reset: expected a bool"):
        rt.GRU(I, H, linear_before_reset="yes")
    with pytest.raises(TypeError, match="linear_before_reset: expected a bool"):
        rt.GRU(I, H, linear_before_reset=None)
    with pytest.raises(ValueError, match="linear_before_reset"):
        rt.GRU(I, H, linear_before_reset=2)
    assert rt.GRU(I, H, linear_before_reset=0).linear_before_reset is False


@pytest.mark.parametrize("mode", MODES)
def test_bad_state_arguments(torch, rt, mode):
    m = getattr(rt, mode)(I, H)
    x = torch.randn(T, B, I)
    h = torch.zeros(1, B, H)
    bad = [(TypeError, "input must be a Tensor", lambda: m("text")),
           (TypeError, "input must be a Tensor", lambda: m(None))]
    if mode == "LSTM":
        bad += [(TypeError, "hx must be a tuple", lambda: m(x, h)),
                (TypeError, "two tensors", lambda: m(x, (h, h, h))),
                (TypeError, "two tensors", lambda: m(x, (h, None))),
                (RuntimeError, r"hx\[0\]: dtype", lambda: m(x, (h.double(), h)))]
    else:
        bad += [(TypeError, "hx must be a tensor", lambda: m(x, (h,))),
                (RuntimeError, "hx: dtype", lambda: m(x, h.double()))]
    for exc, msg, call in bad:
        with pytest.raises(exc, match=msg):
            call()


# ---- torch.nn utilities that rewrite parameters, and other everyday module changes --------

def _prune(torch, m):
    import torch.nn.utils.prune  # noqa: F401 (not imported by torch.nn.utils)
    torch.nn.utils.prune.l1_unstructured(m, "weight_hh_l0", amount=0.4)


def _weight_norm(torch, m):
    torch.nn.utils.parametrizations.weight_norm(m, "weight_hh_l0")


def _spectral_norm(torch, m):
    torch.nn.utils.parametrizations.spectral_norm(m, "weight_hh_l0")


def _orthogonal(torch, m):
    torch.nn.utils.parametrizations.orthogonal(m, "weight_ih_l0")


def _old_weight_norm(torch, m):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.nn.utils.weight_norm(m, "weight_hh_l0")


def _freeze(torch, m):
    m.weight_ih_l0.requires_grad_(False)
    m.bias_hh_l0.requires_grad_(False)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("change", [_prune, _weight_norm, _spectral_norm, _orthogonal, _old_weight_norm, _freeze],
                         ids=lambda f: f.__name__.strip("_"))
def test_parameter_rewrites_match_torch(torch, rt, mode, change):
    ours, ref = pair(torch, rt, mode)
    change(torch, ref)
    change(torch, ours)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    for step in range(2):
        torch.manual_seed(step)  # spectral_norm draws its power iteration in training
        got = states_of(ours(x))
        torch.manual_seed(step)
        want = states_of(ref(x))
        assert_all_close(got, want, what=f"{change.__name__} step {step}")
        grads = [torch.autograd.grad(sum(o.sum() for o in out), [x] + [p for p in m.parameters() if p.requires_grad])
                 for m, out in ((ours, got), (ref, want))]
        assert_all_close(list(grads[0]), list(grads[1]), what=f"{change.__name__} grads")
        with torch.no_grad():  # the underlying parameters change between calls
            for m in (ours, ref):
                for p in m.parameters():
                    p.add_(0.01)
    with torch.no_grad():
        assert_all_close(states_of(ours(x)), states_of(ref(x)), what=f"{change.__name__} inference")


@pytest.mark.parametrize("mode", MODES)
def test_dtype_conversions_after_convert(torch, rt, mode):
    ours, ref = pair(torch, rt, mode, dtype=torch.float32)
    x = torch.randn(T, B, I)
    with torch.no_grad():
        ours(x)
        ours.double(), ref.double()
        assert_all_close(states_of(ours(x.double())), states_of(ref(x.double())), what=".double()")
        ours.float(), ref.float()
        assert_all_close(states_of(ours(x)), states_of(ref(x)), rtol=1e-6, atol=1e-6, what=".float()")
        ours.to(torch.bfloat16), ref.to(torch.bfloat16)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # bfloat16 runs rnnkit's bfloat16 kernels: no fallback warning
            got = states_of(ours(x.bfloat16()))
        want = states_of(ref(x.bfloat16()))
        # Both round to bfloat16 (the products' operands, the results): a few bfloat16 steps apart at most.
        assert all(a.dtype == b.dtype == torch.bfloat16 for a, b in zip(got, want))
        assert max((a.float() - b.float()).abs().max().item() for a, b in zip(got, want)) < 0.05


def test_tied_weights(torch, rt):
    # One Parameter used by two layers: the gradients add, as in torch.nn.
    ours, ref = pair(torch, rt, "GRU", num_layers=3)
    for m in (ours, ref):
        m.weight_hh_l2 = m.weight_hh_l1
        m.weight_ih_l2 = m.weight_ih_l1
        m._init_flat_weights()
    x = torch.randn(T, B, I, dtype=torch.float64)
    grads = []
    for m in (ours, ref):
        grads.append(torch.autograd.grad(m(x)[0].sum(), list(m.parameters())))
    assert_all_close(list(grads[0]), list(grads[1]), what="tied weights")


def test_inference_mode_and_no_grad_agree(torch, rt):
    ours, ref = pair(torch, rt, "LSTM", num_layers=2, dropout=0.3)
    ours.eval(), ref.eval()
    x = torch.randn(T, B, I, dtype=torch.float64)
    with torch.inference_mode():
        a = states_of(ours(x))
    with torch.no_grad():
        b = states_of(ours(x))
        c = states_of(ref(x))
    assert_all_close(a, c, what="inference_mode")
    assert_all_close(b, c, what="no_grad")


def test_data_parallel_on_cpu(torch, rt):
    ours, ref = pair(torch, rt, "LSTM")
    x = torch.randn(T, B, I, dtype=torch.float64)
    with torch.no_grad():
        assert_all_close(states_of(torch.nn.DataParallel(ours)(x)), states_of(ref(x)), what="DataParallel")
