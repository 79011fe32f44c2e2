"""Drop-in ``torch.nn.LSTM`` / ``torch.nn.GRU`` whose forward and backward run on rnnkit's kernels.

:class:`LSTM` and :class:`GRU` subclass torch's modules, so the constructor,
parameters (names, shapes, init), ``state_dict`` keys, ``repr`` and
``isinstance`` checks are torch's own. ``forward`` takes what torch's takes
(a tensor, batch-first or not, batched or unbatched, or a ``PackedSequence``;
optional ``h_0`` or ``(h_0, c_0)``) and returns the same types. One
``torch.autograd.Function`` carries the input, the initial states and every
weight, so autograd delivers gradients for all of them.

What runs where
---------------
* rnnkit's kernels: CPU tensors of dtype float32 or float64 (input, states
  and weights alike), in eager mode. Contiguous CPU tensors are handed to
  the kernels without a copy (``Tensor.numpy()`` shares memory);
  batch-first input is copied to time-major once. The kernels read weights
  packed into their own layout, packed again only when the weights changed:
  every call compares the parameters' bytes with the packed weights
  themselves (``PackedWeights.matches``: no copy of the weights is kept, and
  it is cheaper than a packing), so writes through ``.data``, NumPy views,
  fused optimizers or ``load_state_dict`` are seen like any other change.
* torch.nn's own forward, silently, wherever torch must see the operations
  or the call is not plain eager: ``torch.jit.trace`` / ``torch.onnx.export``,
  ``torch.compile`` / ``torch.export``, forward-mode AD, fake tensors and
  any other TorchDispatchMode / TorchFunctionMode, tensor subclasses, and
  autocast to float16. ``torch.func`` transforms
  (``vmap``, ``grad``, ``jacrev``, ...) run the same math in plain torch
  operations, which vmap can batch (torch.nn's fused RNN ops cannot).
  ``torch.jit.script`` scripts a torch.nn twin sharing the parameters
  (``__prepare_scriptable__``; torch swaps it into the scripted model).
  ``torch.compile`` treats the module as torch.nn's RNNs: a graph break,
  around an eager call on rnnkit's kernels (with
  ``torch._dynamo.config.allow_rnn`` it traces torch.nn's forward).
* torch's own implementation, with a one-time ``RuntimeWarning`` per module
  and reason: ``proj_size > 0`` (rnnkit has no projection kernels), tensors
  on another device (CUDA, MPS, ...), or another dtype (float16).
  Empty input (no time steps or no batch) also goes to torch, silently.
  ``GRU(linear_before_reset=False)`` has no torch counterpart: wherever
  torch would run, it runs the same math written in torch operations.
* rnnkit's bfloat16 kernels (products of bfloat16 operands summed in
  float32; gate math and cell state float32), with torch.nn's dtypes:
  under ``torch.autocast("cpu", dtype=torch.bfloat16)`` for float32 modules
  (the weights packed in bfloat16 from the float32 parameters, cached apart
  from the float32 packing and checked for staleness the same way), and
  for bfloat16 modules (``module.to(torch.bfloat16)``; packed from the
  parameters read as float32, exactly). Outputs follow torch.nn: a bfloat16
  module returns bfloat16; under autocast the LSTM on dense input returns
  bfloat16, otherwise outputs and states take the dtype of h_0 (of the
  input when no h_0 is given); float32 and bfloat16 input and states mix
  freely under autocast, as in torch.nn. float64 modules ignore autocast.
  Gradients come back in each input's dtype. Training in bfloat16 runs the
  kernels' bfloat16 backward where the build has it
  (``bf16_training_supported()``); elsewhere calls that need gradients run
  torch's own path (autocast silently, bfloat16 modules with a warning).
* rnnkit's int8 kernels: :func:`quantize_dynamic` (torch's
  ``torch.ao.quantization.quantize_dynamic`` contract) swaps a model's LSTM
  and GRU modules for :class:`QuantizedLSTM` / :class:`QuantizedGRU`:
  weights quantized once per output row, inputs and states per step,
  float32 in and out, inference only (a training-mode forward and a
  backward through them raise).
* Dropout between layers (training mode only) draws its masks from torch's
  RNG exactly as torch's own RNN does: ``torch.manual_seed`` reproduces
  them, and torch.nn.LSTM/GRU at the same seed draw the same masks.
* Gradients of gradients (``create_graph=True``: gradient penalties,
  Hessian-vector products, MAML) are exact: such a backward recomputes the
  forward in torch operations from the saved inputs and differentiates it.
* Pickling (``torch.save(model)``, ``copy.deepcopy`` keeps rnnkit): a module
  pickles as the torch.nn.LSTM/GRU it stands for, so a whole-model
  checkpoint loads wherever torch.nn's would, rnnkit installed or not
  (``convert`` it again after loading). ``GRU(linear_before_reset=False)``
  pickles as itself: loading it needs rnnkit (and, with ``weights_only``,
  ``torch.serialization.add_safe_globals([rnnkit.torch.GRU])``).

``GRU`` takes one extra keyword, ``linear_before_reset=True`` (torch's form);
``False`` is the Cho et al. 2014 form (ONNX's default, Keras
``reset_after=False``). :func:`convert` swaps the torch modules inside a model
for these. Importing :mod:`rnnkit` does not import torch; this module does.
"""

from __future__ import annotations

import copy
import warnings
import weakref
from typing import Dict, Optional

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from . import _torch_math
from ._common import as_bool, as_numpy
from . import isa as _active_isa
from . import layers

__all__ = ["LSTM", "GRU", "convert", "quantize_dynamic", "QuantizedLSTM", "QuantizedGRU", "bf16_training_supported"]

_KERNEL_DTYPES = (torch.float32, torch.float64, torch.bfloat16)
# Where each precision's packed weights are cached on a module.
_CACHE_ATTR = {"float32": "_rnnkit_cache", "float64": "_rnnkit_cache", "bfloat16": "_rnnkit_cache_bf16"}
_TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
_PLAIN_TENSORS = (torch.Tensor, nn.Parameter)


def _np(t: Optional[torch.Tensor]) -> Optional[np.ndarray]:
    # Shares memory with a contiguous CPU tensor; copies only a strided one.
    return None if t is None else as_numpy(t.detach().contiguous())


# ---- calls where torch must see the operations ---------------------------------------

def _graph_context(tensors) -> Optional[str]:
    """Why this call must run torch operations (tracing, export, transforms...), or None."""
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return "torch.jit tracing"
    if torch.compiler.is_compiling():
        return "torch.compile / torch.export"
    if torch._C._functorch.peek_interpreter_stack() is not None:
        return "a torch.func transform"
    if torch.autograd.forward_ad._current_level >= 0:
        return "forward-mode AD"
    if _current_dispatch_mode() is not None:
        return "a TorchDispatchMode (fake tensors, ...)"
    if torch._C._is_torch_function_mode_enabled() and any(
            not isinstance(m, _DeviceContext) for m in torch.overrides._get_current_function_mode_stack()):
        return "a TorchFunctionMode"
    for t in tensors:
        if isinstance(t, torch.Tensor) and type(t) not in _PLAIN_TENSORS:
            return f"a tensor subclass ({type(t).__name__})"
    return None


try:  # private torch helpers, present in every torch rnnkit supports
    from torch.utils._device import DeviceContext as _DeviceContext
    from torch.utils._python_dispatch import _get_current_dispatch_mode as _current_dispatch_mode
except ImportError:  # pragma: no cover - a future torch that moved them: assume a mode is on
    _DeviceContext = ()

    def _current_dispatch_mode():
        return True


# ---- what the kernels of this build can do ------------------------------------------------

_BF16_TRAINING: Optional[bool] = None


def bf16_training_supported() -> bool:
    """Whether this build's kernels train with bfloat16 packs (asked once:
    a one-step training call on a tiny pack). Where they cannot, bfloat16
    modules and autocast regions that need gradients run torch's own path."""
    global _BF16_TRAINING
    if _BF16_TRAINING is None:
        from . import functional
        tiny = np.zeros((4, 1), np.float32)
        try:
            functional.lstm_forward(np.zeros((1, 1, 1), np.float32),
                                    functional.pack_lstm(tiny, tiny, precision="bfloat16"), training=True)
            _BF16_TRAINING = True
        except ValueError:
            _BF16_TRAINING = False
    return _BF16_TRAINING


# ---- staleness check -------------------------------------------------------------------

class _Packed:
    """A module's packed weights (``layer * D + direction``, as
    :func:`rnnkit.layers.pack_layer_weights` makes them) and, for each, the
    positions of its parameters in the module's flat weights."""

    def __init__(self, key, packed, names, num_layers: int, dirs: int, bias: bool):
        self.key, self.packed, self.count = key, packed, len(names)
        position = {name: i for i, name in enumerate(names)}
        kinds = ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if bias else ("weight_ih", "weight_hh")
        self.positions = [tuple(position[k + f"_l{layer}{layers._suffix(d)}"] for k in kinds)
                          for layer in range(num_layers) for d in range(dirs)]

    def holds(self, weights) -> bool:
        """Whether ``weights`` are, bit for bit, what these were packed from:
        the packs read against the parameters (one call per layer and
        direction; another dtype or shape is no match)."""
        if len(weights) != self.count:
            return False
        return all(p.matches(*[_np(weights[i]) for i in pos]) for p, pos in zip(self.packed, self.positions))


class _ContextHolder(bytearray):
    """One byte of memory whose tensor keeps a kernels' context alive."""

    def __init__(self, rnn):
        super().__init__(1)
        self.rnn = rnn

    def tensor(self) -> torch.Tensor:
        # Owns the holder (through NumPy's buffer reference); the holder does
        # not refer back, so no cycle waits for the garbage collector.
        return torch.from_numpy(np.frombuffer(self, dtype=np.uint8))


class _Run:
    """Everything one forward call passes to the autograd Function besides tensors."""

    def __init__(self, module, packed, batch_sizes, record: bool, out_dtype=None):
        self.mode = module.mode
        # The dtype torch.nn would return (bfloat16 modules and autocast); None: the kernels' own.
        self.out_dtype = out_dtype
        # int8 packs: forward only.
        self.inference_only = packed[0].precision == "int8"
        self.packed = packed
        self.num_layers = module.num_layers
        self.bidirectional = module.bidirectional
        self.hidden_size = module.hidden_size
        self.linear_before_reset = getattr(module, "linear_before_reset", True)
        self.bias = module.bias
        self.batch_sizes = batch_sizes
        # Dropout is a training-mode thing; eval-mode calls that need gradients get none.
        self.dropout = float(module.dropout) if module.training and module.num_layers > 1 else 0.0
        self.record = (record or self.dropout > 0.0) and not self.inference_only

    def dropout_mask(self, shape, dtype) -> np.ndarray:
        # Drawn as torch's RNN draws its own (at::dropout: bernoulli_ then
        # div_), so the same seed gives the same masks; p = 1 draws nothing.
        p = self.dropout
        if p >= 1.0:
            return np.zeros(shape, dtype)
        return torch.empty(shape, dtype=_TORCH_DTYPE[np.dtype(dtype)]).bernoulli_(1.0 - p).div_(1.0 - p).numpy()


class _RNNFunction(torch.autograd.Function):
    """x, h0, (c0), *flat_weights -> y, h_n, (c_n) on rnnkit.layers."""

    @staticmethod
    def forward(ctx, run: _Run, x, h0, c0, *weights):
        y, h_n, c_n, rctx = layers.rnn_forward(
            run.mode, _np(x), run.packed, _np(h0), _np(c0), num_layers=run.num_layers,
            bidirectional=run.bidirectional, batch_sizes=run.batch_sizes, dropout=run.dropout,
            dropout_mask=run.dropout_mask, training=run.record)
        ctx.run = run
        ctx.masks = rctx.masks if rctx is not None else []
        # The kernels' context (workspace, packed weights) lives as long as
        # autograd keeps this node's saved tensors: it rides on a one-byte
        # saved tensor, so it is freed when torch frees the saved buffers
        # (after backward unless retain_graph) and a next training step packs
        # into the same memory while this graph's outputs still exist.
        holder = _ContextHolder(rctx)
        ctx.rnn = weakref.ref(holder)
        # The kernels' context refers to x's memory; saving x lets autograd
        # refuse an in-place change before backward with its own error. The
        # states and weights are saved (as torch.nn saves them) for a
        # backward that must build a graph of the gradient.
        ctx.save_for_backward(x, h0, c0, *weights, holder.tensor())
        # Unused outputs reach backward as None, which the kernels read as zeros.
        ctx.set_materialize_grads(False)
        outs = tuple(_out(a, run.out_dtype) for a in (y, h_n, c_n) if a is not None)
        return outs

    @staticmethod
    def backward(ctx, dy, dh_n, dc_n=None):
        if ctx.run.inference_only:
            raise RuntimeError(f"rnnkit.torch: the {ctx.run.mode} ran on int8 weights (quantize_dynamic), which "
                               f"are for inference only: no gradient flows through it")
        saved = ctx.saved_tensors[:-1]  # raises if an input was modified in place since forward
        holder = ctx.rnn()
        rctx = None if holder is None else holder.rnn
        if torch.is_grad_enabled() or rctx is None:
            # create_graph=True: the gradient must itself be differentiable
            # (and, should the kernels' context be gone, torch's math stands in).
            grads = _differentiable_backward(ctx, saved, (dy, dh_n, dc_n))
            if not torch.is_grad_enabled():
                grads = tuple(None if g is None else g.detach() for g in grads)
            return (None,) + grads
        dx, dhx, dcx, grads = layers.rnn_backward(rctx, _np(dy), _np(dh_n), _np(dc_n))
        # Weight gradients in the order of _flat_weights: w_ih, w_hh[, b_ih, b_hh] per layer and direction.
        # Each gradient in its input's dtype (bfloat16 modules get bfloat16 ones, as from torch.nn).
        per_layer = 4 if ctx.run.bias else 2
        x, h0, c0, *weights = saved
        dweights = [_out(g, w.dtype) for w, g in zip(weights, (g for layer in grads for g in layer[:per_layer]))]
        dh0 = _out(dhx, h0.dtype) if h0 is not None else None
        dc0 = _out(dcx, c0.dtype) if c0 is not None else None
        return (None, _out(dx, x.dtype), dh0, dc0, *dweights)


def _out(array: np.ndarray, dtype) -> torch.Tensor:
    """A kernels' result as a tensor of ``dtype`` (None: as it is)."""
    t = torch.from_numpy(array)
    return t if dtype is None or t.dtype == dtype else t.to(dtype)


def _differentiable_backward(ctx, saved, grad_outputs):
    """Input gradients as torch operations: the forward recomputed in torch
    from the saved inputs (same dropout masks), differentiated with create_graph."""
    run, needs = ctx.run, ctx.needs_input_grad[1:]
    masks = [None if m is None else torch.from_numpy(m) for m in ctx.masks]

    def dropout(layer, rows):
        mask = masks[layer] if layer < len(masks) else None
        return rows if mask is None else rows * mask.reshape(rows.shape)

    with torch.enable_grad():
        inputs = list(saved)
        # bfloat16 tensors (modules, autocast) in float32: the kernels' arithmetic, and one dtype for torch's ops.
        x, h0, c0, *weights = [t if t is None or t.dtype == torch.float64 else t.float() for t in inputs]
        grad_outputs = tuple(g if g is None else g.to(x.dtype) for g in grad_outputs)
        outs = _torch_math.rnn(run.mode, x, run.batch_sizes, h0, c0, weights, num_layers=run.num_layers,
                               bidirectional=run.bidirectional, hidden_size=run.hidden_size,
                               linear_before_reset=run.linear_before_reset, dropout=dropout)
        pairs = [(o, g) for o, g in zip(outs, grad_outputs) if o is not None and g is not None]
        wanted = [k for k, t in enumerate(inputs) if t is not None and needs[k]]
        result = [None] * len(inputs)
        if pairs and wanted:
            grads = torch.autograd.grad([o for o, _ in pairs], [inputs[k] for k in wanted],
                                        [g for _, g in pairs], create_graph=True, allow_unused=True)
            for k, g in zip(wanted, grads):
                result[k] = torch.zeros_like(inputs[k]) if g is None else g
    return tuple(result)


class _RnnkitMixin:
    """forward() on rnnkit's kernels for a torch.nn.LSTM/GRU subclass."""

    # ---- packed weights --------------------------------------------------------

    def _packed_weights(self, weights, precision: str = "float32"):
        # Packed again only when the bytes differ from the last packing's
        # (or the ISA, form or dtypes changed): PackedWeights.matches per pack
        # (for a bfloat16 pack: whether packing again would change it).
        # bfloat16 packs (autocast, bfloat16 modules) are cached apart from
        # the float ones: a model evaluated under autocast between float
        # training steps packs each once.
        lbr = getattr(self, "linear_before_reset", True)
        key = (_active_isa(), lbr, precision)
        attr = _CACHE_ATTR[precision]
        cache = self.__dict__.get(attr)
        if cache is not None and cache.key == key and cache.holds(weights):
            return cache.packed
        # bfloat16 parameters are read as float32 (exactly).
        arrays = [_np(w) for w in weights]
        params = dict(zip(self._flat_weights_names, arrays))
        # Changed weights go into the memory of the last packing (contexts
        # still holding it keep their own).
        packed = layers.pack_layer_weights(
            self.mode, params, num_layers=self.num_layers, bidirectional=self.bidirectional,
            bias=self.bias, linear_before_reset=lbr, into=cache.packed if cache is not None else None,
            precision=None if precision in ("float32", "float64") else precision)
        setattr(self, attr, _Packed(key, packed, self._flat_weights_names, self.num_layers,
                                    2 if self.bidirectional else 1, self.bias))
        return packed

    def flatten_parameters(self) -> None:
        """torch's (a no-op on the CPU), and drops rnnkit's packed weights."""
        super().flatten_parameters()
        self._rnnkit_cache = None
        self._rnnkit_cache_bf16 = None

    # ---- pickling and copies -----------------------------------------------------

    _RNNKIT_KEYS = ("_rnnkit_cache", "_rnnkit_cache_bf16", "_rnnkit_warned")

    def __getstate__(self):
        # Packed weights are a cache of the parameters: not pickled, not deep-copied.
        state = super().__getstate__()
        for k in self._RNNKIT_KEYS:
            state.pop(k, None)
        return state

    def __reduce_ex__(self, protocol):
        # Pickled as the torch.nn module it stands for: a checkpoint then
        # loads wherever torch.nn's loads (weights_only, no rnnkit). The
        # reset-before-linear GRU has no such twin and pickles as itself; so
        # do subclasses (torch's parametrized modules refuse pickling).
        twin = _TORCH_TWIN.get(type(self))
        if twin is None or not getattr(self, "linear_before_reset", True):
            return super().__reduce_ex__(protocol)
        state = self.__getstate__()
        state.pop("linear_before_reset", None)
        # Built on the meta device (nothing allocated, no RNG drawn), then given this state.
        args = (self.input_size, self.hidden_size, self.num_layers, self.bias, self.batch_first, 0.0,
                self.bidirectional, getattr(self, "proj_size", 0), "meta", None)
        return twin, args, state

    def __deepcopy__(self, memo):
        # A copy stays an rnnkit module (pickling gives the torch.nn twin).
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        state = {k: v for k, v in self.__dict__.items() if k not in self._RNNKIT_KEYS}
        new.__dict__.update(copy.deepcopy(state, memo))
        return new

    def __prepare_scriptable__(self):
        # torch.jit.script compiles a module's forward: script the torch.nn
        # twin, sharing the parameters.
        if not getattr(self, "linear_before_reset", True):
            raise NotImplementedError("rnnkit.torch.GRU(linear_before_reset=False) cannot be scripted: torch has "
                                      "no such GRU; use torch.jit.trace or torch.onnx.export instead")
        return _torch_twin(self)

    # ---- where a call runs -----------------------------------------------------

    def _fallback_reason(self, data, states, weights) -> Optional[str]:
        if getattr(self, "proj_size", 0) > 0:
            return "proj_size > 0 (rnnkit has no projection kernels)"
        for t in (data, *states, *weights):
            if isinstance(t, torch.Tensor) and t.device.type != "cpu":
                return f"tensors on device {t.device.type!r} (rnnkit runs on the CPU)"
        dtype = weights[0].dtype
        if dtype not in _KERNEL_DTYPES:
            return f"weights of dtype {dtype} (rnnkit runs float32, float64 and bfloat16)"
        return None

    def _torch_forward(self, reason: str, input, hx, warn: bool = True, ops: bool = False):
        if warn:
            warned = self.__dict__.setdefault("_rnnkit_warned", set())
            if reason not in warned:
                warned.add(reason)
                warnings.warn(f"rnnkit.torch.{type(self).__name__}: {reason}; running torch's own "
                              f"implementation instead", RuntimeWarning, stacklevel=3)
        if getattr(self, "linear_before_reset", True) and not ops:
            return super().forward(input, hx)
        # torch has no reset-before-linear GRU: the same math in torch operations.
        return self._run(input, hx, kernels=False)

    # ---- argument handling, as torch's forward does it -------------------------------

    def _batched_states(self, hx, batched: bool):
        # One tuple of state tensors, given a batch axis for unbatched input (torch's messages).
        if hx is None:
            return None
        want, kind = (3, "batched 3-D") if batched else (2, "unbatched 2-D")
        if self.mode == "LSTM":
            try:
                states = tuple(hx)  # (h_0, c_0), or anything torch unpacks the same way
            except TypeError:
                raise TypeError(f"LSTM: hx must be a tuple (h_0, c_0), got {type(hx).__name__}") from None
            if len(states) != 2 or not all(isinstance(s, torch.Tensor) for s in states):
                raise TypeError(f"LSTM: hx must be a tuple of two tensors (h_0, c_0), got {len(states)} items")
            if any(s.dim() != want for s in states):
                raise RuntimeError(f"For {kind} input, hx and cx should also be {want}-D but got "
                                   f"({states[0].dim()}-D, {states[1].dim()}-D) tensors")
        else:
            if not isinstance(hx, torch.Tensor):
                raise TypeError(f"GRU: hx must be a tensor, got {type(hx).__name__}")
            states = (hx,)
            if hx.dim() != want:
                raise RuntimeError(f"For {kind} input, hx should also be {want}-D but got {hx.dim()}-D tensor")
        return states if batched else tuple(s.unsqueeze(1) for s in states)

    def _check_states(self, x, states, batch_sizes, same_dtype: bool = True) -> None:
        # torch's own shape checks, plus a clear dtype check where torch fails deep inside
        # (under autocast torch.nn takes float32 and bfloat16 mixed: so do the bfloat16 kernels).
        if states is None:
            self.check_input(x, batch_sizes)
            return
        self.check_forward_args(x, states if self.mode == "LSTM" else states[0], batch_sizes)
        for name, s in zip(("hx[0]", "hx[1]") if self.mode == "LSTM" else ("hx",), states):
            if same_dtype and s.dtype != x.dtype:
                raise RuntimeError(f"{name}: dtype {s.dtype} does not match the input's ({x.dtype})")

    def forward(self, input, hx=None):
        data = input.data if isinstance(input, PackedSequence) else input
        if not isinstance(data, torch.Tensor):
            raise TypeError(f"{self.mode}: input must be a Tensor or a PackedSequence, got {type(input).__name__}")
        states = () if hx is None else (tuple(hx) if isinstance(hx, (tuple, list)) else (hx,))
        self._update_flat_weights()
        weights = self._flat_weights
        # Where torch must see the operations: torch.nn's forward, silently.
        reason = _graph_context((data, *states, *weights))
        autocast = torch.is_autocast_enabled("cpu")
        if reason is None and autocast and torch.get_autocast_dtype("cpu") != torch.bfloat16:
            reason = "CPU autocast to a dtype other than bfloat16"
        if reason is not None:
            # torch.func transforms: torch operations, which vmap can batch
            # (torch.nn's fused RNN ops have no batching rule).
            ops = torch._C._functorch.peek_interpreter_stack() is not None
            return self._torch_forward(reason, input, hx, warn=False, ops=ops)
        reason = self._fallback_reason(data, states, weights)
        if reason is not None:
            return self._torch_forward(reason, input, hx)
        if isinstance(data, torch.Tensor) and data.numel() == 0:
            return self._torch_forward("empty input", input, hx, warn=False)
        plan = self._precision_plan(data, states, weights, autocast, isinstance(input, PackedSequence))
        if isinstance(plan, str):
            return self._torch_forward(plan, input, hx, warn=plan.startswith("bfloat16 weights with gradients"))
        return self._run(input, hx, kernels=True, precision=plan[0], out_dtype=plan[1])

    def _precision_plan(self, data, states, weights, autocast: bool, packed_input: bool):
        """(precision of the products, output dtype or None) for the kernels,
        or why torch's own path runs instead (a str).

        torch.nn's results are the model: a bfloat16 module (bfloat16
        weights, input and states) returns bfloat16; under CPU autocast to
        bfloat16 a float32 module takes its products in bfloat16 and returns
        bfloat16 from the LSTM on dense input, else the dtype of the states
        (h_0, or the input when none is given). float64 modules are left
        alone by autocast, as in torch."""
        wd = weights[0].dtype
        # Anything but tensors among the states is for _run's argument checks to refuse.
        states = [s for s in states if isinstance(s, torch.Tensor)]
        kinds = {data.dtype, *(s.dtype for s in states)}
        if any(w.dtype != wd for w in weights):
            return "weights of mixed dtypes"
        if wd == torch.bfloat16:
            if kinds != {torch.bfloat16}:
                return "bfloat16 weights with input or states of another dtype"
            precision, out = "bfloat16", torch.bfloat16
        elif autocast and wd == torch.float32:
            if not kinds <= {torch.float32, torch.bfloat16}:
                return "CPU autocast with input or states of another dtype"
            precision = "bfloat16"
            out = torch.bfloat16 if self.mode == "LSTM" and not packed_input else (states or (data,))[0].dtype
        else:
            if autocast and kinds != {wd}:
                return "CPU autocast with input or states of another dtype"
            return ("float64" if wd == torch.float64 else "float32"), None
        # Training in bfloat16 needs the kernels' bfloat16 backward.
        record = torch.is_grad_enabled() and any(t.requires_grad for t in (data, *states, *weights))
        if record and not bf16_training_supported():
            what = "bfloat16 weights" if wd == torch.bfloat16 else "CPU autocast"
            return f"{what} with gradients (rnnkit's kernels run bfloat16 inference only in this build)"
        return precision, out

    def _run(self, input, hx, kernels: bool, precision: str = "float32", out_dtype=None):
        """torch's forward contract around either engine: rnnkit's kernels
        (one autograd node) or the same math in torch operations."""
        # Time-major (T, B, I) or packed rows, and states (L*D, B, H) in the kernels' batch order.
        packed_input = isinstance(input, PackedSequence)
        if packed_input:
            x, batch_sizes, sorted_indices, unsorted_indices = input
            batched = True
        else:
            x, batch_sizes, sorted_indices, unsorted_indices = input, None, None, None
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"{self.mode}: input must be a Tensor or a PackedSequence, "
                                f"got {type(x).__name__}")
            if x.dim() not in (2, 3):
                raise ValueError(f"{self.mode}: Expected input to be 2D or 3D, got {x.dim()}D instead")
            batched = x.dim() == 3
            if not batched:
                x = x.unsqueeze(0 if self.batch_first else 1)
        states = self._batched_states(hx, batched)
        self._check_states(x, states, batch_sizes, same_dtype=not kernels or precision != "bfloat16")
        if states is not None and sorted_indices is not None:
            states = tuple(s.index_select(1, sorted_indices) for s in states)
        if self.batch_first and not packed_input:
            x = x.transpose(0, 1)

        weights = self._flat_weights
        h0 = states[0] if states else None
        c0 = states[1] if states and self.mode == "LSTM" else None
        if kernels:
            # One autograd node over x, the states and every weight.
            record = torch.is_grad_enabled() and any(
                t is not None and t.requires_grad for t in (x, h0, c0, *weights))
            bs = None if batch_sizes is None else batch_sizes.numpy()
            run = _Run(self, self._packed_weights(weights, precision), bs, record, out_dtype)
            y, *final = _RNNFunction.apply(run, x, h0, c0, *weights)
        else:
            p = float(self.dropout) if self.training and self.num_layers > 1 else 0.0
            y, *final = _torch_math.rnn(
                self.mode, x, None if batch_sizes is None else batch_sizes.tolist(), h0, c0, weights,
                num_layers=self.num_layers, bidirectional=self.bidirectional, hidden_size=self.hidden_size,
                linear_before_reset=getattr(self, "linear_before_reset", True),
                dropout=lambda layer, rows: torch.nn.functional.dropout(rows, p, training=p > 0.0))
            final = [s for s in final if s is not None]

        # Back to the caller's layout and batch order.
        if unsorted_indices is not None:
            final = [s.index_select(1, unsorted_indices) for s in final]
        if packed_input:
            y = PackedSequence(y, batch_sizes, sorted_indices, unsorted_indices)
        else:
            if self.batch_first:
                y = y.transpose(0, 1)
            if not batched:
                y = y.squeeze(0 if self.batch_first else 1)
                final = [s.squeeze(1) for s in final]
        return (y, tuple(final)) if self.mode == "LSTM" else (y, final[0])


class LSTM(_RnnkitMixin, nn.LSTM):
    """torch.nn.LSTM on rnnkit's kernels; same constructor, parameters and
    forward. ``proj_size > 0`` runs torch's implementation (with a warning)."""


class GRU(_RnnkitMixin, nn.GRU):
    """torch.nn.GRU on rnnkit's kernels; same constructor, parameters and
    forward, plus ``linear_before_reset`` (keyword only, default True as in
    torch; False is the Cho et al. 2014 "reset before linear" GRU)."""

    # Pickles of modules made before this attribute existed load as torch's form.
    linear_before_reset = True

    def __init__(self, *args, linear_before_reset: bool = True, **kwargs):
        lbr = as_bool(linear_before_reset, "linear_before_reset", zero_one=True)
        super().__init__(*args, **kwargs)
        self.linear_before_reset = lbr

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s if self.linear_before_reset else s + ", linear_before_reset=False"


_TORCH_TWIN = {LSTM: nn.LSTM, GRU: nn.GRU}


def _torch_twin(module: nn.Module) -> nn.Module:
    """The torch.nn module sharing ``module``'s parameters, hooks and state (no copy)."""
    twin = _TORCH_TWIN[type(module)].__new__(_TORCH_TWIN[type(module)])
    state = dict(module.__dict__)
    for k in _RnnkitMixin._RNNKIT_KEYS + ("linear_before_reset",):
        state.pop(k, None)
    twin.__dict__.update(state)
    return twin


# ---- swapping torch's modules inside a model ------------------------------------------

def _rnnkit_twin(module: nn.Module) -> Optional[nn.Module]:
    """The rnnkit module sharing ``module``'s parameters, or None to leave it."""
    if type(module) is nn.LSTM and module.proj_size == 0:
        cls = LSTM
    elif type(module) is nn.GRU:
        cls = GRU
    else:
        return None
    # Built on the meta device (nothing allocated or drawn), then given the original Parameters.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's dropout/num_layers warning was given once already
        twin = cls(module.input_size, module.hidden_size, num_layers=module.num_layers, bias=module.bias,
                   batch_first=module.batch_first, dropout=float(module.dropout),
                   bidirectional=module.bidirectional, device="meta")
    for name in module._flat_weights_names:
        setattr(twin, name, getattr(module, name))
    twin._init_flat_weights()
    twin.train(module.training)
    return twin


def convert(model: nn.Module) -> nn.Module:
    """Swap every ``torch.nn.LSTM`` / ``torch.nn.GRU`` in ``model`` (recursively,
    ``model`` itself included) for :class:`LSTM` / :class:`GRU`; returns the model.

    The new modules share the original Parameter objects, so weights, dtype,
    device and ``requires_grad`` are kept and optimizers built before the
    call keep working; training mode is copied. Children are replaced in
    place (a module held twice stays shared); ``model`` itself, if it is an
    LSTM or GRU, is not changed: use the return value. Left as they are:
    subclasses of torch's modules (they may override forward), LSTMs with
    ``proj_size > 0`` and modules already converted. Hooks registered on a
    swapped module are not carried over.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    return _convert(model, {})


def _convert(module: nn.Module, done: Dict[int, nn.Module]) -> nn.Module:
    if id(module) in done:
        return done[id(module)]
    twin = _rnnkit_twin(module)
    if twin is None:
        done[id(module)] = module
        for name, child in list(module._modules.items()):
            if child is not None:
                new = _convert(child, done)
                if new is not child:
                    setattr(module, name, new)
        return module
    done[id(module)] = twin
    return twin


def __getattr__(name: str):
    # The int8 modules live in rnnkit._torch_quantized, which builds on this
    # module: looked up on use, so that there is no import circle.
    if name in ("quantize_dynamic", "QuantizedLSTM", "QuantizedGRU"):
        from . import _torch_quantized
        return getattr(_torch_quantized, name)
    raise AttributeError(f"module 'rnnkit.torch' has no attribute {name!r}")
