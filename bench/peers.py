"""The libraries compared: each turns a case and its data into a timed callable.

Every builder returns a Candidate (fn, extract, prime) or None where the peer
has no such mode. ``fn()`` does exactly the work that is timed; ``extract(result)``
turns one result into named NumPy arrays for the correctness check only;
``prime()`` is a one-time-step call of the same library, run untimed before
each timed call.
"""

from __future__ import annotations

import importlib
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
          "gemm": "GEMM bound"}

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

def build_rnnkit(case: Case, data: dict) -> Candidate:
    lstm = case.cell == "lstm"
    pack = rnnkit.pack_lstm if lstm else rnnkit.pack_gru
    forward = rnnkit.lstm_forward if lstm else rnnkit.gru_forward
    backward = rnnkit.lstm_backward if lstm else rnnkit.gru_backward
    p, x, dy = _plist(data["params"]), data["x"], data["dy"]
    w, x1 = pack(*p), x[:1]

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
    # training loop does (PackedWeights.update).
    train_w = pack(*p)

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


def _load_torch(torch, mod, params: dict, suffix: str) -> None:
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
        _load_torch(torch, mod, data["params"], "")
        x0, h, c = (torch.from_numpy(a) for a in (data["x"][0], data["h0"], data["c0"]))

        def step():
            with torch.no_grad():
                return mod(x0, (h, c)) if lstm else mod(x0, h)
        def extract(out):
            return {"h": out[0].numpy(), "c": out[1].numpy()} if lstm else {"h": out.numpy()}
        return Candidate(step, extract, step)

    mod = (torch.nn.LSTM if lstm else torch.nn.GRU)(case.I, case.H)
    _load_torch(torch, mod, data["params"], "_l0")
    params = [mod.weight_ih_l0, mod.weight_hh_l0, mod.bias_ih_l0, mod.bias_hh_l0]
    x1 = torch.from_numpy(data["x"][:1])

    def prime():
        with torch.no_grad():
            return mod(x1)

    if case.mode == "inference":
        mod.eval()
        xt = torch.from_numpy(data["x"])

        def infer():
            with torch.no_grad():
                return mod(xt)
        return Candidate(infer, lambda out: {"y": out[0].numpy()}, prime)

    # Training: zero the grads, forward with an input that wants its gradient, backward with dy.
    mod.train()
    xt = torch.from_numpy(data["x"].copy()).requires_grad_(True)
    dyt = torch.from_numpy(data["dy"])

    def train():
        mod.zero_grad(set_to_none=True)
        xt.grad = None
        y, _ = mod(xt)
        y.backward(dyt)
        return y, xt.grad, [q.grad for q in params]

    def extract(out):
        y, dx, g = out
        return {"y": y.detach().numpy(), "dx": dx.numpy(), "dw_ih": g[0].numpy(), "dw_hh": g[1].numpy(),
                "db_ih": g[2].numpy()}
    return Candidate(train, extract, prime)


# ---- ONNX Runtime ------------------------------------------------------------------

def build_ort(case: Case, data: dict) -> Optional[Candidate]:
    # ONNX Runtime's CPU package runs inference only.
    if case.mode == "train":
        return None
    from onnx_model import build_model, make_session

    step = case.mode == "step"
    model = build_model(case.cell, case.B, case.I, case.H, data["params"], with_state=step)
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
    """The layer's matrix products alone through NumPy's BLAS, outputs preallocated."""
    T, B, I, H, GH = case.T, case.B, case.I, case.H, case.gates * case.H
    rng = np.random.default_rng(1)
    w_ih_t = np.ascontiguousarray(data["params"]["w_ih"].T)  # (I, GH)
    w_hh_t = np.ascontiguousarray(data["params"]["w_hh"].T)  # (H, GH)
    w_ih, w_hh = data["params"]["w_ih"], data["params"]["w_hh"]
    xs = data["x"].reshape(T * B, I)
    h = data["h0"]
    gates_x = np.empty((T * B, GH), np.float32)
    gates_h = np.empty((T, B, GH), np.float32)

    def forward():
        np.matmul(xs, w_ih_t, out=gates_x)
        for t in range(T):
            np.matmul(h, w_hh_t, out=gates_h[t])

    # Priming: a product big enough for OpenBLAS to use its threads (up to 256 rows).
    rows = min(T * B, 256)
    prime = forward if case.mode == "step" else (lambda: np.matmul(xs[:rows], w_ih_t, out=gates_x[:rows]))
    if case.mode != "train":
        return Candidate(forward, None, prime)

    # Backward: per-step dh = dgates W_hh, then dX, dW_ih, dW_hh as one product each.
    dgates = rng.uniform(-0.1, 0.1, (T * B, GH)).astype(np.float32)
    dgates_t = dgates.reshape(T, B, GH)
    hs = rng.uniform(-0.5, 0.5, (T * B, H)).astype(np.float32)
    dh = np.empty((B, H), np.float32)
    dx = np.empty((T * B, I), np.float32)
    dw_ih = np.empty((GH, I), np.float32)
    dw_hh = np.empty((GH, H), np.float32)

    def train():
        forward()
        for t in range(T - 1, -1, -1):
            np.matmul(dgates_t[t], w_hh, out=dh)
        np.matmul(dgates, w_ih, out=dx)
        np.matmul(dgates.T, xs, out=dw_ih)
        np.matmul(dgates.T, hs, out=dw_hh)
    return Candidate(train, None, prime)


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
