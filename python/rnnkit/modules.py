"""NumPy LSTM and GRU modules with torch.nn.LSTM/GRU's interface.

Same constructor arguments, parameter names, shapes, initialisation
(U(-1/sqrt(H), 1/sqrt(H))) and state_dict keys as PyTorch, so weights move
between the two with :meth:`RNNBase.state_dict` / :meth:`RNNBase.load_state_dict`.
NumPy has no autograd: after a call in training mode, :meth:`RNNBase.backward`
returns the input and state gradients and fills :attr:`RNNBase.grads`.

``dtype`` is float32 (default), float64, ``"bfloat16"`` (or
``ml_dtypes.bfloat16``) or ``"int8"``: the last two keep float32 parameters
(master weights: state_dict, optimizer steps) and pack them at that
precision for the products (:attr:`RNNBase.precision`). int8 modules run
inference only: they start in eval mode, and ``train()`` and ``backward``
refuse. Inputs and states are float32 (float64 for float64 modules) or
bfloat16 arrays of ``ml_dtypes``, which give bfloat16 outputs.
"""

from __future__ import annotations

import copy
import threading
from typing import Dict, Mapping, Optional

import numpy as np

from . import layers
from ._common import as_bool, as_int, as_numpy, bfloat16_dtype, from_bfloat16, like_input, precision_name

__all__ = ["RNNBase", "LSTM", "GRU"]


class RNNBase:
    """Shared machinery of :class:`LSTM` and :class:`GRU`; not used directly."""

    # ``cell`` is rnnkit's name of the cell ('lstm' / 'gru', as PackedWeights.cell);
    # ``mode`` is torch.nn.RNNBase's attribute ('LSTM' / 'GRU'), kept for its users.
    cell = ""
    mode = ""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, *,
                 dtype=np.float32, seed: Optional[int] = None, linear_before_reset: bool = True):
        self.input_size = as_int(input_size, "input_size", 1)
        self.hidden_size = as_int(hidden_size, "hidden_size", 1)
        self.num_layers = as_int(num_layers, "num_layers", 1)
        if isinstance(dropout, (bool, np.bool_)) or not isinstance(dropout, (int, float, np.integer, np.floating)):
            raise TypeError(f"dropout: expected a float probability in [0, 1], got {type(dropout).__name__}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1], got {dropout!r}")
        # ``precision``: what the products take; ``dtype``: the parameters'
        # (bfloat16 and int8 modules keep float32 master weights).
        self.precision = precision_name(dtype, "dtype", unknown=TypeError)
        self.dtype = np.dtype(np.float64 if self.precision == "float64" else np.float32)
        self.bias = as_bool(bias, "bias")
        self.batch_first = as_bool(batch_first, "batch_first")
        self.bidirectional = as_bool(bidirectional, "bidirectional")
        self.dropout = float(dropout)
        self.linear_before_reset = as_bool(linear_before_reset, "linear_before_reset", zero_one=True)
        if seed is not None:
            as_int(seed, "seed", 0)
        # int8 weights are quantized for inference only: such a module starts in eval mode.
        self.training = self.precision != "int8"
        # Seeded: the initial weights and every dropout mask are reproducible.
        self._rng = np.random.default_rng(seed)
        self._shapes = layers.param_shapes(self.cell, self.input_size, self.hidden_size, self.num_layers,
                                           self.bidirectional, self.bias)
        self._packed = None
        self._pack_lock = threading.Lock()
        self._ctx = None
        self.grads: Dict[str, np.ndarray] = {}
        self.reset_parameters()

    # ---- parameters ------------------------------------------------------------

    def reset_parameters(self) -> None:
        """torch's initialisation: every parameter U(-1/sqrt(H), 1/sqrt(H))."""
        bound = 1.0 / np.sqrt(self.hidden_size)
        for name, shape in self._shapes.items():
            setattr(self, name, self._rng.uniform(-bound, bound, shape).astype(self.dtype))

    def __setattr__(self, name, value):
        # Replacing a parameter drops the packed copy of the old one.
        if name in getattr(self, "_shapes", ()):
            self._drop_packed()
        object.__setattr__(self, name, value)

    def parameters(self) -> Dict[str, np.ndarray]:
        """Name -> parameter array (the arrays themselves), in torch's order."""
        return {name: getattr(self, name) for name in self._shapes}

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Name -> copy of each parameter; loads into torch.nn.LSTM/GRU as is
        (``{k: torch.from_numpy(v) for k, v in sd.items()}``)."""
        return {name: getattr(self, name).copy() for name in self._shapes}

    def load_state_dict(self, state: Mapping, strict: bool = True) -> None:
        """Load parameters from a state_dict (NumPy arrays or torch tensors),
        e.g. a torch.nn.LSTM/GRU's. Values are copied and cast to this
        module's dtype; with ``strict`` the keys must match exactly."""
        missing = [k for k in self._shapes if k not in state]
        unexpected = [k for k in state if k not in self._shapes]
        if strict and (missing or unexpected):
            raise KeyError(f"state_dict: missing keys {missing}, unexpected keys {unexpected}")
        for name in self._shapes:
            if name not in state:
                continue
            value = as_numpy(state[name])
            if value.shape != self._shapes[name]:
                raise ValueError(f"state_dict[{name!r}]: expected shape {self._shapes[name]}, got {value.shape}")
            setattr(self, name, np.array(value, dtype=self.dtype, copy=True))

    def train(self, mode: bool = True) -> "RNNBase":
        mode = as_bool(mode, "mode")
        if mode and self.precision == "int8":
            raise ValueError(f"mode: rnnkit.{type(self).__name__}(dtype='int8') runs inference only (its weights are "
                             f"quantized for the forward); train a float32 or bfloat16 module and make an int8 one "
                             f"from its state_dict")
        self.training = mode
        self._drop_packed()
        return self

    def eval(self) -> "RNNBase":
        return self.train(False)

    def _drop_packed(self) -> None:
        if getattr(self, "_packed", None) is not None:
            for arr in self._frozen:
                arr.flags.writeable = True
            object.__setattr__(self, "_packed", None)

    def _packed_weights(self):
        # Training steps change the weights between calls: pack every call.
        params = self.parameters()
        if self.training:
            return self._pack(params)
        # Evaluation reuses one packing; the arrays turn read-only meanwhile so
        # an in-place update fails loudly instead of being silently ignored.
        # Locked: concurrent first calls must not both pack and freeze.
        with self._pack_lock:
            return self._eval_packing(params)

    def _eval_packing(self, params):
        if self._packed is None:
            packed = self._pack(params)
            frozen = [a for a in params.values() if a.flags.writeable]
            for arr in frozen:
                arr.flags.writeable = False
            object.__setattr__(self, "_frozen", frozen)
            object.__setattr__(self, "_packed", packed)
        return self._packed

    def _pack(self, params):
        for name, arr in params.items():
            if not isinstance(arr, np.ndarray) or arr.dtype != self.dtype or arr.shape != self._shapes[name]:
                raise ValueError(f"{name}: expected a {self.dtype.name} array of shape {self._shapes[name]}, got "
                                 f"{getattr(arr, 'dtype', type(arr).__name__)} {getattr(arr, 'shape', '')}")
        return layers.pack_layer_weights(self.cell, params, num_layers=self.num_layers,
                                         bidirectional=self.bidirectional, bias=self.bias,
                                         linear_before_reset=self.linear_before_reset, precision=self.precision)

    # ---- forward and backward ----------------------------------------------------

    def __call__(self, x, hx=None, lengths=None):
        return self.forward(x, hx, lengths)

    def forward(self, x, hx=None, lengths=None):
        """x: (T, B, input_size), (B, T, input_size) with batch_first, or
        unbatched (T, input_size). hx: h0 (GRU) or (h0, c0) (LSTM), each
        (num_layers * D, B, H) ((num_layers * D, H) unbatched), or None.
        lengths: (B,) sequence lengths in [1, T], any order; outputs past a
        sequence's end are zero and its final state is taken at its end.
        Returns (y, h_n) for the GRU, (y, (h_n, c_n)) for the LSTM.
        x and the states are of the parameters' dtype (float32 for
        'bfloat16' and 'int8' modules) or, where that is float32, bfloat16
        arrays (``ml_dtypes``): the outputs are then bfloat16 too."""
        x = np.asarray(x)
        bf16 = bfloat16_dtype(x) if self.dtype == np.float32 else None
        if x.dtype != self.dtype and bf16 is None:
            allowed = self.dtype.name + (" or bfloat16" if self.dtype == np.float32 else "")
            raise TypeError(f"x: expected dtype {allowed} (the module's), got {x.dtype}")
        if x.ndim not in (2, 3) or x.shape[-1] != self.input_size:
            raise ValueError(f"x: expected shape (T, B, {self.input_size}) (batch_first: (B, T, "
                             f"{self.input_size}); unbatched: (T, {self.input_size})), got {x.shape}")
        unbatched = x.ndim == 2
        if unbatched:
            x = x[:, None, :]
        elif self.batch_first:
            x = np.ascontiguousarray(x.transpose(1, 0, 2))
        h0, c0 = self._split_state(hx, unbatched)

        y, h_n, c_n, ctx = layers.rnn_forward(
            self.cell, x, self._packed_weights(), h0, c0, num_layers=self.num_layers,
            bidirectional=self.bidirectional, lengths=lengths, dropout=self.dropout,
            dropout_mask=self._mask, training=self.training)
        self._ctx = (ctx, unbatched, bf16) if self.training else None
        return self._shape_outputs(y, h_n, c_n, unbatched)

    def backward(self, dy=None, dhx_n=None):
        """Gradients of the last training-mode call. dy like its y, dhx_n
        like its h_n (GRU) or (h_n, c_n) (LSTM); None for zeros. Returns
        (dx, dhx) shaped like x and hx, and sets :attr:`grads`
        (parameter name -> gradient). dx is bfloat16 when x was, every
        other gradient float32 (the parameters' dtype)."""
        if self.precision == "int8":
            raise RuntimeError(f"backward: rnnkit.{type(self).__name__}(dtype='int8') runs inference only")
        if self._ctx is None:
            raise RuntimeError("backward: call the module in training mode (module.train()) first")
        ctx, unbatched, *rest = self._ctx  # a context pickled before bfloat16 inputs: two entries
        bf16 = rest[0] if rest else None
        if dy is not None:
            dy = np.asarray(dy)
            if dy.ndim != (2 if unbatched else 3):
                raise ValueError(f"dy: expected a {2 if unbatched else 3}-D array shaped like the output y, "
                                 f"got shape {dy.shape}")
            if unbatched:
                dy = dy[:, None, :]
            elif self.batch_first:
                dy = np.ascontiguousarray(dy.transpose(1, 0, 2))
        dh_n, dc_n = self._split_state(dhx_n, unbatched, name="dhx_n")
        dx, dhx, dcx, grads = layers.rnn_backward(ctx, dy, dh_n, dc_n)

        names = list(self._shapes)
        per_layer = 4 if self.bias else 2
        self.grads = {}
        for k, g in enumerate(grads):
            for name, value in zip(names[k * per_layer:(k + 1) * per_layer], g):
                self.grads[name] = value
        if unbatched:
            dx, dhx = dx[:, 0], dhx[:, 0]
            dcx = dcx[:, 0] if dcx is not None else None
        elif self.batch_first:
            dx = dx.transpose(1, 0, 2)
        dx = like_input(dx, bf16)
        return dx, ((dhx, dcx) if self.cell == "lstm" else dhx)

    def _mask(self, shape, dtype):
        return layers.bernoulli_mask(self._rng, self.dropout, shape, dtype)

    def _split_state(self, hx, unbatched, name="hx"):
        if hx is None:
            return None, None
        if self.cell == "lstm":
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"{name}: the LSTM expects a pair (h, c) or None")
            # Either part may be None (zeros), as in a gradient of h_n only.
            h, c = (None if s is None else np.asarray(s) for s in hx)
        else:
            if isinstance(hx, (tuple, list)):
                raise TypeError(f"{name}: the GRU expects one array h or None, not a {type(hx).__name__}")
            h, c = np.asarray(hx), None
        if unbatched:
            h = h[:, None, :] if h is not None and h.ndim == 2 else h
            c = c[:, None, :] if c is not None and c.ndim == 2 else c
        return h, c

    def _shape_outputs(self, y, h_n, c_n, unbatched):
        if unbatched:
            y, h_n = y[:, 0], h_n[:, 0]
            c_n = c_n[:, 0] if c_n is not None else None
        elif self.batch_first:
            y = y.transpose(1, 0, 2)
        return (y, (h_n, c_n)) if self.cell == "lstm" else (y, h_n)

    # ---- copies and pickles ------------------------------------------------------
    # The eval-mode packing is a cache (its parameters are read-only meanwhile):
    # a copy or a pickle leaves it out and packs again on its first call, so
    # a copy shares no packed memory and its parameters stay writable. The
    # training context of the last call (kernel contexts and dropout masks)
    # and the random generator are kept: a copy's backward and its next
    # dropout masks are the original's.

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_packed"] = None
        state.pop("_frozen", None)
        state.pop("_pack_lock", None)
        return state

    def __setstate__(self, state):
        # Modules pickled before precisions existed: their dtype says it all.
        state.setdefault("precision", state["dtype"].name)
        for name in state.get("_shapes", ()):
            arr = state.get(name)
            if isinstance(arr, np.ndarray) and not arr.flags.writeable:
                state[name] = arr.copy()
        self.__dict__.update(state)
        self._pack_lock = threading.Lock()

    def __copy__(self):
        # Independent of the original: its own parameter arrays and random
        # generator (an in-place step or a dropout draw of one leaves the
        # other alone). The last call's context is shared: backward only reads it.
        new = type(self).__new__(type(self))
        state = self.__getstate__()
        for name in self._shapes:
            state[name] = np.array(state[name], copy=True)
        state["_rng"] = copy.deepcopy(self._rng)
        state["grads"] = dict(self.grads)
        new.__setstate__(state)
        return new

    def __repr__(self):
        extra = "" if self.cell == "lstm" or self.linear_before_reset else ", linear_before_reset=False"
        return (f"rnnkit.{type(self).__name__}({self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"bias={self.bias}, batch_first={self.batch_first}, dropout={self.dropout}, "
                f"bidirectional={self.bidirectional}, dtype={self.precision}{extra})")


class LSTM(RNNBase):
    """Multi-layer LSTM with torch.nn.LSTM's arguments and parameters
    (gate order i, f, g, o). See :class:`RNNBase` for the methods."""

    cell, mode = "lstm", "LSTM"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, *,
                 dtype=np.float32, seed: Optional[int] = None):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         dtype=dtype, seed=seed)


class GRU(RNNBase):
    """Multi-layer GRU with torch.nn.GRU's arguments and parameters (gate
    order r, z, n). ``linear_before_reset=True`` is torch's form (r applied
    to W_hn h + b_hn); False is the original one (W_hn applied to r * h;
    ONNX's default, Keras reset_after=False)."""

    cell, mode = "gru", "GRU"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, *,
                 dtype=np.float32, seed: Optional[int] = None, linear_before_reset: bool = True):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         dtype=dtype, seed=seed, linear_before_reset=linear_before_reset)
