"""rnnkit.torch in reduced precision: CPU autocast to bfloat16 and bfloat16
modules on rnnkit's bfloat16 kernels (torch.nn's output dtypes, values within
bfloat16 rounding of torch.nn's), and quantize_dynamic on its int8 kernels
(torch's contract; values within int8 rounding of the float model)."""

import copy
import io
import itertools
import warnings

import numpy as np
import pytest

from helpers import can_train_bf16, require_bf16_training, rnnkit

T, B, I, H = 6, 3, 5, 11
MODES = ("LSTM", "GRU")
# |error| bounds for O(1) outputs at these sizes: bfloat16 results are rounded
# to 8 significant bits (a step of 2**-8 near 1) on both sides, int8 weights
# have 127 levels per row; a plumbing bug (a lost state, a wrong layer) is far off.
BF16_BOUND = 0.05
INT8_BOUND = 0.05


@pytest.fixture(autouse=True)
def _quiet_torch_quantization():
    # torch's eager quantization announces its migration to torchao on every call.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torchao.*")
        warnings.filterwarnings("ignore", message=".*quantized tensor creation.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        yield


def _flat(out):
    y, state = out
    y = y.data if hasattr(y, "batch_sizes") else y
    return [y] + (list(state) if isinstance(state, tuple) else [state])


def _max_diff(a, b):
    return max((x.double() - y.double()).abs().max().item() for x, y in zip(_flat(a), _flat(b)))


def _pair(torch, rt, mode, **kw):
    torch.manual_seed(0)
    ref = getattr(torch.nn, mode)(I, H, **kw)
    ours = getattr(rt, mode)(I, H, **kw)
    ours.load_state_dict(ref.state_dict())
    return ours, ref


def _bf16_cache(m):
    return m.__dict__.get("_rnnkit_cache_bf16")


# ---- CPU autocast ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("packed, x_dtype, h_dtype", list(itertools.product(
    (False, True), ("float32", "bfloat16"), (None, "float32", "bfloat16"))))
def test_autocast_dtypes_and_values_like_torch(torch, rt, mode, packed, x_dtype, h_dtype):
    ours, ref = _pair(torch, rt, mode, num_layers=2, bidirectional=True)
    x = torch.randn(T, B, I, dtype=getattr(torch, x_dtype))
    inp = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor([T, 4, 2])) if packed else x
    hx = None
    if h_dtype is not None:
        h = torch.randn(4, B, H, dtype=getattr(torch, h_dtype))
        hx = (h, h.clone()) if mode == "LSTM" else h
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        got, want = ours(inp, hx), ref(inp, hx)
    assert [t.dtype for t in _flat(got)] == [t.dtype for t in _flat(want)]
    assert _max_diff(got, want) < BF16_BOUND
    assert _bf16_cache(ours) is not None, "rnnkit's bfloat16 kernels did not run"
    assert all(p.precision == "bfloat16" for p in _bf16_cache(ours).packed)


@pytest.mark.parametrize("mode", MODES)
def test_autocast_every_isa_against_float64(torch, rt, isa, mode):
    ours, ref = _pair(torch, rt, mode, batch_first=True)
    ref = ref.double()
    x = torch.randn(B, T, I)
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = ours(x)
        want = ref(x.double())
    assert _max_diff(got, want) < BF16_BOUND
    assert all(p.isa == isa for p in _bf16_cache(ours).packed)
    # Really bfloat16 products: float32 ones are far closer.
    with torch.no_grad():
        assert _max_diff(got, want) > 10 * _max_diff(ours(x), want)


def test_autocast_unbatched_and_batch_first(torch, rt):
    for mode in MODES:
        ours, ref = _pair(torch, rt, mode, batch_first=True)
        x = torch.randn(T, I)
        with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
            got, want = ours(x), ref(x)
        assert [t.dtype for t in _flat(got)] == [t.dtype for t in _flat(want)]
        assert [t.shape for t in _flat(got)] == [t.shape for t in _flat(want)]
        assert _max_diff(got, want) < BF16_BOUND


def test_autocast_sees_weight_changes(torch, rt):
    ours, _ = _pair(torch, rt, "LSTM")
    x = torch.randn(T, B, I)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        first = ours(x)[0]
        assert torch.equal(ours(x)[0], first)  # cached pack, same result
        ours.weight_hh_l0.mul_(-1.0)
        changed = ours(x)[0]
    assert not torch.equal(changed, first)
    ref = torch.nn.LSTM(I, H)
    ref.load_state_dict(ours.state_dict())
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        assert _max_diff((changed, (changed, changed)), (ref(x)[0], (ref(x)[0], ref(x)[0]))) < BF16_BOUND
    # The float32 packs are cached apart: leaving autocast does not repack bfloat16 weights.
    with torch.no_grad():
        ours(x)
    assert ours._rnnkit_cache.packed[0].precision == "float32"
    assert _bf16_cache(ours).packed[0].precision == "bfloat16"


def test_float64_modules_ignore_autocast(torch, rt):
    ours, _ = _pair(torch, rt, "GRU")
    ours.double()
    x = torch.randn(T, B, I, dtype=torch.float64)
    with torch.no_grad():
        plain = ours(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = ours(x)
    assert auto[0].dtype == torch.float64 and torch.equal(auto[0], plain[0])
    assert _bf16_cache(ours) is None


def test_autocast_with_gradients(torch, rt):
    # Until the kernels train in bfloat16, torch's own path (its results exactly, silently);
    # then rnnkit's kernels, with gradients close to torch.nn's under autocast.
    for mode in MODES:
        ours, ref = _pair(torch, rt, mode, num_layers=2)
        x = torch.randn(T, B, I)
        outs = []
        for m in (ours, ref):
            xg = x.clone().requires_grad_()
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    y, _ = m(xg)
            y.float().square().sum().backward()
            outs.append((y, xg.grad, [p.grad for p in m.parameters()]))
        (y, dx, dw), (y_ref, dx_ref, dw_ref) = outs
        assert y.dtype == y_ref.dtype and dx.dtype == dx_ref.dtype == torch.float32
        assert all(a.dtype == b.dtype for a, b in zip(dw, dw_ref))
        if can_train_bf16()[0]:
            assert _bf16_cache(ours) is not None
            assert (y.float() - y_ref.float()).abs().max() < BF16_BOUND
            assert (dx - dx_ref).abs().max() < 0.1 * max(1.0, dx_ref.abs().max().item())
        else:
            assert _bf16_cache(ours) is None
            assert torch.equal(y, y_ref) and torch.equal(dx, dx_ref)


# ---- bfloat16 modules -----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kw", [{}, {"num_layers": 2, "bidirectional": True, "batch_first": True}])
def test_bfloat16_modules_like_torch(torch, rt, isa, mode, kw):
    ours, ref = _pair(torch, rt, mode, **kw)
    ours.to(torch.bfloat16), ref.to(torch.bfloat16)
    bf = kw.get("batch_first", False)
    x = torch.randn((B, T, I) if bf else (T, B, I), dtype=torch.bfloat16)
    for inp in (x, torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor([T, 3, 1]), bf)):
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("error")  # no fallback warning
            got = ours(inp)
            want = ref(inp)
        assert all(t.dtype == torch.bfloat16 for t in _flat(got))
        assert [t.shape for t in _flat(got)] == [t.shape for t in _flat(want)]
        assert _max_diff(got, want) < BF16_BOUND
    assert all(p.isa == isa and p.precision == "bfloat16" for p in _bf16_cache(ours).packed)


def test_bfloat16_module_pack_is_exact(torch, rt):
    # Packed from the bfloat16 parameters read as float32: the panels hold exactly them.
    ours, _ = _pair(torch, rt, "GRU")
    ours.to(torch.bfloat16)
    with torch.no_grad():
        ours(torch.randn(T, B, I, dtype=torch.bfloat16))
    w_ih, w_hh, b_ih, b_hh = _bf16_cache(ours).packed[0].unpack()
    assert torch.equal(torch.from_numpy(w_hh), ours.weight_hh_l0.float())
    assert torch.equal(torch.from_numpy(w_ih), ours.weight_ih_l0.float())


@pytest.mark.parametrize("mode", MODES)
def test_bfloat16_module_gradients(torch, rt, mode):
    ours, ref = _pair(torch, rt, mode, num_layers=2, bidirectional=True)
    ours.to(torch.bfloat16), ref.to(torch.bfloat16)
    x = torch.randn(T, B, I, dtype=torch.bfloat16)
    grads = []
    for m in (ours, ref):
        xg = x.clone().requires_grad_()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            y, _ = m(xg)
        y.float().sum().backward()
        grads.append((xg.grad, [p.grad for p in m.parameters()], caught))
    (dx, dw, caught), (dx_ref, dw_ref, _) = grads
    # torch.nn's gradient dtypes: bfloat16 throughout.
    assert dx.dtype == torch.bfloat16 and all(g.dtype == torch.bfloat16 for g in dw)
    if can_train_bf16()[0]:
        assert not caught
        assert (dx.float() - dx_ref.float()).abs().max() < 0.1 * max(1.0, dx_ref.float().abs().max().item())
    else:
        # torch's own path meanwhile, said once.
        assert any("bfloat16 weights with gradients" in str(w.message) for w in caught)
        assert torch.equal(dx, dx_ref)


@pytest.mark.parametrize("mode", MODES)
def test_bfloat16_training_steps(torch, rt, mode):
    require_bf16_training()
    ours, ref = _pair(torch, rt, mode)
    ours.to(torch.bfloat16), ref.to(torch.bfloat16)
    x = torch.randn(T, B, I, dtype=torch.bfloat16)
    for m in (ours, ref):
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        for _ in range(3):
            opt.zero_grad()
            m(x)[0].float().square().mean().backward()
            opt.step()
    for a, b in zip(ours.parameters(), ref.parameters()):
        assert (a.float() - b.float()).abs().max() < 0.05


def test_bfloat16_module_with_float32_input_raises_like_torch(torch, rt):
    ours, ref = _pair(torch, rt, "LSTM")
    ours.to(torch.bfloat16), ref.to(torch.bfloat16)
    x = torch.randn(T, B, I)
    with pytest.raises(Exception) as want:
        ref(x)
    with pytest.raises(type(want.value)):
        ours(x)


# ---- quantize_dynamic -------------------------------------------------------------------------------

def _model(torch):
    torch.manual_seed(1)
    return torch.nn.ModuleDict({
        "lstm": torch.nn.LSTM(I, H, num_layers=2, bidirectional=True),
        "gru": torch.nn.GRU(I, H, batch_first=True),
        "fc": torch.nn.Linear(H, 2),
    })


def test_quantize_dynamic_structure(torch, rt):
    model = _model(torch)
    q = rt.quantize_dynamic(model)
    assert q is not model and type(model["lstm"]) is torch.nn.LSTM  # a copy; the original untouched
    assert type(q["lstm"]) is rt.QuantizedLSTM and type(q["gru"]) is rt.QuantizedGRU
    assert type(q["fc"]) is torch.nn.Linear  # only the recurrent modules by default
    assert not q.training and not q["lstm"].training
    assert all(p.precision == "int8" for p in q["lstm"]._packed)
    assert repr(q["lstm"]) == "QuantizedLSTM(5, 11, num_layers=2, bidirectional=True, dtype=torch.qint8)"
    assert repr(q["gru"]) == "QuantizedGRU(5, 11, batch_first=True, dtype=torch.qint8)"
    assert list(q.parameters()) == list(q["fc"].parameters())
    same = rt.quantize_dynamic(model, inplace=True)
    assert same is model and type(model["gru"]) is rt.QuantizedGRU


def test_quantize_dynamic_of_the_module_itself_and_rnnkit_modules(torch, rt):
    q = rt.quantize_dynamic(torch.nn.GRU(I, H))
    assert type(q) is rt.QuantizedGRU
    ours = rt.GRU(I, H, linear_before_reset=False)
    q = rt.quantize_dynamic(torch.nn.Sequential(ours))
    assert type(q[0]) is rt.QuantizedGRU and q[0].linear_before_reset is False
    assert "linear_before_reset=False" in repr(q[0])
    x = torch.randn(T, B, I)
    with torch.no_grad():
        assert _max_diff(q[0](x), ours(x)) < INT8_BOUND


def _configs():
    yield {}, False
    yield {"batch_first": True}, False
    yield {"num_layers": 3, "bidirectional": True}, False
    yield {"num_layers": 2, "bias": False}, False
    yield {"bidirectional": True}, True
    yield {"batch_first": True, "num_layers": 2}, True


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kw, packed", list(_configs()))
def test_quantized_outputs_against_float_and_torch_int8(torch, rt, mode, kw, packed):
    from torch.ao.quantization import quantize_dynamic as torch_quantize_dynamic
    torch.manual_seed(2)
    model = torch.nn.Sequential(getattr(torch.nn, mode)(I, H, **kw))
    ours = rt.quantize_dynamic(model)
    # torch's own quantization has no bias=False modules (rnnkit's has).
    theirs = torch_quantize_dynamic(model, {getattr(torch.nn, mode)}) if kw.get("bias", True) else None
    bf = kw.get("batch_first", False)
    x = torch.randn((B, T, I) if bf else (T, B, I))
    dirs = 2 if kw.get("bidirectional") else 1
    h = torch.randn(kw.get("num_layers", 1) * dirs, B, H)
    hx = (h, torch.randn_like(h)) if mode == "LSTM" else h
    inp = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor([2, T, 4]), bf, enforce_sorted=False) if packed \
        else x
    with torch.no_grad():
        want, got = model[0](inp, hx), ours[0](inp, hx)
        torch_int8 = theirs[0](inp, hx) if theirs is not None else None
    assert [t.dtype for t in _flat(got)] == [torch.float32] * len(_flat(want))
    assert [t.shape for t in _flat(got)] == [t.shape for t in _flat(want)]
    err = _max_diff(got, want)
    assert err < INT8_BOUND
    # No worse than torch's own dynamic quantization of the same weights (with slack for luck).
    if torch_int8 is not None:
        assert err <= 1.5 * _max_diff(torch_int8, want) + 1e-3
    if packed:
        assert torch.equal(got[0].unsorted_indices, want[0].unsorted_indices)


@pytest.mark.parametrize("mode", MODES)
def test_quantized_every_isa(torch, rt, isa, mode):
    model = getattr(torch.nn, mode)(I, H, num_layers=2)
    q = rt.quantize_dynamic(model)
    assert all(p.isa == isa for p in q._packed)
    x = torch.randn(T, B, I)
    with torch.no_grad():
        assert _max_diff(q(x), model(x)) < INT8_BOUND
        x1 = torch.randn(T, I)  # unbatched
        assert _max_diff(q(x1), model(x1)) < INT8_BOUND


def test_quantized_modules_refuse_training(torch, rt):
    q = rt.quantize_dynamic(torch.nn.Sequential(torch.nn.LSTM(I, H)))
    x = torch.randn(T, B, I, requires_grad=True)
    y, _ = q(x)  # inference on an input that requires grad is fine
    with pytest.raises(RuntimeError, match="int8 weights .* inference only"):
        y.sum().backward()
    q.train()  # allowed (a container's train() reaches every module) ...
    with pytest.raises(RuntimeError, match=r"QuantizedLSTM: int8 modules run inference only; call \.eval\(\)"):
        q(x)  # ... but a training-mode forward is refused


def test_quantized_bad_inputs(torch, rt):
    q = rt.QuantizedGRU(I, H)
    with pytest.raises(ValueError, match="input dtype .*float64.* must be float32"):
        q(torch.randn(T, B, I, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="input.size\\(-1\\) must be equal to input_size"):
        q(torch.randn(T, B, I + 1))
    with pytest.raises(RuntimeError, match="Expected hidden size"):
        q(torch.randn(T, B, I), torch.zeros(2, B, H))
    with pytest.raises(TypeError, match="input must be a Tensor"):
        q("text")
    with pytest.raises(ValueError, match="empty input"):
        q(torch.zeros(T, 0, I))
    with pytest.raises(RuntimeError, match="torch.jit tracing"):
        torch.jit.trace(q, torch.randn(T, B, I))


def test_quantize_dynamic_bad_arguments(torch, rt):
    from torch.ao.quantization import default_dynamic_qconfig, float16_dynamic_qconfig
    m = torch.nn.Sequential(torch.nn.LSTM(I, H))
    with pytest.raises(TypeError, match="model: expected a torch.nn.Module"):
        rt.quantize_dynamic("model")
    with pytest.raises(ValueError, match="dtype: rnnkit quantizes to torch.qint8"):
        rt.quantize_dynamic(m, dtype=torch.float16)
    with pytest.raises(TypeError, match="qconfig_spec: expected None, a set"):
        rt.quantize_dynamic(m, qconfig_spec=3)
    with pytest.raises(TypeError, match="qconfig_spec: keys are module types or submodule names"):
        rt.quantize_dynamic(m, qconfig_spec={3})
    with pytest.raises(ValueError, match=r"qconfig_spec\[.*LSTM.*\]: .*torch.float16"):
        rt.quantize_dynamic(m, qconfig_spec={torch.nn.LSTM: float16_dynamic_qconfig})
    with pytest.raises(TypeError, match="expected a torch.ao.quantization QConfig or None"):
        rt.quantize_dynamic(m, qconfig_spec={torch.nn.LSTM: "int8"})
    with pytest.raises(ValueError, match="mapping: rnnkit maps LSTM and GRU modules itself"):
        rt.quantize_dynamic(m, mapping={torch.nn.LSTM: rt.QuantizedLSTM})
    with pytest.raises(TypeError, match="inplace: expected a bool"):
        rt.quantize_dynamic(m, inplace=1)
    assert type(rt.quantize_dynamic(m, {torch.nn.LSTM: default_dynamic_qconfig})[0]) is rt.QuantizedLSTM


def test_qconfig_spec_selects_like_torch(torch, rt):
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    # Types rnnkit has no kernels for go to torch's quantize_dynamic.
    q = rt.quantize_dynamic(_model(torch), {torch.nn.LSTM, torch.nn.Linear})
    assert type(q["lstm"]) is rt.QuantizedLSTM and type(q["gru"]) is torch.nn.GRU
    assert type(q["fc"]) is DynamicLinear
    # Names: that submodule only; a dict's None excludes, a name overrides a type.
    q = rt.quantize_dynamic(_model(torch), {"gru"})
    assert type(q["gru"]) is rt.QuantizedGRU and type(q["lstm"]) is torch.nn.LSTM and type(q["fc"]) is torch.nn.Linear
    q = rt.quantize_dynamic(_model(torch), {torch.nn.GRU: True and None, torch.nn.LSTM: None})
    assert type(q["gru"]) is torch.nn.GRU and type(q["lstm"]) is torch.nn.LSTM
    from torch.ao.quantization import default_dynamic_qconfig
    q = rt.quantize_dynamic(_model(torch), {torch.nn.LSTM: default_dynamic_qconfig, "lstm": None})
    assert type(q["lstm"]) is torch.nn.LSTM
    # A name's entry reaches the modules below it.
    outer = torch.nn.Sequential(torch.nn.Sequential(torch.nn.GRU(I, H)), torch.nn.GRU(I, H))
    q = rt.quantize_dynamic(outer, {"0"})
    assert type(q[0][0]) is rt.QuantizedGRU and type(q[1]) is torch.nn.GRU


def test_projected_lstm_goes_to_torch(torch, rt):
    from torch.ao.nn.quantized.dynamic import LSTM as DynamicLSTM
    q = rt.quantize_dynamic(torch.nn.Sequential(torch.nn.LSTM(I, H, proj_size=3), torch.nn.GRU(I, H)))
    assert type(q[0]) is DynamicLSTM and type(q[1]) is rt.QuantizedGRU


def test_quantized_pickle_copy_and_state_dict(torch, rt):
    model = torch.nn.Sequential(torch.nn.LSTM(I, H, num_layers=2, bidirectional=True))
    q = rt.quantize_dynamic(model)
    x = torch.randn(T, B, I)
    with torch.no_grad():
        want = q(x)
        buf = io.BytesIO()
        torch.save(q, buf)
        buf.seek(0)
        for other in (torch.load(buf, weights_only=False), copy.deepcopy(q)):
            assert type(other[0]) is rt.QuantizedLSTM
            assert _max_diff(other(x), want) == 0.0
        # state_dict: torch.nn's names, the dequantized weights; they load into a float module and back.
        sd = q.state_dict()
        assert set(sd) == set(model.state_dict())
        assert all(v.dtype == torch.float32 for v in sd.values())
        float_again = torch.nn.Sequential(torch.nn.LSTM(I, H, num_layers=2, bidirectional=True))
        float_again.load_state_dict(sd)
        assert _max_diff(float_again(x), model(x)) < INT8_BOUND
        fresh = rt.quantize_dynamic(torch.nn.Sequential(torch.nn.LSTM(I, H, num_layers=2, bidirectional=True)))
        fresh.load_state_dict(sd)
        assert _max_diff(fresh(x), want) == 0.0
        fresh.load_state_dict(model.state_dict())  # float weights load too, quantized on the way
        assert _max_diff(fresh(x), want) == 0.0
    with pytest.raises(RuntimeError, match="Missing key"):
        fresh.load_state_dict({k: v for k, v in sd.items() if "l1" not in k})
    with pytest.raises(RuntimeError, match="size mismatch"):
        fresh.load_state_dict({k: v[:1] if k == "0.bias_hh_l0" else v for k, v in sd.items()})


def test_quantized_constructors(torch, rt):
    q = rt.QuantizedGRU(I, H, num_layers=2, linear_before_reset=False, dtype=torch.qint8)
    assert q.linear_before_reset is False and q.num_layers == 2 and not q.training
    assert _flat(q(torch.randn(T, B, I)))[0].shape == (T, B, H)
    with pytest.raises(ValueError, match="dtype: rnnkit's int8 modules take torch.qint8"):
        rt.QuantizedLSTM(I, H, dtype=torch.float16)
    with pytest.raises(TypeError, match="unexpected keyword arguments"):
        rt.QuantizedLSTM(I, H, linear_before_reset=False)


def test_from_float_takes_any_float_dtype(torch, rt):
    m = torch.nn.LSTM(I, H)
    x = torch.randn(T, B, I)
    with torch.no_grad():
        want = rt.QuantizedLSTM.from_float(m)(x)
        assert _max_diff(rt.QuantizedLSTM.from_float(copy.deepcopy(m).double())(x), want) == 0.0
        assert _max_diff(rt.QuantizedLSTM.from_float(copy.deepcopy(m).bfloat16())(x), want) < INT8_BOUND
    with pytest.raises(TypeError, match="mod: expected a torch.nn.LSTM"):
        rt.QuantizedLSTM.from_float(torch.nn.GRU(I, H))


def test_rnnkit_import_stays_torch_free():
    # The int8 torch modules load with rnnkit.torch only.
    assert "QuantizedLSTM" not in dir(rnnkit)
