"""The candidates of a reduced-precision case (see peers.py for the Candidate contract).

bf16: rnnkit bf16, rnnkit's own float32 beside it, PyTorch's module in bfloat16 (weights and
input bf16), PyTorch's float32 module under torch.autocast("cpu", dtype=torch.bfloat16), and
the GEMM-only bound in bf16. int8 (inference): rnnkit int8, rnnkit float32, PyTorch's
quantize_dynamic (qint8), ONNX Runtime's DynamicQuantizeLSTM (LSTM only: ORT quantizes no
GRU), and the GEMM-only bound in int8. All on the same float32 weights and inputs as the
float32 suite; each peer rounds or quantizes them its own way.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Optional

import bounds
import peers
from cases import Case
from peers import Candidate, optional_import

# Candidates per precision in display order: "rnnkit" is rnnkit in that precision.
ORDER = {"bf16": ("rnnkit", "rnnkit_f32", "torch_bf16", "torch_autocast", "gemm"),
         "int8": ("rnnkit", "rnnkit_f32", "torch_int8", "ort_int8", "gemm")}
# rnnkit's competitors (its own float32 and the bound are yardsticks, not rivals).
RIVALS = {"bf16": ("torch_bf16", "torch_autocast"), "int8": ("torch_int8", "ort_int8")}
# The --peers entry each candidate belongs to.
LIBRARY = {"rnnkit": "rnnkit", "rnnkit_f32": "rnnkit", "torch_bf16": "torch", "torch_autocast": "torch",
           "torch_int8": "torch", "ort_int8": "ort", "gemm": "gemm"}
NOT_SUPPORTED = "n/a (not supported by this build)"

_support: dict = {}


def availability() -> dict:
    """Candidate -> why it cannot run, for those of the usable libraries that cannot."""
    why = {}
    if optional_import("torch") is not None and optional_import("torch.ao.quantization") is None:
        why["torch_int8"] = "torch.ao.quantization not importable"
    if optional_import("onnxruntime") is not None and optional_import("onnxruntime.quantization") is None:
        why["ort_int8"] = "onnxruntime.quantization not importable"
    return why


def rnnkit_missing(precision: str, mode: str, cell: str = "lstm") -> Optional[str]:
    """None when this rnnkit runs `mode` with products in `precision`, else NOT_SUPPORTED.

    Asked of the build itself on a tiny layer: packs that cannot train raise ValueError
    when asked to (packing itself must work: its errors are not taken for "unsupported")."""
    key = (precision, mode, cell)
    if key not in _support:
        cand = peers.build_rnnkit(Case(cell, mode, 2, 1, 3, 4, 1, precision), peers.make_data(cell, 2, 1, 3, 4))
        try:
            cand.fn()
            _support[key] = None
        except ValueError:
            _support[key] = NOT_SUPPORTED
    return _support[key]


# ---- rnnkit ------------------------------------------------------------------------

def build_rnnkit(case: Case, data: dict) -> Optional[Candidate]:
    if rnnkit_missing(case.precision, case.mode, case.cell):
        return None
    return peers.build_rnnkit(case, data)


def build_rnnkit_f32(case: Case, data: dict) -> Candidate:
    return peers.build_rnnkit(dataclasses.replace(case, precision="float32"), data)


# ---- PyTorch -----------------------------------------------------------------------

def _torch_module(case: Case, data: dict):
    torch = optional_import("torch")
    mod = (torch.nn.LSTM if case.cell == "lstm" else torch.nn.GRU)(case.I, case.H)
    peers.load_torch(torch, mod, data["params"], "_l0")
    return mod


def build_torch_bf16(case: Case, data: dict) -> Candidate:
    """The module converted to bfloat16 (module.to(torch.bfloat16)), fed bfloat16 input."""
    torch = optional_import("torch")
    mod = _torch_module(case, data).to(torch.bfloat16)
    return peers.torch_sequence(case, data, mod, dtype=torch.bfloat16)


def build_torch_autocast(case: Case, data: dict) -> Candidate:
    """The float32 module, every call inside torch.autocast("cpu", dtype=torch.bfloat16)."""
    torch = optional_import("torch")
    return peers.torch_sequence(case, data, _torch_module(case, data),
                                region=lambda: torch.autocast("cpu", dtype=torch.bfloat16))


def build_torch_int8(case: Case, data: dict) -> Optional[Candidate]:
    """torch.ao.quantization.quantize_dynamic(qint8) of the module: int8 weights, dynamic activations."""
    if case.mode != "inference":
        return None
    torch = optional_import("torch")
    mod = _torch_module(case, data)
    with warnings.catch_warnings():
        # Its deprecation notice is no news to a benchmark.
        warnings.simplefilter("ignore")
        # quantize_dynamic swaps a model's children, never the model itself: hence the container.
        qmod = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(mod), {torch.nn.LSTM, torch.nn.GRU},
                                                      dtype=torch.qint8)[0]
    if isinstance(qmod, (torch.nn.LSTM, torch.nn.GRU)):
        raise RuntimeError(f"torch quantize_dynamic left the {case.cell.upper()} in float32")
    return peers.torch_sequence(case, data, qmod)


# ---- ONNX Runtime ------------------------------------------------------------------

def build_ort_int8(case: Case, data: dict) -> Optional[Candidate]:
    if case.mode != "inference" or case.cell != "lstm":
        return None
    from onnx_graph import build_model, quantize_int8

    model = quantize_int8(build_model(case.cell, case.B, case.I, case.H, data["params"], with_state=False))
    return peers.ort_candidate(case, data, model)


# ---- GEMM-only bound ----------------------------------------------------------------

def build_gemm(case: Case, data: dict, engine: bounds.Engine) -> Candidate:
    run, prime = bounds.bound_callables(case, data, engine)
    return Candidate(run, None, prime)


BUILDERS = {"rnnkit": build_rnnkit, "rnnkit_f32": build_rnnkit_f32, "torch_bf16": build_torch_bf16,
            "torch_autocast": build_torch_autocast, "torch_int8": build_torch_int8, "ort_int8": build_ort_int8}


def build_all(case: Case, data: dict, usable) -> dict:
    """Candidate name -> Candidate for every usable library with this case's mode. The bound
    comes once per GEMM engine of the precision, as "gemm:<engine>" (bounds.fold_bound
    keeps the fastest as "gemm" after timing)."""
    out, why = {}, availability()
    for name in ORDER[case.precision]:
        if LIBRARY[name] not in usable or name in why:
            continue
        if name == "gemm":
            for engine in bounds.engines(case.precision):
                out[f"gemm:{engine.key}"] = build_gemm(case, data, engine)
            continue
        cand = BUILDERS[name](case, data)
        if cand is not None:
            out[name] = cand
    return out
