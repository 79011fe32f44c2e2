"""Single-layer, single-direction LSTM/GRU functions over the compiled core:
packing, whole sequences and single steps. :mod:`rnnkit.layers` stacks
them; ``rnnkit`` re-exports every name here.

Python owns the defaults and the checks of flags; the core checks arrays.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Optional

import numpy as np
from numpy.typing import ArrayLike

from . import _core
from ._common import as_bool, bfloat16_dtype, from_bfloat16, is_bfloat16, like_input, precision_name
from ._core import PackedWeights, TrainingContext

__all__ = [
    "LSTMGrads", "GRUGrads", "LSTMCellGrads", "GRUCellGrads", "pack_lstm", "pack_gru",
    "lstm_forward", "lstm_backward", "gru_forward", "gru_backward",
    "lstm_cell", "lstm_cell_backward", "gru_cell", "gru_cell_backward",
]

LSTMGrads = namedtuple("LSTMGrads", "dx dh0 dc0 dw_ih dw_hh db_ih db_hh")
GRUGrads = namedtuple("GRUGrads", "dx dh0 dw_ih dw_hh db_ih db_hh")
LSTMCellGrads = namedtuple("LSTMCellGrads", "dx dh dc dw_ih dw_hh db_ih db_hh")
GRUCellGrads = namedtuple("GRUCellGrads", "dx dh dw_ih dw_hh db_ih db_hh")


# ---- packing -----------------------------------------------------------------

def pack_lstm(weight_ih: np.ndarray, weight_hh: np.ndarray, bias_ih: Optional[np.ndarray] = None,
              bias_hh: Optional[np.ndarray] = None, *, precision: Optional[str] = None) -> PackedWeights:
    """Pack LSTM weights (PyTorch layout, gates i, f, g, o) for the active ISA.

    weight_ih (4H, I), weight_hh (4H, H), bias_ih / bias_hh (4H,) or None
    for zeros; float32 or float64, all the same dtype. After the weights
    change (an optimizer step), ``weights.update(weight_ih, weight_hh,
    bias_ih, bias_hh)`` packs the new ones into the same memory.
    No copy of the weights is kept: ``weights.unpack()`` reads them back
    from the packed layout exactly, and ``weights.matches(weight_ih,
    weight_hh, bias_ih, bias_hh)`` tells, bit for bit, whether arrays are
    still what was packed.

    ``precision`` is what the products take (``PackedWeights.precision``):
    the weights' dtype by default; ``"bfloat16"`` (products of bfloat16
    operands summed in float32) or ``"int8"`` (weights quantized per output
    row here, inputs and states per row and step; inference only) pack
    float32 weights. In every precision the forward functions take and
    return float32 (bfloat16 arrays of ``ml_dtypes`` are taken too and give
    bfloat16 results); bias, gate math and cell state stay float32.
    Weights given as bfloat16 arrays are read as float32 (exactly) and
    default to ``"bfloat16"``. For such packs ``unpack()`` returns the
    values the products use (bfloat16 values, or int8 levels times their
    scale) and ``matches()`` tells whether packing the arrays would give
    the same panels.
    """
    w_ih, w_hh, b_ih, b_hh, precision = _pack_arguments(weight_ih, weight_hh, bias_ih, bias_hh, precision)
    return _core.pack("lstm", w_ih, w_hh, b_ih, b_hh, True, precision)


def pack_gru(weight_ih: np.ndarray, weight_hh: np.ndarray, bias_ih: Optional[np.ndarray] = None,
             bias_hh: Optional[np.ndarray] = None, *, linear_before_reset: bool = True,
             precision: Optional[str] = None) -> PackedWeights:
    """Pack GRU weights (PyTorch layout, gates r, z, n).

    weight_ih (3H, I), weight_hh (3H, H), bias_ih / bias_hh (3H,) or None.
    ``linear_before_reset`` picks the form of the candidate gate n:
    True (PyTorch, cuDNN, ONNX linear_before_reset=1, Keras reset_after=True)
    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``; False (Cho et al. 2014,
    ONNX's default, Keras reset_after=False)
    ``n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)``. The forward, backward
    and cell functions follow the form the weights were packed with.
    ``precision``: as in :func:`pack_lstm`.
    """
    lbr = as_bool(linear_before_reset, "linear_before_reset", zero_one=True)
    w_ih, w_hh, b_ih, b_hh, precision = _pack_arguments(weight_ih, weight_hh, bias_ih, bias_hh, precision)
    return _core.pack("gru", w_ih, w_hh, b_ih, b_hh, lbr, precision)


def _pack_arguments(weight_ih, weight_hh, bias_ih, bias_hh, precision):
    """The arrays (bfloat16 ones as float32) and the precision name for
    _core.pack: the one asked for, else that of the weights' dtype."""
    given_bf16 = any(is_bfloat16(a) for a in (weight_ih, weight_hh, bias_ih, bias_hh))
    if precision is None:
        dtype = getattr(weight_ih, "dtype", None)
        precision = "bfloat16" if given_bf16 else "float64" if dtype == np.float64 else "float32"
    else:
        precision = precision_name(precision)
    arrays = [from_bfloat16(a) for a in (weight_ih, weight_hh, bias_ih, bias_hh)]
    return (*arrays, precision)


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

    x, h0 and c0 are of the weights' dtype (float32 for bfloat16 and int8
    packs), or bfloat16 arrays (``ml_dtypes``; read as float32, exactly):
    y, h_n and c_n come back as bfloat16 when x is bfloat16. With a
    bfloat16 or int8 pack the products round their operands (x and h) to
    that precision; everything else is float32. Training with an int8 pack
    is a ValueError (inference only). Gradients (the backward functions,
    which also take bfloat16 dy / dh_n / dc_n) are float32.
    """
    bf16 = bfloat16_dtype(x)
    out = _core.lstm_forward(from_bfloat16(x), weights, from_bfloat16(h0), from_bfloat16(c0),
                             as_bool(reverse, "reverse"), as_bool(training, "training"), batch_sizes)
    return _like_input(out, bf16)


def _like_input(results, bf16):
    """Arrays of a forward call's result in the input's dtype (bfloat16
    when x was); the training context, if any, as it is."""
    if bf16 is None:
        return results
    if isinstance(results, np.ndarray):
        return like_input(results, bf16)
    return tuple(like_input(r, bf16) if isinstance(r, np.ndarray) else r for r in results)


def lstm_backward(ctx: TrainingContext, dy: Optional[np.ndarray] = None, dh_n: Optional[np.ndarray] = None,
                  dc_n: Optional[np.ndarray] = None) -> LSTMGrads:
    """Gradients of an LSTM layer given the loss gradients of its outputs
    (dy (T, B, H), dh_n, dc_n (B, H); None for zeros). Returns LSTMGrads
    (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh) in PyTorch layout. After a
    forward with ``batch_sizes``, dy and dx are packed: (N, H) and (N, I)."""
    return LSTMGrads(*_core.lstm_backward(ctx, from_bfloat16(dy), from_bfloat16(dh_n), from_bfloat16(dc_n)))


def gru_forward(x: np.ndarray, weights: PackedWeights, h0: Optional[np.ndarray] = None, *,
                reverse: bool = False, training: bool = False, batch_sizes: Optional[ArrayLike] = None):
    """Run a GRU layer over a sequence. Returns ``(y, h_n)`` or
    ``(y, h_n, ctx)`` when ``training`` is true; see :func:`lstm_forward`,
    also for packed sequences (``batch_sizes``)."""
    out = _core.gru_forward(from_bfloat16(x), weights, from_bfloat16(h0), as_bool(reverse, "reverse"),
                            as_bool(training, "training"), batch_sizes)
    return _like_input(out, bfloat16_dtype(x))


def gru_backward(ctx: TrainingContext, dy: Optional[np.ndarray] = None,
                 dh_n: Optional[np.ndarray] = None) -> GRUGrads:
    """Gradients of a GRU layer: GRUGrads (dx, dh0, dw_ih, dw_hh, db_ih, db_hh);
    dy and dx packed after a forward with ``batch_sizes``."""
    return GRUGrads(*_core.gru_backward(ctx, from_bfloat16(dy), from_bfloat16(dh_n)))


# ---- single steps --------------------------------------------------------------

def lstm_cell(x: np.ndarray, weights: PackedWeights, h: Optional[np.ndarray] = None,
              c: Optional[np.ndarray] = None, *, training: bool = False):
    """One LSTM step: x (B, I), h, c (B, H) -> ``(h1, c1)``, or
    ``(h1, c1, ctx)`` when ``training`` is true. For loops whose next input
    depends on the last output (decoders)."""
    out = _core.lstm_cell(from_bfloat16(x), weights, from_bfloat16(h), from_bfloat16(c), as_bool(training, "training"))
    return _like_input(out, bfloat16_dtype(x))


def lstm_cell_backward(ctx: TrainingContext, dh: Optional[np.ndarray] = None,
                       dc: Optional[np.ndarray] = None) -> LSTMCellGrads:
    """Gradients of one LSTM step: LSTMCellGrads (dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh)."""
    return LSTMCellGrads(*_core.lstm_cell_backward(ctx, from_bfloat16(dh), from_bfloat16(dc)))


def gru_cell(x: np.ndarray, weights: PackedWeights, h: Optional[np.ndarray] = None, *, training: bool = False):
    """One GRU step: x (B, I), h (B, H) -> ``h1``, or ``(h1, ctx)`` when training."""
    out = _core.gru_cell(from_bfloat16(x), weights, from_bfloat16(h), as_bool(training, "training"))
    return _like_input(out, bfloat16_dtype(x))


def gru_cell_backward(ctx: TrainingContext, dh: Optional[np.ndarray] = None) -> GRUCellGrads:
    """Gradients of one GRU step: GRUCellGrads (dx, dh, dw_ih, dw_hh, db_ih, db_hh)."""
    return GRUCellGrads(*_core.gru_cell_backward(ctx, from_bfloat16(dh)))
