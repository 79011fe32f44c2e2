"""bf16 and int8 inference accuracy against the peers, on the SAME weights
and inputs, all measured against the float64 reference:
- rnnkit bfloat16 vs PyTorch's bfloat16 module (module.to(torch.bfloat16),
  bf16 input; oneDNN on x86), LSTM and GRU;
- rnnkit int8 vs PyTorch's quantize_dynamic (qint8 weights, dynamic
  activations; fbgemm/x86) and ONNX Runtime's DynamicQuantizeLSTM
  (onnxruntime.quantization.quantize_dynamic of an ONNX LSTM; LSTM only).
Standard initialisation: weights and biases ~ U(+-1/sqrt(H)), x ~ N(0, 1),
zero initial states (the peers' defaults).

What is asserted, for each shape over SEEDS seeds:
- the RMS error of every case is no larger than the peer's;
- the mean over the seeds of the max error is no larger than the peer's;
- the max error of every single case is within MAX_SLACK of the peer's.
The slack is for the max error only: it is the extreme of thousands of
rounding errors, heavy-tailed for int8 (a row's largest value sets the step
of all its elements), so two error fields whose RMS differs by 20 % still
swap their maxima on some seeds. Measured on this machine, in a sweep of 7
shapes x 4 seeds per cell (10x1x16x16 to 25x1x512x512 and 40x16x128x256,
T x B x I x H): rnnkit's RMS error / the peer's was 0.57 - 0.83 (LSTM) and
0.42 - 0.51 (GRU) for PyTorch bf16, 0.33 - 0.58 for PyTorch int8 and
0.63 - 0.93 for ONNX Runtime int8; its max error was above the peer's on
3 of 28 LSTM cases for PyTorch bf16 (by up to 9 %: 50x1x128x128, 2.19e-3
vs 2.01e-3) and on 4 of 28 for ONNX Runtime int8 (by up to 13 %), never
for GRU or PyTorch int8. That was with symmetric activation rows; with the
asymmetric ones (a zero point per row, as ONNX Runtime's u8 activations)
and this file's make(), over SHAPES + 50x1x128x128 x 6 seeds: RMS error
-5 % to -9 % per shape (mean), max error -2 % to -25 %; against ONNX
Runtime max 0.66 - 0.87x per shape except 10x1x16x16 (16 values a row, a
row's extremes set its step), whose seed 0 stays the largest ratio seen,
5.26e-3 vs 4.47e-3 (1.18x; 50x1x128x128 seed 1 went from 1.21x to 0.61x),
hence MAX_SLACK = 1.3 still (1.0 would not hold).

Note: torch's quantize_dynamic swaps the CHILDREN of the model it is
given, so an nn.LSTM passed on its own comes back unquantized (float32
errors ~1e-7); it is wrapped in a container here and the swap is checked.
"""

import os
import subprocess
import sys
import tempfile
import textwrap
import warnings

import numpy as np
import pytest

from helpers import require_optional, rnnkit
from rnnkit import _core, reference

SEEDS = range(3)
MAX_SLACK = 1.3
# (cell, T, B, I, H): B = 1 and batched, I != H, odd sizes.
SHAPES = [
    ("lstm", 10, 1, 16, 16),
    ("lstm", 25, 1, 17, 33),
    ("lstm", 20, 3, 100, 50),
    ("lstm", 30, 4, 64, 128),
    ("gru", 10, 1, 16, 16),
    ("gru", 25, 1, 17, 33),
    ("gru", 20, 3, 100, 50),
    ("gru", 30, 4, 64, 128),
]


def shape_id(shape):
    return "{}-{}x{}x{}x{}".format(*shape)


def make(cell, T, B, I, H, seed):
    rng = np.random.default_rng([seed, T, B, I, H])
    G, k = (4 if cell == "lstm" else 3), 1.0 / np.sqrt(H)
    w = tuple(rng.uniform(-k, k, s).astype(np.float32) for s in [(G * H, I), (G * H, H), (G * H,), (G * H,)])
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    return w, x


def reference_outputs(cell, w, x):
    """float64 reference -> (y, c_n or None)."""
    w64 = [np.asarray(a, np.float64) for a in w]
    if cell == "lstm":
        y, _, c_n, _ = reference.lstm_forward(np.asarray(x, np.float64), *w64)
        return y, c_n
    return reference.gru_forward(np.asarray(x, np.float64), *w64)[0], None


def rnnkit_outputs(cell, w, x, precision):
    p = _core.pack(cell, *w, True, precision=precision)
    if cell == "lstm":
        y, _, c_n = _core.lstm_forward(x, p)
        return y, c_n
    return _core.gru_forward(x, p)[0], None


def torch_module(torch, cell, w):
    H, I = w[1].shape[1], w[0].shape[1]
    m = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(I, H)
    with torch.no_grad():
        for name, a in zip(("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"), w):
            getattr(m, name).copy_(torch.from_numpy(a))
    return m.eval()


def torch_outputs(torch, module, x, dtype=None):
    xt = torch.from_numpy(x)
    with torch.no_grad():
        y, state = module(xt if dtype is None else xt.to(dtype))
    c_n = state[1][0].double().numpy() if isinstance(state, tuple) else None
    return y.double().numpy(), c_n


def torch_bf16(torch, cell, w, x):
    return torch_outputs(torch, torch_module(torch, cell, w).to(torch.bfloat16), x, torch.bfloat16)


def torch_int8(torch, cell, w, x):
    m = torch_module(torch, cell, w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # the torch.ao deprecation notice
        q = torch.ao.quantization.quantize_dynamic(torch.nn.ModuleDict({"rnn": m}),
                                                   {torch.nn.LSTM, torch.nn.GRU}, dtype=torch.qint8)["rnn"]
    assert type(q) is not type(m), "quantize_dynamic left the module in float32"
    return torch_outputs(torch, q, x)


def ort_int8(w, x):
    """ONNX Runtime: an ONNX LSTM through quantize_dynamic (DynamicQuantizeLSTM)."""
    onnx = require_optional("onnx")
    ort = require_optional("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    T, B, I = x.shape
    H = w[1].shape[1]

    def onnx_gates(a):   # torch's i, f, g, o -> ONNX's i, o, f, c
        i, f, g, o = np.split(a, 4, axis=0)
        return np.concatenate([i, o, f, g], axis=0)

    inits = [numpy_helper.from_array(onnx_gates(w[0])[None], "W"),
             numpy_helper.from_array(onnx_gates(w[1])[None], "R"),
             numpy_helper.from_array(np.concatenate([onnx_gates(w[2]), onnx_gates(w[3])])[None], "B")]
    node = helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y", "", "Y_c"], hidden_size=H)
    graph = helper.make_graph(
        [node], "lstm", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, B, I])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [T, 1, B, H]),
         helper.make_tensor_value_info("Y_c", TensorProto.FLOAT, [1, B, H])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "f.onnx"), os.path.join(d, "q.onnx")
        onnx.save(model, src)
        quantize_dynamic(src, dst, op_types_to_quantize=["LSTM"], weight_type=QuantType.QInt8)
        q = onnx.load(dst)
        assert [n.op_type for n in q.graph.node] == ["DynamicQuantizeLSTM"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(dst, opts, providers=["CPUExecutionProvider"])
        y, c_n = sess.run(None, {"X": x})
    return y[:, 0].astype(np.float64), c_n[0].astype(np.float64)


def errors(out, ref):
    """(max, rms) error of y and c_n together."""
    diffs = [np.ravel(o - r) for o, r in zip(out, ref) if r is not None]
    assert all(np.all(np.isfinite(d)) for d in diffs)
    d = np.concatenate(diffs)
    return float(np.max(np.abs(d))), float(np.sqrt(np.mean(d ** 2)))


def compare(shape, ours, theirs, peer):
    """Runs every seed and asserts the comparison of the module docstring."""
    cell, T, B, I, H = shape
    mine, peers = [], []
    for seed in SEEDS:
        w, x = make(cell, T, B, I, H, seed)
        ref = reference_outputs(cell, w, x)
        a, b = errors(ours(w, x), ref), errors(theirs(w, x), ref)
        mine.append(a)
        peers.append(b)
        assert a[1] <= b[1], f"{shape} seed {seed}: RMS error {a[1]:.3e} > {peer}'s {b[1]:.3e}"
        assert a[0] <= MAX_SLACK * b[0], \
            f"{shape} seed {seed}: max error {a[0]:.3e} > {MAX_SLACK} x {peer}'s {b[0]:.3e}"
    mean_mine, mean_peer = np.mean([m[0] for m in mine]), np.mean([p[0] for p in peers])
    assert mean_mine <= mean_peer, \
        f"{shape}: mean max error {mean_mine:.3e} > {peer}'s {mean_peer:.3e} (per seed {mine} vs {peers})"


@pytest.fixture(autouse=True)
def one_thread(torch):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_bf16_no_worse_than_torch_bf16(torch, shape):
    cell = shape[0]
    compare(shape, lambda w, x: rnnkit_outputs(cell, w, x, "bfloat16"),
            lambda w, x: torch_bf16(torch, cell, w, x), "PyTorch bf16")


@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_int8_no_worse_than_torch_quantize_dynamic(torch, shape):
    cell = shape[0]
    compare(shape, lambda w, x: rnnkit_outputs(cell, w, x, "int8"),
            lambda w, x: torch_int8(torch, cell, w, x), "PyTorch int8")


@pytest.mark.parametrize("shape", [s for s in SHAPES if s[0] == "lstm"], ids=shape_id)
def test_int8_no_worse_than_onnxruntime_dynamic_quantize_lstm(shape):
    compare(shape, lambda w, x: rnnkit_outputs("lstm", w, x, "int8"), ort_int8, "ONNX Runtime int8")


@pytest.mark.parametrize("first", ["rnnkit", "onnxruntime"])
def test_onnxruntime_int8_runs_beside_rnnkit_amx_products(first):
    """ONNX Runtime's AMX int8 kernels take tiles they find configured for
    theirs: rnnkit's AMX calls leave the tiles as they found them. In a
    child process: a SIGILL there must not end the test run."""
    require_optional("onnxruntime")
    if "amx" not in rnnkit.available_isas():
        pytest.skip("this CPU has no AMX")
    here = os.path.dirname(os.path.abspath(__file__))
    code = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{here!r}, {os.path.dirname(here)!r}]
        import numpy as np, rnnkit
        import test_precision_peers as tp
        rng = np.random.default_rng(0)
        T, B, I, H = 20, 8, 32, 64
        w = [rng.uniform(-0.1, 0.1, s).astype(np.float32) for s in [(4 * H, I), (4 * H, H), (4 * H,), (4 * H,)]]
        x = rng.standard_normal((T, B, I)).astype(np.float32)
        def ours():
            with rnnkit.use_isa("amx"):
                for precision in ("int8", "bfloat16"):
                    rnnkit._core.lstm_forward(x, rnnkit._core.pack("lstm", *w, precision=precision))
        for step in (["rnnkit", "ort", "rnnkit", "ort"] if {first!r} == "rnnkit" else ["ort", "rnnkit", "ort"]):
            ours() if step == "rnnkit" else tp.ort_int8(w, x)
        print("ok")
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), (res.returncode, res.stderr[-2000:])
