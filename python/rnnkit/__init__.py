"""rnnkit: fast CPU LSTM and GRU layers, forward and backward.

The kernels are C++ (one build per instruction set, chosen at import); this
module is the public Python API over them. Conventions are PyTorch's:
time-major input ``x`` of shape (T, B, I), weights ``weight_ih`` (G*H, I) and
``weight_hh`` (G*H, H) with gate order i, f, g, o for the LSTM (G = 4) and
r, z, n for the GRU (G = 3, "linear before reset" as in torch.nn.GRU by
default, or "reset before linear" as in Cho et al. 2014 and ONNX's default).

Weights are packed once (:func:`pack_lstm`, :func:`pack_gru`) and reused by
every call, for products in their own dtype or, from float32 weights, in
``precision="bfloat16"`` or ``"int8"`` (inference only); inputs, states and
outputs stay float32 (or bfloat16 arrays of ``ml_dtypes``, where installed). ``training=True`` makes a forward call keep what the backward
call needs and return it as an opaque context.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

from . import _core
from . import reference
from ._core import PackedWeights, TrainingContext

__version__ = "0.1.0"

__all__ = [
    "PackedWeights", "TrainingContext", "LSTMGrads", "GRUGrads", "LSTMCellGrads", "GRUCellGrads",
    "isa", "available_isas", "set_isa", "use_isa", "set_num_threads", "get_num_threads",
    "workspace_cache_bytes", "clear_workspace_cache",
    "pack_lstm", "pack_gru", "lstm_forward", "lstm_backward", "gru_forward", "gru_backward",
    "lstm_cell", "lstm_cell_backward", "gru_cell", "gru_cell_backward", "reference",
    "layers", "functional", "modules", "LSTM", "GRU",
]

# ---- instruction set and threads -------------------------------------------

def isa() -> str:
    """Name of the instruction set that weights packed from now on use."""
    return _core.isa()


def available_isas() -> list:
    """Instruction sets this build has and this CPU runs, weakest first."""
    return _core.available_isas()


def set_isa(name: str) -> None:
    """Use the kernels of ``name`` for weights packed from now on: 'scalar',
    'avx2', 'avx2_vnni' (AVX2 with AVX-VNNI int8 products), 'avx512',
    'avx512_vnni' (int8 products), 'avx512_bf16' (bf16 and int8 products),
    'amx' (AMX tile products), 'neon'. The float32/float64 kernels of the
    VNNI, BF16 and AMX sets are those of 'avx2' / 'avx512'. Raises ValueError for an unknown name and
    RuntimeError for an instruction set this CPU or build lacks. Weights
    packed earlier keep the kernels they were packed for."""
    _core.set_isa(_isa_name(name))


def _isa_name(name) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name: expected an instruction set name (str) such as 'avx2', got {type(name).__name__}")
    return name


@contextlib.contextmanager
def use_isa(name: str) -> Iterator[None]:
    """Context manager: :func:`set_isa` inside the block, restored after."""
    previous = _core.isa()
    _core.set_isa(_isa_name(name))
    try:
        yield
    finally:
        _core.set_isa(previous)


def set_num_threads(n: int) -> None:
    """Threads the kernels use (default: OpenMP's, i.e. OMP_NUM_THREADS or
    the core count, at most 1024). Results are bitwise identical for any
    count. ``n`` must be an int from 1 to 1024 (TypeError for other types,
    ValueError outside that range). A process made by ``fork()`` runs
    single-threaded whatever is asked (GNU OpenMP's threads do not survive
    a fork); ``get_num_threads()`` then returns 1 and asking for more warns once."""
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """Threads the kernels use."""
    return _core.get_num_threads()


def workspace_cache_bytes() -> int:
    """Bytes of freed workspace kept for reuse. Training steps allocate the
    same large buffers every call; keeping them saves the page faults of
    fresh memory (at most 16 blocks and 512 MiB are kept). Large output
    arrays (y, dx, weight gradients) come from the same cache and return
    to it when they are garbage collected."""
    return _core.workspace_cache_bytes()


def clear_workspace_cache() -> int:
    """Returns the kept workspace to the system; returns the bytes freed."""
    return _core.clear_workspace_cache()


# RNNKIT_ISA forces an instruction set at import; a name this CPU cannot run
# fails here, with the list of what it can, instead of crashing later.
_forced = os.environ.get("RNNKIT_ISA")
if _forced:
    try:
        _core.set_isa(_forced)
    except (ValueError, RuntimeError) as exc:
        raise ImportError(f"RNNKIT_ISA={_forced!r}: {exc}") from None
del _forced


# ---- the API (each module imports only those below it: no import circle) --------

from . import functional, layers, modules  # noqa: E402
from .functional import (  # noqa: E402
    GRUCellGrads, GRUGrads, LSTMCellGrads, LSTMGrads, gru_backward, gru_cell, gru_cell_backward, gru_forward,
    lstm_backward, lstm_cell, lstm_cell_backward, lstm_forward, pack_gru, pack_lstm)
from .modules import GRU, LSTM  # noqa: E402
