"""rnnkit: fast CPU LSTM and GRU layers, forward and backward.

The kernels are C++ (one build per instruction set, chosen at import); this
module is the public Python API over them. Conventions are PyTorch's:
time-major input ``x`` of shape (T, B, I), weights ``weight_ih`` (G*H, I) and
``weight_hh`` (G*H, H) with gate order i, f, g, o for the LSTM (G = 4) and
r, z, n for the GRU (G = 3, "linear before reset" as in torch.nn.GRU by
default, or "reset before linear" as in Cho et al. 2014 and ONNX's default).

Weights are packed once (:func:`pack_lstm`, :func:`pack_gru`) and reused by
every call. ``training=True`` makes a forward call keep what the backward
call needs and return it as an opaque context.
"""

from __future__ import annotations

import contextlib
import os
from collections import namedtuple
from typing import Iterator, Optional, Tuple

import numpy as np
from numpy.typing import ArrayLike

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
    "layers", "LSTM", "GRU",
]

LSTMGrads = namedtuple("LSTMGrads", "dx dh0 dc0 dw_ih dw_hh db_ih db_hh")
GRUGrads = namedtuple("GRUGrads", "dx dh0 dw_ih dw_hh db_ih db_hh")
LSTMCellGrads = namedtuple("LSTMCellGrads", "dx dh dc dw_ih dw_hh db_ih db_hh")
GRUCellGrads = namedtuple("GRUCellGrads", "dx dh dw_ih dw_hh db_ih db_hh")


# ---- instruction set and threads -------------------------------------------

def isa() -> str:
    """Name of the instruction set that weights packed from now on use."""
    return _core.isa()


def available_isas() -> list:
    """Instruction sets this build has and this CPU runs, weakest first."""
    return _core.available_isas()


def set_isa(name: str) -> None:
    """Use the kernels of ``name`` ('scalar', 'avx2', 'avx512', 'neon') for
    weights packed from now on. Raises ValueError for an unknown name and
    RuntimeError for an instruction set this CPU or build lacks. Weights
    packed earlier keep the kernels they were packed for."""
    _core.set_isa(name)


@contextlib.contextmanager
def use_isa(name: str) -> Iterator[None]:
    """Context manager: :func:`set_isa` inside the block, restored after."""
    previous = _core.isa()
    _core.set_isa(name)
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


# ---- packing -----------------------------------------------------------------

def pack_lstm(weight_ih: np.ndarray, weight_hh: np.ndarray, bias_ih: Optional[np.ndarray] = None,
              bias_hh: Optional[np.ndarray] = None) -> PackedWeights:
    """Pack LSTM weights (PyTorch layout, gates i, f, g, o) for the active ISA.

    weight_ih (4H, I), weight_hh (4H, H), bias_ih / bias_hh (4H,) or None
    for zeros; float32 or float64, all the same dtype. After the weights
    change (an optimizer step), ``weights.update(weight_ih, weight_hh,
    bias_ih, bias_hh)`` packs the new ones into the same memory.
    """
    return _core.pack("lstm", weight_ih, weight_hh, bias_ih, bias_hh)


def _flag(value, name: str) -> bool:
    """A bool argument; the integers 0 and 1 (ONNX attribute values) count too."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        if value in (0, 1):
            return bool(value)
        raise ValueError(f"{name}: expected a bool (or 0 / 1), got {value!r}")
    raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")


def pack_gru(weight_ih: np.ndarray, weight_hh: np.ndarray, bias_ih: Optional[np.ndarray] = None,
             bias_hh: Optional[np.ndarray] = None, *, linear_before_reset: bool = True) -> PackedWeights:
    """Pack GRU weights (PyTorch layout, gates r, z, n).

    weight_ih (3H, I), weight_hh (3H, H), bias_ih / bias_hh (3H,) or None.
    ``linear_before_reset`` picks the form of the candidate gate n:
    True (PyTorch, cuDNN, ONNX linear_before_reset=1, Keras reset_after=True)
    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``; False (Cho et al. 2014,
    ONNX's default, Keras reset_after=False)
    ``n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)``. The forward, backward
    and cell functions follow the form the weights were packed with.
    """
    lbr = _flag(linear_before_reset, "linear_before_reset")
    return _core.pack("gru", weight_ih, weight_hh, bias_ih, bias_hh, lbr)


# ---- whole sequences -----------------------------------------------------------

def lstm_forward(x: np.ndarray, weights: PackedWeights, h0: Optional[np.ndarray] = None,
                 c0: Optional[np.ndarray] = None, *, reverse: bool = False, training: bool = False,
                 batch_sizes: Optional[ArrayLike] = None):
    """Run an LSTM layer over a sequence.

    x (T, B, I); h0, c0 (B, H) or None for zeros; ``reverse`` processes
    t = T-1 .. 0 (y stays indexed by time). Returns ``(y, h_n, c_n)`` with
    y (T, B, H), or ``(y, h_n, c_n, ctx)`` when ``training`` is true.
    The context refers to x rather than copying it: the backward call
    raises ValueError if x was changed in between (h0 and c0 are copied).

    Sequences of different lengths: ``batch_sizes`` (1-D integers, length
    T, non-increasing, every entry >= 1) is the number of sequences still
    running at each step, as in torch's PackedSequence. x is then packed
    (N, I), N = sum(batch_sizes): the rows of step t start at
    sum(batch_sizes[:t]) and row b of a step is sequence b, sequences
    sorted longest first. y comes back packed (N, H); h0, c0, h_n, c_n are
    (B, H) with B = batch_sizes[0], in the same order. h_n / c_n hold each
    sequence's state after its own last step; with ``reverse`` a sequence
    starts at its own end from h0 / c0 and ends at t = 0. No work is spent
    on padding.
    """
    return _core.lstm_forward(x, weights, h0, c0, reverse, training, batch_sizes)


def lstm_backward(ctx: TrainingContext, dy: Optional[np.ndarray] = None, dh_n: Optional[np.ndarray] = None,
                  dc_n: Optional[np.ndarray] = None) -> LSTMGrads:
    """Gradients of an LSTM layer given the loss gradients of its outputs
    (dy (T, B, H), dh_n, dc_n (B, H); None for zeros). Returns LSTMGrads
    (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh) in PyTorch layout. After a
    forward with ``batch_sizes``, dy and dx are packed: (N, H) and (N, I)."""
    return LSTMGrads(*_core.lstm_backward(ctx, dy, dh_n, dc_n))


def gru_forward(x: np.ndarray, weights: PackedWeights, h0: Optional[np.ndarray] = None, *,
                reverse: bool = False, training: bool = False, batch_sizes: Optional[ArrayLike] = None):
    """Run a GRU layer over a sequence. Returns ``(y, h_n)`` or
    ``(y, h_n, ctx)`` when ``training`` is true; see :func:`lstm_forward`,
    also for packed sequences (``batch_sizes``)."""
    return _core.gru_forward(x, weights, h0, reverse, training, batch_sizes)


def gru_backward(ctx: TrainingContext, dy: Optional[np.ndarray] = None,
                 dh_n: Optional[np.ndarray] = None) -> GRUGrads:
    """Gradients of a GRU layer: GRUGrads (dx, dh0, dw_ih, dw_hh, db_ih, db_hh);
    dy and dx packed after a forward with ``batch_sizes``."""
    return GRUGrads(*_core.gru_backward(ctx, dy, dh_n))


# ---- single steps --------------------------------------------------------------

def lstm_cell(x: np.ndarray, weights: PackedWeights, h: Optional[np.ndarray] = None,
              c: Optional[np.ndarray] = None, *, training: bool = False):
    """One LSTM step: x (B, I), h, c (B, H) -> ``(h1, c1)``, or
    ``(h1, c1, ctx)`` when ``training`` is true. For loops whose next input
    depends on the last output (decoders)."""
    return _core.lstm_cell(x, weights, h, c, training)


def lstm_cell_backward(ctx: TrainingContext, dh: Optional[np.ndarray] = None,
                       dc: Optional[np.ndarray] = None) -> LSTMCellGrads:
    """Gradients of one LSTM step: LSTMCellGrads (dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh)."""
    return LSTMCellGrads(*_core.lstm_cell_backward(ctx, dh, dc))


def gru_cell(x: np.ndarray, weights: PackedWeights, h: Optional[np.ndarray] = None, *, training: bool = False):
    """One GRU step: x (B, I), h (B, H) -> ``h1``, or ``(h1, ctx)`` when training."""
    return _core.gru_cell(x, weights, h, training)


def gru_cell_backward(ctx: TrainingContext, dh: Optional[np.ndarray] = None) -> GRUCellGrads:
    """Gradients of one GRU step: GRUCellGrads (dx, dh, dw_ih, dw_hh, db_ih, db_hh)."""
    return GRUCellGrads(*_core.gru_cell_backward(ctx, dh))


# ---- layers (imported last: they build on the functions above) -----------------

from . import layers  # noqa: E402
from .modules import GRU, LSTM  # noqa: E402
