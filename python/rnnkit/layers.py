"""Stacked and bidirectional LSTM/GRU layers over rnnkit's single-layer kernels.

Two levels:

* :func:`rnn_forward` / :func:`rnn_backward`: the functional core that
  :mod:`rnnkit.torch` and the interchange code build on. It takes weights
  already packed (:func:`pack_layer_weights`) and runs every layer and
  direction, with dropout between layers and variable sequence lengths.
* :class:`rnnkit.LSTM` / :class:`rnnkit.GRU` (in :mod:`rnnkit.modules`,
  which builds on this module): NumPy modules with PyTorch's constructor,
  parameter names, shapes, initialisation and state_dict, plus an explicit
  :meth:`~RNNBase.backward`.

Conventions are torch.nn.LSTM/GRU's: the parameters of layer ``k`` are
``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``,
with the suffix ``_reverse`` for the reverse direction; states are
``(num_layers * num_directions, B, H)`` indexed ``layer * D + direction``;
a bidirectional layer's output is ``[forward, reverse]`` on the last axis.

Variable lengths follow torch's packed sequences: sequences sorted longest
first, the rows of time ``t`` are the ``batch_sizes[t]`` sequences still
running, outputs past a sequence's end are zero, the final state of a
sequence is the one after its own last step, and the reverse direction
starts at each sequence's own end. The kernels skip the padding entirely.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import _core
from ._common import (GATES, as_bool, as_int, bfloat16_dtype, cell_name, check_batch_sizes, check_lengths,
                      from_bfloat16, like_input, precision_name)
from .functional import gru_backward, gru_forward, lstm_backward, lstm_forward, pack_gru, pack_lstm

__all__ = ["MODES", "param_names", "param_shapes", "pack_layer_weights", "rnn_forward", "rnn_backward",
           "RnnContext", "bernoulli_mask"]

# Gate count per cell, keyed as torch.nn's ``mode`` spells it (kept for
# callers of this name; rnnkit._common.GATES is the table).
MODES = {cell.upper(): g for cell, g in GATES.items()}

MaskFn = Callable[[Tuple[int, ...], np.dtype], np.ndarray]


# ---- parameter names and shapes ---------------------------------------------

def _suffix(direction: int) -> str:
    return "_reverse" if direction else ""


def param_names(num_layers: int, bidirectional: bool, bias: bool = True) -> List[str]:
    """Parameter names in torch's order (``_flat_weights_names``)."""
    names = []
    for layer in range(num_layers):
        for d in range(2 if bidirectional else 1):
            kinds = ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if bias else ("weight_ih", "weight_hh")
            names += [f"{kind}_l{layer}{_suffix(d)}" for kind in kinds]
    return names


def param_shapes(cell: str, input_size: int, hidden_size: int, num_layers: int, bidirectional: bool,
                 bias: bool = True) -> Dict[str, Tuple[int, ...]]:
    """Name -> shape of every parameter, as torch.nn.LSTM/GRU hold them."""
    gh = _gates(cell) * hidden_size
    dirs = 2 if bidirectional else 1
    shapes = {}
    for name in param_names(num_layers, bidirectional, bias):
        layer = int(name.split("_l")[1].split("_")[0])
        # Layers above the first see both directions' outputs side by side.
        in_size = input_size if layer == 0 else dirs * hidden_size
        kind = name.split("_l")[0]
        shapes[name] = {"weight_ih": (gh, in_size), "weight_hh": (gh, hidden_size)}.get(kind, (gh,))
    return shapes


def _gates(cell: str) -> int:
    return GATES[cell_name(cell)]


def pack_layer_weights(cell: str, params: Mapping[str, np.ndarray], *, num_layers: int, bidirectional: bool,
                       bias: bool = True, linear_before_reset: bool = True,
                       into: Optional[List[_core.PackedWeights]] = None,
                       precision: Optional[str] = None) -> List[_core.PackedWeights]:
    """Pack every layer and direction; index ``layer * D + direction``.

    ``params`` maps torch names to arrays (float32 or float64, one dtype).
    With ``bias=False`` the bias entries are not read (zeros are used).
    ``precision``: what the products take, as in :func:`rnnkit.pack_lstm`
    (the weights' dtype by default; ``"bfloat16"`` or ``"int8"`` for
    float32 weights).
    ``into``: the packed weights of an earlier call for the same layers;
    where they match (cell, form, dtype, precision, sizes) the new weights
    are packed into their memory (``PackedWeights.update``) and that list
    comes back.
    """
    cell = cell_name(cell)
    num_layers = as_int(num_layers, "num_layers", 1)
    dirs = 2 if as_bool(bidirectional, "bidirectional") else 1
    bias = as_bool(bias, "bias")
    entries = []
    for layer in range(num_layers):
        for d in range(dirs):
            sfx = f"_l{layer}{_suffix(d)}"
            try:
                w_ih, w_hh = params["weight_ih" + sfx], params["weight_hh" + sfx]
                b_ih, b_hh = (params["bias_ih" + sfx], params["bias_hh" + sfx]) if bias else (None, None)
            except KeyError as exc:
                raise ValueError(f"params: missing {exc.args[0]!r}") from None
            entries.append((w_ih, w_hh, b_ih, b_hh))
    lbr = cell != "gru" or as_bool(linear_before_reset, "linear_before_reset", zero_one=True)
    precision = None if precision is None else precision_name(precision)
    # An optimizer step changes values, not shapes: pack into the old memory.
    if into is not None and len(into) == len(entries) and all(
            _fits(p, cell, lbr, precision, w_ih, w_hh) for p, (w_ih, w_hh, _, _) in zip(into, entries)):
        for p, weights in zip(into, entries):
            p.update(*weights)
        return into
    if cell == "lstm":
        return [pack_lstm(*weights, precision=precision) for weights in entries]
    return [pack_gru(*weights, linear_before_reset=lbr, precision=precision) for weights in entries]


def _fits(packed: _core.PackedWeights, cell: str, lbr: bool, precision: Optional[str], w_ih, w_hh) -> bool:
    """Whether packed weights can take (w_ih, w_hh) in place (update keeps
    a pack's precision: it must be the one asked for)."""
    if not (isinstance(w_ih, np.ndarray) and isinstance(w_hh, np.ndarray)):
        return False
    wanted = precision if precision is not None else w_ih.dtype.name
    return (packed.cell == cell and packed.linear_before_reset == lbr and packed.precision == wanted
            and w_ih.dtype == packed.dtype
            and w_ih.ndim == 2 and w_ih.shape[1] == packed.input_size and w_hh.shape[-1] == packed.hidden_size)


# ---- variable lengths: padded <-> packed rows ---------------------------------

class _PackedRows:
    """Where each packed row comes from in a padded (T, B, ...) array.

    ``order`` sorts the batch longest first; packed row ``r`` of time
    ``t_idx[r]`` is batch element ``b_idx[r]`` of the padded array.
    """

    def __init__(self, lengths: np.ndarray, steps: int):
        self.order = np.argsort(-lengths, kind="stable")
        longest = int(lengths.max())
        self.batch_sizes = np.array([(lengths > t).sum() for t in range(longest)], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(self.batch_sizes)[:-1]])
        self.t_idx = np.repeat(np.arange(longest), self.batch_sizes)
        self.b_idx = self.order[np.arange(self.t_idx.size) - starts[self.t_idx]]
        self.steps = steps

    def pack(self, padded: np.ndarray) -> np.ndarray:
        return padded[self.t_idx, self.b_idx]

    def unpack(self, rows: np.ndarray, batch: int) -> np.ndarray:
        out = np.zeros((self.steps, batch) + rows.shape[1:], dtype=rows.dtype)
        out[self.t_idx, self.b_idx] = rows
        return out


# ---- the functional core ----------------------------------------------------------

class RnnContext:
    """What :func:`rnn_backward` needs from a training :func:`rnn_forward`."""

    @property
    def mode(self) -> str:
        """torch.nn's spelling of :attr:`cell` ('LSTM' / 'GRU')."""
        return self.cell.upper()

    def __init__(self, cell, num_layers, dirs, hidden, layout, rows, batch, input_shape, dtype):
        self.cell, self.num_layers, self.dirs, self.hidden = cell, num_layers, dirs, hidden
        self.layout, self.rows, self.batch = layout, rows, batch
        self.input_shape, self.dtype = input_shape, dtype
        self.kernel_ctx: List[object] = []
        self.masks: List[Optional[np.ndarray]] = []


def _states(name, arr, shape, dtype):
    if arr is None:
        return None
    arr = np.asarray(arr)
    if arr.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {np.dtype(dtype).name} (the input's), got {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
    return arr


def _check_packed(cell, packed, num_layers, dirs, input_size, dtype):
    if isinstance(packed, _core.PackedWeights) or not isinstance(packed, Sequence):
        raise TypeError(f"packed: expected a list of rnnkit.PackedWeights (pack_layer_weights), "
                        f"got {type(packed).__name__}")
    for k, w in enumerate(packed):
        if not isinstance(w, _core.PackedWeights):
            raise TypeError(f"packed[{k}]: expected rnnkit.PackedWeights, got {type(w).__name__}")
    if len(packed) != num_layers * dirs:
        raise ValueError(f"packed: expected {num_layers * dirs} packed weights (num_layers * directions), "
                         f"got {len(packed)}")
    hidden = packed[0].hidden_size
    for k, w in enumerate(packed):
        want_in = input_size if k < dirs else dirs * hidden
        if w.cell != cell or w.hidden_size != hidden or w.input_size != want_in:
            raise ValueError(f"packed[{k}]: expected {cell.upper()} weights with input_size {want_in} and hidden_size "
                             f"{hidden}, got {w.cell.upper()} with input_size {w.input_size}, "
                             f"hidden_size {w.hidden_size}")
        if w.dtype != dtype:
            raise TypeError(f"packed[{k}]: weights are {w.dtype.name} but x is {np.dtype(dtype).name}")
    return hidden


def bernoulli_mask(rng: np.random.Generator, p: float, shape, dtype) -> np.ndarray:
    """Inverted-dropout mask: 0 with probability p, else 1 / (1 - p)."""
    dtype = np.dtype(dtype)
    if p >= 1.0:
        return np.zeros(shape, dtype)
    keep = rng.random(shape) >= p
    return keep.astype(dtype) / dtype.type(1.0 - p)


def _dropout_mask(p: float, mask_fn: Optional[MaskFn], shape, dtype) -> np.ndarray:
    if mask_fn is not None:
        mask = np.asarray(mask_fn(shape, dtype), dtype=dtype)
        if mask.shape != shape:
            raise ValueError(f"dropout_mask: returned shape {mask.shape}, expected {shape}")
        return mask
    # Without a mask source the draw is unseeded; the layer classes pass one.
    return bernoulli_mask(np.random.default_rng(), p, shape, dtype)


def _kernel_rows(x: np.ndarray, lengths, batch_sizes):
    """Rows the kernels see: dense (T, B, I), or packed (N, I) plus batch
    sizes (given, or made from ``lengths``). Returns (batch, batch sizes or
    None, layout name, _PackedRows or None)."""
    if batch_sizes is not None:
        if x.ndim != 2:
            raise ValueError(f"x: packed input must be 2-D (rows, input_size), got shape {x.shape}")
        bs = check_batch_sizes(batch_sizes, x.shape[0])
        return int(bs[0]), bs, "packed", None
    if x.ndim != 3:
        raise ValueError(f"x: expected a 3-D array (T, B, input_size), got shape {x.shape}")
    batch = x.shape[1]
    if lengths is not None:
        lens = check_lengths(lengths, x.shape[0], batch)
        # Every sequence full length: the dense path is the same thing.
        if lens.size and lens.min() < x.shape[0]:
            rows_map = _PackedRows(lens, x.shape[0])
            return batch, rows_map.batch_sizes, "lengths", rows_map
    return batch, None, "dense", None


def _check_dropout(dropout) -> None:
    if isinstance(dropout, (bool, np.bool_)) or not isinstance(dropout, (int, float, np.floating, np.integer)):
        raise TypeError(f"dropout: expected a float probability, got {type(dropout).__name__}")
    if not 0.0 <= dropout <= 1.0:  # NaN fails too
        raise ValueError(f"dropout: expected a probability in [0, 1], got {dropout}")


def _layer_direction(cell: str, inp, weights, h0, c0, reverse: bool, training: bool, kw):
    """One layer and direction through the single-layer functions."""
    if cell == "lstm":
        return lstm_forward(inp, weights, h0, c0, reverse=reverse, training=training, **kw)
    return gru_forward(inp, weights, h0, reverse=reverse, training=training, **kw)


def rnn_forward(cell: str, x: np.ndarray, packed: Sequence[_core.PackedWeights], hx: Optional[np.ndarray] = None,
                cx: Optional[np.ndarray] = None, *, num_layers: int, bidirectional: bool,
                lengths: Optional[np.ndarray] = None, batch_sizes: Optional[np.ndarray] = None,
                dropout: float = 0.0, dropout_mask: Optional[MaskFn] = None, training: bool = False):
    """Run a stacked (bi)directional LSTM/GRU.

    x: (T, B, I) time-major; with ``lengths`` (B,) the padded input of
    sequences of those lengths (any order, each in [1, T]); with
    ``batch_sizes`` (T,) the packed rows (N, I) of a PackedSequence.
    hx, cx (cx for the LSTM only): (num_layers * D, B, H) or None for zeros,
    in the caller's batch order (for packed input: the packed order).
    dropout: probability of zeroing each output of every layer but the
    last, in training only; ``dropout_mask(shape, dtype)`` supplies the
    mask (already scaled by 1 / (1 - p)).

    Returns ``(y, h_n, c_n, ctx)``: y (T, B, D*H) (packed input: (N, D*H)),
    c_n None for the GRU, ctx None unless ``training``.

    x, hx and cx are of the packed weights' dtype (float32 for bfloat16 and
    int8 packs) or bfloat16 arrays (``ml_dtypes``; read as float32): y, h_n
    and c_n are bfloat16 when x is. The backward's gradients are float32.
    """
    cell = cell_name(cell)
    num_layers = as_int(num_layers, "num_layers", 1)
    dirs = 2 if as_bool(bidirectional, "bidirectional") else 1
    training = as_bool(training, "training")
    _check_dropout(dropout)
    if lengths is not None and batch_sizes is not None:
        raise ValueError("lengths and batch_sizes: give at most one (padded input with lengths, or packed rows)")
    x = np.asarray(x)
    # bfloat16 arrays in, bfloat16 arrays out; float32 in between.
    bf16 = bfloat16_dtype(x)
    x, hx, cx = from_bfloat16(x), from_bfloat16(hx), from_bfloat16(cx)
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"x: expected dtype float32 or float64 (or bfloat16, read as float32), got {x.dtype}")

    batch, bs, layout, rows_map = _kernel_rows(x, lengths, batch_sizes)
    hidden = _check_packed(cell, packed, num_layers, dirs, x.shape[-1], x.dtype)
    state_shape = (num_layers * dirs, batch, hidden)
    hx = _states("hx", hx, state_shape, x.dtype)
    if cell == "gru" and cx is not None:
        raise ValueError("cx: the GRU has no cell state")
    cx = _states("cx", cx, state_shape, x.dtype) if cell == "lstm" else None

    inp = rows_map.pack(x) if rows_map is not None else x
    # Kernel state rows follow the packed (sorted) order.
    sort = (lambda s: None if s is None else np.ascontiguousarray(s[rows_map.order])) if rows_map else (lambda s: s)
    h_n = np.empty(state_shape, x.dtype)
    c_n = np.empty(state_shape, x.dtype) if cell == "lstm" else None
    ctx = RnnContext(cell, num_layers, dirs, hidden, layout, rows_map, batch, x.shape, x.dtype) if training else None
    kw = {} if bs is None else {"batch_sizes": bs}

    for layer in range(num_layers):
        outs = []
        for d in range(dirs):
            k = layer * dirs + d
            res = _layer_direction(cell, inp, packed[k], sort(hx[k]) if hx is not None else None,
                                   sort(cx[k]) if cx is not None else None, bool(d), training, kw)
            h_n[k] = res[1]
            if cell == "lstm":
                c_n[k] = res[2]
            outs.append(res[0])
            if training:
                ctx.kernel_ctx.append(res[-1])
        inp = outs[0] if dirs == 1 else np.concatenate(outs, axis=-1)
        # Dropout sits between layers only, and only while training.
        mask = None
        if training and dropout > 0.0 and layer < num_layers - 1:
            mask = _dropout_mask(dropout, dropout_mask, inp.shape, inp.dtype)
            inp = inp * mask
        if training:
            ctx.masks.append(mask)

    y = rows_map.unpack(inp, batch) if rows_map is not None else inp
    if rows_map is not None:
        # Back to the caller's batch order.
        inverse = np.argsort(rows_map.order)
        h_n = np.ascontiguousarray(h_n[:, inverse])
        c_n = np.ascontiguousarray(c_n[:, inverse]) if c_n is not None else None
    return like_input(y, bf16), like_input(h_n, bf16), like_input(c_n, bf16), ctx


def rnn_backward(ctx: RnnContext, dy: Optional[np.ndarray] = None, dh_n: Optional[np.ndarray] = None,
                 dc_n: Optional[np.ndarray] = None):
    """Gradients of a training :func:`rnn_forward` given those of its outputs.

    dy like y (None for zeros; entries past a sequence's end are ignored),
    dh_n, dc_n like h_n, c_n. Returns ``(dx, dhx, dcx, grads)``: dx like x,
    dhx/dcx like hx/cx (dcx None for the GRU), grads a list indexed like the
    packed weights of ``(dw_ih, dw_hh, db_ih, db_hh)``.
    """
    if not isinstance(ctx, RnnContext):
        raise TypeError(f"ctx: expected the context of a training rnn_forward, got {type(ctx).__name__}")
    rows_map, dirs, H, dt = ctx.rows, ctx.dirs, ctx.hidden, ctx.dtype
    nstates = ctx.num_layers * dirs
    state_shape = (nstates, ctx.batch, H)
    out_shape = ctx.input_shape[:-1] + (dirs * H,)
    # bfloat16 gradients are read as float32 (exactly).
    dy = _states("dy", from_bfloat16(dy), out_shape, dt)
    dh_n = _states("dh_n", from_bfloat16(dh_n), state_shape, dt)
    dc_n = _states("dc_n", from_bfloat16(dc_n), state_shape, dt) if ctx.cell == "lstm" else None

    sort = (lambda s: None if s is None else np.ascontiguousarray(s[rows_map.order])) if rows_map else (lambda s: s)
    # The gradient reaching the top layer's output, in the kernels' rows.
    grad = None if dy is None else (rows_map.pack(dy) if rows_map is not None else dy)
    dhx = np.empty(state_shape, dt)
    dcx = np.empty(state_shape, dt) if ctx.cell == "lstm" else None
    grads: List[Optional[tuple]] = [None] * nstates
    kernel_ctx = ctx.kernel_ctx

    for layer in range(ctx.num_layers - 1, -1, -1):
        dx = None
        for d in range(dirs):
            k = layer * dirs + d
            g_d = None if grad is None else np.ascontiguousarray(grad[..., d * H:(d + 1) * H])
            dh = sort(dh_n[k]) if dh_n is not None else None
            if ctx.cell == "lstm":
                dc = sort(dc_n[k]) if dc_n is not None else None
                r = lstm_backward(kernel_ctx[k], g_d, dh, dc)
                dhx[k], dcx[k] = r.dh0, r.dc0
            else:
                r = gru_backward(kernel_ctx[k], g_d, dh)
                dhx[k] = r.dh0
            grads[k] = (r.dw_ih, r.dw_hh, r.db_ih, r.db_hh)
            # Both directions read the same input: their gradients add.
            dx = r.dx if dx is None else dx + r.dx
        grad = dx
        # Through the dropout of the layer below's output.
        if layer > 0 and ctx.masks[layer - 1] is not None:
            grad = grad * ctx.masks[layer - 1]

    dx = rows_map.unpack(grad, ctx.batch) if rows_map is not None else grad
    if rows_map is not None:
        inverse = np.argsort(rows_map.order)
        dhx = np.ascontiguousarray(dhx[:, inverse])
        dcx = np.ascontiguousarray(dcx[:, inverse]) if dcx is not None else None
    return dx, dhx, dcx, grads


def __getattr__(name: str):
    # rnnkit.layers.LSTM / GRU, as before the classes moved to rnnkit.modules;
    # looked up on use, so that this module does not import the one above it.
    if name in ("LSTM", "GRU", "RNNBase"):
        from . import modules
        return getattr(modules, name)
    raise AttributeError(f"module 'rnnkit.layers' has no attribute {name!r}")
