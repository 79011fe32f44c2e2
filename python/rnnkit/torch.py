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
  and weights alike). Contiguous CPU tensors are handed to the kernels
  without a copy (``Tensor.numpy()`` shares memory); batch-first input is
  copied to time-major once. The kernels read weights packed into their own
  layout. A call that records autograd (a training step) packs them afresh:
  training changes them every step, and also through paths ``_version``
  cannot see (``.data`` writes, as gradcheck and hand-written SGD make).
  A call without autograd (``torch.no_grad()``, inference) reuses the last
  packing while the weights are the same tensors, unchanged (``_version``)
  and no ``torch.optim`` step ran since (fused optimizers do not bump
  versions); after writing weights through ``.data`` or a NumPy view, call
  ``module.flatten_parameters()``, which drops the packed copy.
* torch's own implementation, with a one-time ``RuntimeWarning`` per module
  and reason: ``proj_size > 0`` (rnnkit has no projection kernels), tensors
  on another device (CUDA, MPS, ...), or another dtype (float16, bfloat16).
  ``GRU(linear_before_reset=False)`` has no torch counterpart: those cases
  raise ``NotImplementedError`` instead. Empty input (no time steps or no
  batch) also goes to torch, silently, so its errors and results are torch's.
* Dropout between layers (training mode only) draws its masks from torch's
  RNG exactly as torch's own RNN does: ``torch.manual_seed`` reproduces
  them, and torch.nn.LSTM/GRU at the same seed draw the same masks.
* Backward is once differentiable: gradients of gradients raise.

``GRU`` takes one extra keyword, ``linear_before_reset=True`` (torch's form);
``False`` is the Cho et al. 2014 form (ONNX's default, Keras
``reset_after=False``). :func:`convert` swaps the torch modules inside a model
for these. Importing :mod:`rnnkit` does not import torch; this module does.
"""

from __future__ import annotations

import warnings
import weakref
from typing import Dict, Optional

import numpy as np
import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.utils.rnn import PackedSequence
from torch.optim.optimizer import register_optimizer_step_post_hook

from . import isa as _active_isa
from . import layers

__all__ = ["LSTM", "GRU", "convert"]

_KERNEL_DTYPES = (torch.float32, torch.float64)
_TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}

# Fused optimizers change weights without bumping their _version, so every
# torch.optim step (counted here) also ends the reuse of packed weights.
_optimizer_steps = 0


def _count_optimizer_step(optimizer, args, kwargs) -> None:
    global _optimizer_steps
    _optimizer_steps += 1


register_optimizer_step_post_hook(_count_optimizer_step)


def _np(t: Optional[torch.Tensor]) -> Optional[np.ndarray]:
    # Shares memory with a contiguous CPU tensor; copies only a strided one.
    return None if t is None else t.detach().contiguous().numpy()


class _Run:
    """Everything one forward call passes to the autograd Function besides tensors."""

    def __init__(self, module, packed, batch_sizes, record: bool):
        self.mode = module.mode
        self.packed = packed
        self.num_layers = module.num_layers
        self.bidirectional = module.bidirectional
        self.bias = module.bias
        self.batch_sizes = batch_sizes
        # Dropout is a training-mode thing; eval-mode calls that need gradients get none.
        self.dropout = float(module.dropout) if module.training and module.num_layers > 1 else 0.0
        self.record = record or self.dropout > 0.0

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
        ctx.rnn, ctx.bias = rctx, run.bias
        ctx.has_states = (h0 is not None, c0 is not None)
        # The kernels' context refers to x's memory; saving x lets autograd
        # refuse an in-place change before backward with its own error.
        ctx.save_for_backward(x)
        # Unused outputs reach backward as None, which the kernels read as zeros.
        ctx.set_materialize_grads(False)
        outs = (torch.from_numpy(y), torch.from_numpy(h_n))
        return outs if c_n is None else outs + (torch.from_numpy(c_n),)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dh_n, dc_n=None):
        ctx.saved_tensors  # raises if x was modified in place since forward
        dx, dhx, dcx, grads = layers.rnn_backward(ctx.rnn, _np(dy), _np(dh_n), _np(dc_n))
        # Weight gradients in the order of _flat_weights: w_ih, w_hh[, b_ih, b_hh] per layer and direction.
        per_layer = 4 if ctx.bias else 2
        dweights = [torch.from_numpy(g) for layer in grads for g in layer[:per_layer]]
        dh0 = torch.from_numpy(dhx) if ctx.has_states[0] else None
        dc0 = torch.from_numpy(dcx) if ctx.has_states[1] else None
        return (None, torch.from_numpy(dx), dh0, dc0, *dweights)


class _RnnkitMixin:
    """forward() on rnnkit's kernels for a torch.nn.LSTM/GRU subclass."""

    # ---- packed weights --------------------------------------------------------

    def _packed_weights(self, weights, reuse: bool):
        # Reused (if asked) while the same tensors, unchanged, for the same ISA and GRU form.
        key = (_active_isa(), _optimizer_steps, getattr(self, "linear_before_reset", True),
               tuple((w.data_ptr(), w._version, w.dtype) for w in weights))
        cache = getattr(self, "_rnnkit_cache", None)
        if reuse and cache is not None and cache[0] == key and all(r() is w for r, w in zip(cache[1], weights)):
            return cache[2]
        params = {name: _np(w) for name, w in zip(self._flat_weights_names, weights)}
        # Changed weights go into the memory of the last packing (contexts
        # still holding it keep their own copy).
        packed = layers.pack_layer_weights(
            self.mode, params, num_layers=self.num_layers, bidirectional=self.bidirectional,
            bias=self.bias, linear_before_reset=getattr(self, "linear_before_reset", True),
            into=cache[2] if cache is not None else None)
        self._rnnkit_cache = (key, [weakref.ref(w) for w in weights], packed)
        return packed

    def flatten_parameters(self) -> None:
        """torch's (a no-op on the CPU), and drops rnnkit's packed weights:
        call it after changing weights in a way autograd cannot see."""
        super().flatten_parameters()
        self._rnnkit_cache = None

    def __getstate__(self):
        # Packed weights are a cache of the parameters: not pickled, not deep-copied.
        state = super().__getstate__()
        state["_rnnkit_cache"] = None
        return state

    # ---- where a call runs -----------------------------------------------------

    def _fallback_reason(self, input, hx) -> Optional[str]:
        if getattr(self, "proj_size", 0) > 0:
            return "proj_size > 0 (rnnkit has no projection kernels)"
        data = input.data if isinstance(input, PackedSequence) else input
        states = () if hx is None else (tuple(hx) if isinstance(hx, (tuple, list)) else (hx,))
        for t in (data, *states, *self._flat_weights):
            if isinstance(t, torch.Tensor) and t.device.type != "cpu":
                return f"tensors on device {t.device.type!r} (rnnkit runs on the CPU)"
        dtype = self._flat_weights[0].dtype
        if dtype not in _KERNEL_DTYPES:
            return f"weights of dtype {dtype} (rnnkit runs float32 and float64)"
        return None

    def _torch_forward(self, reason: str, input, hx, warn: bool = True):
        if not getattr(self, "linear_before_reset", True):
            raise NotImplementedError(f"rnnkit.torch.GRU(linear_before_reset=False) cannot run {reason}: "
                                      "torch has no such GRU to fall back to")
        warned = self.__dict__.setdefault("_rnnkit_warned", set())
        if warn and reason not in warned:
            warned.add(reason)
            warnings.warn(f"rnnkit.torch.{type(self).__name__}: {reason}; running torch's own "
                          f"implementation instead", RuntimeWarning, stacklevel=3)
        return super().forward(input, hx)

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

    def _check_states(self, x, states, batch_sizes) -> None:
        # torch's own shape checks, plus a clear dtype check where torch fails deep inside.
        if states is None:
            self.check_input(x, batch_sizes)
            return
        self.check_forward_args(x, states if self.mode == "LSTM" else states[0], batch_sizes)
        for name, s in zip(("hx[0]", "hx[1]") if self.mode == "LSTM" else ("hx",), states):
            if s.dtype != x.dtype:
                raise RuntimeError(f"{name}: dtype {s.dtype} does not match the input's ({x.dtype})")

    def forward(self, input, hx=None):
        reason = self._fallback_reason(input, hx)
        if reason is not None:
            return self._torch_forward(reason, input, hx)
        data = input.data if isinstance(input, PackedSequence) else input
        if isinstance(data, torch.Tensor) and data.numel() == 0:
            return self._torch_forward("empty input", input, hx, warn=False)
        self._update_flat_weights()

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
        self._check_states(x, states, batch_sizes)
        if states is not None and sorted_indices is not None:
            states = tuple(s.index_select(1, sorted_indices) for s in states)
        if self.batch_first and not packed_input:
            x = x.transpose(0, 1)

        # One autograd node over x, the states and every weight.
        weights = self._flat_weights
        h0 = states[0] if states else None
        c0 = states[1] if states and self.mode == "LSTM" else None
        record = torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (x, h0, c0, *weights))
        bs = None if batch_sizes is None else batch_sizes.numpy()
        run = _Run(self, self._packed_weights(weights, reuse=not record), bs, record)
        y, *final = _RNNFunction.apply(run, x, h0, c0, *weights)

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

    def __init__(self, *args, linear_before_reset: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.linear_before_reset = bool(linear_before_reset)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s if self.linear_before_reset else s + ", linear_before_reset=False"


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
