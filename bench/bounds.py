"""GEMM-only lower bounds: a layer's matrix products alone, in each precision's fastest GEMM here.

Engines: float32 NumPy matmul (its BLAS; the float32 bound as it always was); bf16
torch.matmul on bfloat16 tensors (oneDNN: AMX or AVX512_BF16 where the CPU has them);
int8 u8 x s8 -> int32 products through ONNX Runtime's MatMulInteger (MLAS) or s8 x s8
through torch._int_mm. Per precision and thread count the run uses the engine with the
highest measured rate on a 2048^3 product (``measure_rates``) and says which. Operands are
rounded or quantized once, outside the timed call: a bound is the products alone, without
the conversions (and gate math) a layer pays.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import numpy as np

import timing
from cases import Case
from peers import optional_import

# Side of the square product whose rate picks each precision's engine (as sgemm_rate).
RATE_N = 2048


class Engine(NamedTuple):
    key: str
    label: str
    precision: str
    # None when usable, else why not.
    missing: Callable[[], Optional[str]]
    # (products, threads) -> a callable running every product once into preallocated outputs,
    # which it returns (a list, one per product).
    compile: Callable[[list, int], Callable[[], None]]


# ---- operand conversions (values are irrelevant to the timing, shapes and types are not) ----

def _quantize(a: np.ndarray, unsigned: bool) -> np.ndarray:
    """Symmetric per-tensor int8, as uint8 (+128) for the u8 x s8 VNNI/AMX form when unsigned."""
    scale = 127.0 / max(float(np.max(np.abs(a))), 1e-30)
    q = np.clip(np.rint(a * scale), -127, 127)
    return (q + 128).astype(np.uint8) if unsigned else q.astype(np.int8)


def _run_loop(products, convert_a, convert_b, empty, matmul):
    """A callable running the products one call each from Python, into preallocated outputs."""
    cache: dict = {}

    def conv(fn, a):
        # A weight that every step multiplies is converted (and stored) once.
        key = (id(fn), id(a))
        if key not in cache:
            cache[key] = (a, fn(a))
        return cache[key][1]
    calls = [(conv(convert_a, a), conv(convert_b, b), empty(a.shape[0], b.shape[1])) for a, b, _ in products]
    results = [c for _, _, c in calls]

    def run():
        for a, b, c in calls:
            matmul(a, b, c)
        return results
    return run


def _numpy_f32(products, _threads):
    return _run_loop(products, lambda a: a, lambda b: b, lambda m, n: np.empty((m, n), np.float32),
                     lambda a, b, c: np.matmul(a, b, out=c))


def _torch_bf16(products, _threads):
    torch = optional_import("torch")
    # .to() keeps a transposed view's strides, so a product on a transposed operand stays one.
    bf16 = lambda a: torch.from_numpy(a).to(torch.bfloat16)  # noqa: E731
    return _run_loop(products, bf16, bf16, lambda m, n: torch.empty((m, n), dtype=torch.bfloat16),
                     lambda a, b, c: torch.matmul(a, b, out=c))


def _torch_int8(products, _threads):
    torch = optional_import("torch")
    s8 = lambda a: torch.from_numpy(_quantize(np.ascontiguousarray(a), unsigned=False))  # noqa: E731
    return _run_loop(products, s8, s8, lambda m, n: torch.empty((m, n), dtype=torch.int32),
                     lambda a, b, c: torch._int_mm(a, b, out=c))


def _ort_int8(products, threads):
    """One graph with a MatMulInteger node per product, outputs bound to preallocated arrays."""
    from onnx import TensorProto, helper, numpy_helper
    import onnxruntime as ort
    from onnx_graph import IR_VERSION, OPSET, make_session

    inits, inputs, nodes, feeds, outs, u8 = {}, [], [], {}, {}, {}
    for i, (a, b, weight) in enumerate(products):
        # One input per product (identical nodes on one input would be merged by the
        # optimizer), bound to one quantized copy per distinct operand.
        name_a = f"a{i}"
        if id(a) not in u8:
            u8[id(a)] = (a, _quantize(np.ascontiguousarray(a), unsigned=True))
        feeds[name_a] = u8[id(a)][1]
        inputs.append(helper.make_tensor_value_info(name_a, TensorProto.UINT8, list(a.shape)))
        if weight:
            # Weights are initializers, so ORT packs them once, as it does a layer's.
            name_b = inits.setdefault(id(b), (f"w{len(inits)}", b))[0]
        else:
            name_b = f"b{i}"
            feeds[name_b] = _quantize(np.ascontiguousarray(b), unsigned=False)
            inputs.append(helper.make_tensor_value_info(name_b, TensorProto.INT8, list(b.shape)))
        outs[f"y{i}"] = np.empty((a.shape[0], b.shape[1]), np.int32)
        nodes.append(helper.make_node("MatMulInteger", [name_a, name_b], [f"y{i}"]))
    initializers = [numpy_helper.from_array(_quantize(b, unsigned=False), name) for name, b in inits.values()]
    outputs = [helper.make_tensor_value_info(n, TensorProto.INT32, list(y.shape)) for n, y in outs.items()]
    graph = helper.make_graph(nodes, "products", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    sess = make_session(model, threads)
    binding = sess.io_binding()
    for name, arr in feeds.items():
        binding.bind_cpu_input(name, arr)
    for name, arr in outs.items():
        binding.bind_ortvalue_output(name, ort.OrtValue.ortvalue_from_numpy(arr))
    results = list(outs.values())

    def run():
        sess.run_with_iobinding(binding)
        return results
    # The binding points into these arrays: they live as long as the callable.
    run.buffers = (feeds, outs)
    return run


def _needs(*modules):
    def missing():
        gone = [m for m in modules if optional_import(m) is None]
        return f"{', '.join(gone)} not importable" if gone else None
    return missing


def _torch_int_mm_missing():
    torch = optional_import("torch")
    if torch is None:
        return "torch not importable"
    # Older torch builds lack it, or have it for CUDA only: ask with a tiny product.
    try:
        torch._int_mm(torch.ones((17, 8), dtype=torch.int8), torch.ones((8, 8), dtype=torch.int8))
    except (AttributeError, RuntimeError, NotImplementedError) as e:
        return f"torch._int_mm unusable on CPU: {str(e).splitlines()[0][:80]}"
    return None


ENGINES = (
    Engine("numpy_f32", "NumPy matmul float32", "float32", _needs("numpy"), _numpy_f32),
    Engine("torch_bf16", "torch.matmul bfloat16", "bf16", _needs("torch"), _torch_bf16),
    Engine("ort_int8", "ONNX Runtime MatMulInteger u8 x s8", "int8", _needs("onnx", "onnxruntime"), _ort_int8),
    Engine("torch_int8", "torch._int_mm s8 x s8", "int8", _torch_int_mm_missing, _torch_int8),
)
BY_KEY = {e.key: e for e in ENGINES}


def engines(precision: str) -> list:
    """The usable engines of a precision."""
    return [e for e in ENGINES if e.precision == precision and e.missing() is None]


def fold_bound(stats: dict):
    """Timing stats with the "gemm:<engine>" entries replaced by the fastest as "gemm", and
    {engine key: median seconds} of every engine (empty when there were none)."""
    timed = {k.split(":", 1)[1]: v for k, v in stats.items() if k.startswith("gemm:")}
    out = {k: v for k, v in stats.items() if not k.startswith("gemm:")}
    if timed:
        out["gemm"] = min(timed.values(), key=lambda v: v["median_s"])
    return out, {k: v["median_s"] for k, v in timed.items()}


# ---- rates -------------------------------------------------------------------------

def engine_rate(engine: Engine, threads: int, n: int = RATE_N) -> float:
    """GFLOP/s of one n^3 product through `engine` (caller sets torch's / BLAS's threads)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    return timing.back_to_back_rate(engine.compile([(a, b, True)], threads), 2.0 * n ** 3)


def measure_rates(precisions, threads: int) -> dict:
    """precision -> {engine, label, gflops, candidates: {engine key: GFLOP/s}} at `threads`,
    the engine with the highest rate chosen; precisions without a usable engine are left out."""
    out = {}
    for precision in precisions:
        rates = {e.key: engine_rate(e, threads) for e in engines(precision)}
        if rates:
            best = max(rates, key=rates.get)
            out[precision] = {"engine": best, "label": BY_KEY[best].label, "gflops": rates[best],
                              "candidates": rates}
    return out


# ---- a layer's products --------------------------------------------------------------

def layer_products(case: Case, data: dict):
    """(products, priming products) of a case: lists of (a (M, K), b (K, N), b_is_weight), float32.

    Forward: [T*B, I] x [I, G*H] plus T [B, H] x [H, G*H]; training adds T [B, G*H] x [G*H, H]
    (dh), then dX, dW_ih and dW_hh as one product each."""
    T, B, I, H, GH = case.T, case.B, case.I, case.H, case.gates * case.H
    w_ih, w_hh = data["params"]["w_ih"], data["params"]["w_hh"]
    w_ih_t, w_hh_t = np.ascontiguousarray(w_ih.T), np.ascontiguousarray(w_hh.T)
    xs, h = data["x"].reshape(T * B, I), data["h0"]
    forward = [(xs, w_ih_t, True)] + [(h, w_hh_t, True)] * T
    # Priming: a product big enough for a threaded GEMM to use its threads (up to 256 rows).
    prime = forward if case.mode == "step" else [(xs[:min(T * B, 256)], w_ih_t, True)]
    if case.mode != "train":
        return forward, prime
    rng = np.random.default_rng(1)
    dgates = rng.uniform(-0.1, 0.1, (T * B, GH)).astype(np.float32)
    hs = rng.uniform(-0.5, 0.5, (T * B, H)).astype(np.float32)
    steps = dgates.reshape(T, B, GH)
    backward = [(steps[t], w_hh, True) for t in range(T - 1, -1, -1)]
    backward += [(dgates, w_ih, True), (dgates.T, xs, False), (dgates.T, hs, False)]
    return forward + backward, prime


def bound_callables(case: Case, data: dict, engine: Engine):
    """(timed call, priming call) of the case's products through `engine`."""
    products, prime = layer_products(case, data)
    return engine.compile(products, case.threads), engine.compile(prime, case.threads)
