"""The libraries compared: each turns a case and its data into a timed callable.

Every builder returns a Candidate (fn, extract, prime) or None where the peer
has no such mode. ``fn()`` does exactly the work that is timed; ``extract(result)``
turns one result into named NumPy arrays for the correctness check only;
``prime()`` is a one-time-step call of the same library, run untimed before
each timed call.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
from typing import Callable, NamedTuple, Optional

import numpy as np

import rnnkit
from rnnkit import reference

from cases import REFERENCE_MAX_FLOPS, Case


class Candidate(NamedTuple):
    fn: Callable[[], object]
    extract: Optional[Callable[[object], dict]]
    # A cheap call that wakes this peer's thread pool just before a timed call (see timing.py).
    prime: Optional[Callable[[], object]] = None


# Display order of the peers; "gemm" is the lower bound, not a library.
PEER_ORDER = ("rnnkit", "torch", "ort", "reference", "gemm")
LABELS = {"rnnkit": "rnnkit", "torch": "PyTorch", "ort": "ONNX Runtime", "reference": "NumPy ref",
          "gemm": "GEMM bound",
          # Reduced-precision cases (lowp_peers.py); there "rnnkit" is rnnkit in the case's precision.
          "rnnkit_f32": "rnnkit f32", "torch_bf16": "PyTorch bf16", "torch_autocast": "PyTorch autocast",
          "torch_int8": "PyTorch int8", "ort_int8": "ONNX RT int8"}

_modules: dict = {}


def optional_import(name: str):
    """The module, or None when it is not installed (cached)."""
    if name not in _modules:
        try:
            _modules[name] = importlib.import_module(name)
        except ImportError:
            _modules[name] = None
    return _modules[name]


def availability() -> dict:
    """Peer name -> None when usable, else why not."""
    why = {"rnnkit": None, "reference": None, "gemm": None}
    why["torch"] = None if optional_import("torch") else "torch not importable"
    missing = [m for m in ("onnx", "onnxruntime") if optional_import(m) is None]
    why["ort"] = f"{', '.join(missing)} not importable" if missing else None
    return why


# ---- data shared by all peers -------------------------------------------------

def make_data(cell: str, T: int, B: int, I: int, H: int, seed: int = 0) -> dict:
    """Inputs, ones as dy, and one weight set (PyTorch layout, PyTorch's init range) for every peer."""
    rng = np.random.default_rng(seed)
    G, k = (4 if cell == "lstm" else 3), 1.0 / np.sqrt(H)
    shapes = {"w_ih": (G * H, I), "w_hh": (G * H, H), "b_ih": (G * H,), "b_hh": (G * H,)}
    params = {n: rng.uniform(-k, k, s).astype(np.float32) for n, s in shapes.items()}
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    # Single steps get a non-zero state so the recurrent half does real work.
    h0 = rng.uniform(-0.5, 0.5, (B, H)).astype(np.float32)
    c0 = rng.uniform(-0.5, 0.5, (B, H)).astype(np.float32)
    return {"params": params, "x": x, "dy": np.ones((T, B, H), np.float32), "h0": h0, "c0": c0}


def _plist(params):
    return [params[n] for n in ("w_ih", "w_hh", "b_ih", "b_hh")]


# ---- rnnkit ---------------------------------------------------------------------

# rnnkit's names of the products' precisions.
CORE_PRECISION = {"float32": "float32", "bf16": "bfloat16", "int8": "int8"}


def pack_rnnkit(cell: str, params: dict, precision: str = "float32"):
    """rnnkit's packed weights with products in `precision` (float32 weights either way).

    Reduced precisions go through pack_lstm/pack_gru(precision=) where this rnnkit has it,
    else through the core's pack(), which has taken precision= since the low-precision core."""
    pack = rnnkit.pack_lstm if cell == "lstm" else rnnkit.pack_gru
    if precision == "float32":
        return pack(*_plist(params))
    name = CORE_PRECISION[precision]
    if "precision" in inspect.signature(pack).parameters:
        return pack(*_plist(params), precision=name)
    return rnnkit._core.pack(cell, *_plist(params), True, name)


def build_rnnkit(case: Case, data: dict) -> Candidate:
    lstm = case.cell == "lstm"
    forward = rnnkit.lstm_forward if lstm else rnnkit.gru_forward
    backward = rnnkit.lstm_backward if lstm else rnnkit.gru_backward
    p, x, dy = _plist(data["params"]), data["x"], data["dy"]
    w, x1 = pack_rnnkit(case.cell, data["params"], case.precision), x[:1]

    if case.mode == "inference":
        return Candidate(lambda: forward(x, w), lambda out: {"y": out[0]}, lambda: forward(x1, w))

    if case.mode == "step":
        x0, h, c = x[0], data["h0"], data["c0"]
        if lstm:
            step = lambda: rnnkit.lstm_cell(x0, w, h, c)  # noqa: E731
            return Candidate(step, lambda out: {"h": out[0], "c": out[1]}, step)
        step = lambda: rnnkit.gru_cell(x0, w, h)  # noqa: E731
        return Candidate(step, lambda out: {"h": out}, step)

    # A training step re-packs: weights change after every optimizer step.
    # It packs them into the memory of the previous step's packing, as a
    # training loop does (PackedWeights.update); reduced precisions re-round
    # the float32 master weights there.
    train_w = pack_rnnkit(case.cell, data["params"], case.precision)

    def train():
        train_w.update(*p)
        out = forward(x, train_w, training=True)
        return out[0], backward(out[-1], dy)

    def extract(out):
        y, g = out
        return {"y": y, "dx": g.dx, "dw_ih": g.dw_ih, "dw_hh": g.dw_hh, "db_ih": g.db_ih}
    return Candidate(train, extract, lambda: forward(x1, w))


# ---- PyTorch ---------------------------------------------------------------------

TORCH_NAMES = {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh"}


def load_torch(torch, mod, params: dict, suffix: str) -> None:
    """Copy the shared weights into a torch module (suffix "_l0" for nn.LSTM/nn.GRU, "" for cells)."""
    with torch.no_grad():
        for ours, theirs in TORCH_NAMES.items():
            getattr(mod, theirs + suffix).copy_(torch.from_numpy(params[ours]))


def build_torch(case: Case, data: dict) -> Candidate:
    torch = optional_import("torch")
    lstm = case.cell == "lstm"

    # Step latency: the Cell modules, under no_grad as an inference decoder runs them.
    if case.mode == "step":
        mod = (torch.nn.LSTMCell if lstm else torch.nn.GRUCell)(case.I, case.H)
        load_torch(torch, mod, data["params"], "")
        x0, h, c = (torch.from_numpy(a) for a in (data["x"][0], data["h0"], data["c0"]))

        def step():
            with torch.no_grad():
                return mod(x0, (h, c)) if lstm else mod(x0, h)
        def extract(out):
            return {"h": out[0].numpy(), "c": out[1].numpy()} if lstm else {"h": out.numpy()}
        return Candidate(step, extract, step)

    mod = (torch.nn.LSTM if lstm else torch.nn.GRU)(case.I, case.H)
    load_torch(torch, mod, data["params"], "_l0")
    return torch_sequence(case, data, mod)


def _to_numpy(t) -> np.ndarray:
    return t.detach().float().numpy()


def torch_sequence(case: Case, data: dict, mod, dtype=None, region=contextlib.nullcontext) -> Candidate:
    """Inference or training call of a torch nn.LSTM/nn.GRU-like module (weights loaded).

    dtype: the input's dtype when not float32 (a bfloat16 module's); region: a context
    every call runs in (an autocast region)."""
    torch = optional_import("torch")

    def tensor(a):
        t = torch.from_numpy(a)
        return t if dtype is None else t.to(dtype)
    x1 = tensor(data["x"][:1])

    def prime():
        with torch.no_grad(), region():
            return mod(x1)

    if case.mode == "inference":
        mod.eval()
        xt = tensor(data["x"])

        def infer():
            with torch.no_grad(), region():
                return mod(xt)
        return Candidate(infer, lambda out: {"y": _to_numpy(out[0])}, prime)

    # Training: zero the grads, forward with an input that wants its gradient, backward with dy.
    mod.train()
    params = [mod.weight_ih_l0, mod.weight_hh_l0, mod.bias_ih_l0, mod.bias_hh_l0]
    xt = tensor(data["x"].copy()).requires_grad_(True)
    # dy in the output's dtype (autocast returns bfloat16 from some modules, float32 from others).
    dys = {d: torch.from_numpy(data["dy"]).to(d) for d in (torch.float32, torch.bfloat16)}

    def train():
        mod.zero_grad(set_to_none=True)
        xt.grad = None
        with region():
            y, _ = mod(xt)
        y.backward(dys[y.dtype])
        return y, xt.grad, [q.grad for q in params]

    def extract(out):
        y, dx, g = out
        return {"y": _to_numpy(y), "dx": _to_numpy(dx), "dw_ih": _to_numpy(g[0]), "dw_hh": _to_numpy(g[1]),
                "db_ih": _to_numpy(g[2])}
    return Candidate(train, extract, prime)


# ---- ONNX Runtime ------------------------------------------------------------------

def build_ort(case: Case, data: dict) -> Optional[Candidate]:
    # ONNX Runtime's CPU package runs inference only.
    if case.mode == "train":
        return None
    from onnx_graph import build_model

    model = build_model(case.cell, case.B, case.I, case.H, data["params"], with_state=case.mode == "step")
    return ort_candidate(case, data, model)


def ort_candidate(case: Case, data: dict, model) -> Candidate:
    """A session of `model` (an onnx_graph model, or one derived from it) run on the case's input."""
    from onnx_graph import make_session

    step = case.mode == "step"
    sess = make_session(model, case.threads)
    feeds = {"X": data["x"]}
    if step:
        feeds["initial_h"] = data["h0"][None]
        if case.cell == "lstm":
            feeds["initial_c"] = data["c0"][None]
    names = [o.name for o in sess.get_outputs()]

    run = lambda: sess.run(names, feeds)  # noqa: E731
    if step:
        return Candidate(run, lambda out: {"h": out[1][0]}, run)
    # The model's T is symbolic, so one time step through the same session wakes its pool.
    feeds1 = {"X": data["x"][:1]}
    return Candidate(run, lambda out: {"y": out[0][:, 0]}, lambda: sess.run(names, feeds1))


# ---- NumPy float64 reference ----------------------------------------------------------

def build_reference(case: Case, data: dict) -> Optional[Candidate]:
    # float64 and one Python step per time step: only small shapes, never single steps.
    if case.mode == "step" or case.forward_flops >= REFERENCE_MAX_FLOPS:
        return None
    return reference_run(case, data)


def reference_run(case: Case, data: dict) -> Candidate:
    """The float64 reference's forward (inference) or forward and backward (train), any size."""
    lstm = case.cell == "lstm"
    p = [a.astype(np.float64) for a in _plist(data["params"])]
    x, dy = data["x"].astype(np.float64), data["dy"].astype(np.float64)
    forward = reference.lstm_forward if lstm else reference.gru_forward

    if case.mode == "inference":
        return Candidate(lambda: forward(x, *p), lambda out: {"y": out[0]})

    def train():
        out = forward(x, *p)
        g = reference.lstm_backward(dy, None, None, out[-1]) if lstm else reference.gru_backward(dy, None, out[-1])
        return out[0], g

    def extract(out):
        y, g = out
        k = 3 if lstm else 2  # index of dw_ih in the gradient tuple
        return {"y": y, "dx": g[0], "dw_ih": g[k], "dw_hh": g[k + 1], "db_ih": g[k + 2]}
    return Candidate(train, extract)


# ---- GEMM-only lower bound ---------------------------------------------------------------

def build_gemm(case: Case, data: dict) -> Candidate:
    """The layer's matrix products alone through NumPy's BLAS (float32), outputs preallocated."""
    import bounds

    run, prime = bounds.bound_callables(case, data, bounds.BY_KEY["numpy_f32"])
    return Candidate(run, None, prime)


BUILDERS = {"rnnkit": build_rnnkit, "torch": build_torch, "ort": build_ort, "reference": build_reference,
            "gemm": build_gemm}


def build_all(case: Case, data: dict, usable) -> dict:
    """Peer name -> Candidate for every usable peer that has this case's mode."""
    out = {}
    for name in PEER_ORDER:
        if name in usable:
            cand = BUILDERS[name](case, data)
            if cand is not None:
                out[name] = cand
    return out
