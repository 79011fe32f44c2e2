"""int8 LSTM/GRU modules on rnnkit's kernels, and :func:`quantize_dynamic`,
which swaps them into a model (``rnnkit.torch`` re-exports all three).

Weights are quantized once, symmetric per output row (one scale per gate
unit); each step quantizes its input rows and h dynamically (per row),
sums in int32 and dequantizes into float32 before the gate math; bias,
gates and cell state stay float32. Forward only: the modules hold no
float weights, train no parameters and pass no gradient.

Importing this module imports torch.
"""

from __future__ import annotations

import copy
import warnings
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from . import layers
from ._common import as_bool
from .torch import GRU as _RnnkitGRU
from .torch import LSTM as _RnnkitLSTM
from .torch import _graph_context, _RnnkitMixin

__all__ = ["QuantizedLSTM", "QuantizedGRU", "quantize_dynamic"]


class _QuantizedRNNBase(_RnnkitMixin, nn.Module):
    """Shared machinery of :class:`QuantizedLSTM` and :class:`QuantizedGRU`."""

    mode = ""
    _FLOAT = nn.RNNBase
    proj_size = 0
    linear_before_reset = True
    # No float weights: the kernels read self._packed (int8 panels) only.
    _flat_weights: Tuple[torch.Tensor, ...] = ()

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, *,
                 dtype=torch.qint8, **kwargs):
        """torch.nn's constructor (and torch's dynamic quantized modules'
        ``dtype=torch.qint8``); the weights are torch.nn's initial ones,
        quantized. The GRU also takes ``linear_before_reset``."""
        nn.Module.__init__(self)
        if dtype != torch.qint8:
            raise ValueError(f"dtype: rnnkit's int8 modules take torch.qint8, got {dtype}")
        lbr = kwargs.pop("linear_before_reset", True) if self.mode == "GRU" else True
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected keyword arguments {sorted(kwargs)}")
        make = _RnnkitGRU if self.mode == "GRU" else self._FLOAT
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's dropout / num_layers warning
            source = make(input_size, hidden_size, num_layers=num_layers, bias=bias, batch_first=batch_first,
                          dropout=dropout, bidirectional=bidirectional,
                          **({"linear_before_reset": lbr} if self.mode == "GRU" else {}))
        self._quantize(source)
        self.eval()

    @classmethod
    def from_float(cls, mod: nn.Module) -> "_QuantizedRNNBase":
        """The int8 module of a float torch.nn / rnnkit.torch LSTM or GRU
        (float32, float64 or bfloat16 weights; read as float32 and quantized
        for the active instruction set). The float module is not changed."""
        want = nn.LSTM if cls.mode == "LSTM" else nn.GRU
        if not isinstance(mod, want):
            raise TypeError(f"mod: expected a torch.nn.{want.__name__} (or rnnkit.torch.{want.__name__}), "
                            f"got {type(mod).__name__}")
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new._quantize(mod)
        new.train(False)
        return new

    def _quantize(self, mod: nn.Module) -> None:
        if getattr(mod, "proj_size", 0) > 0:
            raise ValueError("mod: proj_size > 0 has no rnnkit kernels (torch's quantize_dynamic quantizes it)")
        for name in ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "bidirectional"):
            setattr(self, name, getattr(mod, name))
        self.dropout = float(mod.dropout)
        if self.mode == "GRU":
            self.linear_before_reset = getattr(mod, "linear_before_reset", True)
        params = {name: getattr(mod, name) for name in mod._flat_weights_names}
        self._pack(params)

    def _pack(self, params) -> None:
        # float32 arrays of any float tensor (bfloat16 and float64 included) on any device.
        arrays = {k: v.detach().to("cpu", torch.float32).numpy() if isinstance(v, torch.Tensor)
                  else np.asarray(v, np.float32) for k, v in params.items()}
        self._packed = layers.pack_layer_weights(
            self.mode, arrays, num_layers=self.num_layers, bidirectional=self.bidirectional, bias=self.bias,
            linear_before_reset=self.linear_before_reset, precision="int8")

    def _packed_weights(self, weights, precision: str = "int8"):
        return self._packed

    def flatten_parameters(self) -> None:
        """A no-op (torch.nn's RNNs have it)."""

    # ---- torch.nn's argument checks, for float32 input ------------------------------

    def check_input(self, input: torch.Tensor, batch_sizes) -> None:
        if input.dtype != torch.float32:
            raise ValueError(f"{type(self).__name__}: input dtype ({input.dtype}) must be float32 (int8 weights "
                             f"take float32 input)")
        expected = 2 if batch_sizes is not None else 3
        if input.dim() != expected:
            raise RuntimeError(f"input must have {expected} dimensions, got {input.dim()}")
        if self.input_size != input.size(-1):
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                               f"got {input.size(-1)}")

    get_expected_hidden_size = nn.RNNBase.get_expected_hidden_size
    check_hidden_size = nn.RNNBase.check_hidden_size

    # ---- forward ------------------------------------------------------------------

    def forward(self, input, hx=None):
        """torch.nn.LSTM/GRU's forward (tensor or PackedSequence, batch-first
        or not, batched or not, optional states), float32 in and out, on
        rnnkit's int8 kernels. Inference only: training mode is refused, and
        a backward through the outputs raises."""
        name = type(self).__name__
        if self.training:
            raise RuntimeError(f"{name}: int8 modules run inference only; call .eval() (quantize_dynamic returns "
                               f"the model in eval mode)")
        data = input.data if isinstance(input, PackedSequence) else input
        if not isinstance(data, torch.Tensor):
            raise TypeError(f"{name}: input must be a Tensor or a PackedSequence, got {type(input).__name__}")
        states = () if hx is None else (tuple(hx) if isinstance(hx, (tuple, list)) else (hx,))
        reason = _graph_context((data, *states))
        if reason is not None:
            raise RuntimeError(f"{name}: {reason} cannot run rnnkit's int8 kernels (they are no torch operations); "
                               f"quantize with torch.ao.quantization.quantize_dynamic for that")
        for t in (data, *states):
            if isinstance(t, torch.Tensor) and t.device.type != "cpu":
                raise RuntimeError(f"{name}: tensors on device {t.device.type!r}; rnnkit's int8 kernels run on the CPU")
        if data.numel() == 0:
            raise ValueError(f"{name}: empty input (no time steps or no batch)")
        return self._run(input, hx, kernels=True, precision="int8")

    # ---- state_dict: torch.nn's names, the values the kernels use ---------------------

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        # The dequantized weights (int8 level * row scale) under torch.nn's
        # names: they load into a float torch.nn module as they are, and
        # loading them here quantizes them to the same int8 weights again.
        names = layers.param_names(self.num_layers, self.bidirectional, self.bias)
        per = 4 if self.bias else 2
        for k, packed in enumerate(self._packed):
            for name, value in zip(names[k * per:(k + 1) * per], packed.unpack()):
                destination[prefix + name] = torch.from_numpy(value)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        names = layers.param_names(self.num_layers, self.bidirectional, self.bias)
        missing = [prefix + n for n in names if prefix + n not in state_dict]
        missing_keys.extend(missing)
        if strict:
            unexpected_keys.extend(k for k in state_dict if k.startswith(prefix) and "." not in k[len(prefix):]
                                   and k[len(prefix):] not in names)
        if missing:
            return
        shapes = layers.param_shapes(self.mode, self.input_size, self.hidden_size, self.num_layers,
                                     self.bidirectional, self.bias)
        for n in names:
            if tuple(state_dict[prefix + n].shape) != shapes[n]:
                error_msgs.append(f"size mismatch for {prefix + n}: expected {shapes[n]}, "
                                  f"got {tuple(state_dict[prefix + n].shape)}")
                return
        self._pack({n: state_dict[prefix + n] for n in names})

    def __prepare_scriptable__(self):
        raise NotImplementedError(f"{type(self).__name__} cannot be scripted: rnnkit's int8 kernels are no torch "
                                  f"operations")

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if not self.linear_before_reset:
            s += ", linear_before_reset=False"
        return s + ", dtype=torch.qint8"


class QuantizedLSTM(_QuantizedRNNBase):
    """torch.nn.LSTM's interface on rnnkit's int8 kernels (inference only);
    made by :func:`quantize_dynamic` or :meth:`from_float`."""

    mode = "LSTM"
    _FLOAT = nn.LSTM
    check_forward_args = nn.LSTM.check_forward_args
    get_expected_cell_size = nn.LSTM.get_expected_cell_size


class QuantizedGRU(_QuantizedRNNBase):
    """torch.nn.GRU's interface on rnnkit's int8 kernels (inference only),
    either GRU form (``linear_before_reset`` of the float module it was made
    from); made by :func:`quantize_dynamic` or :meth:`from_float`."""

    mode = "GRU"
    _FLOAT = nn.GRU
    check_forward_args = nn.GRU.check_forward_args


# ---- quantize_dynamic ---------------------------------------------------------------------

_RECURRENT = {nn.LSTM: QuantizedLSTM, _RnnkitLSTM: QuantizedLSTM, nn.GRU: QuantizedGRU, _RnnkitGRU: QuantizedGRU}
# A spec entry for either class of a pair covers both (rnnkit.torch's are drop-ins for torch.nn's).
_SAME = {nn.LSTM: nn.LSTM, _RnnkitLSTM: nn.LSTM, nn.GRU: nn.GRU, _RnnkitGRU: nn.GRU}


def _check_qconfig(key, qconfig) -> None:
    # rnnkit's int8 scheme is fixed (per-row symmetric int8 weights, dynamic per-row inputs):
    # a qconfig asking for another weight dtype is refused rather than ignored.
    try:
        dtype = qconfig.weight().dtype
    except Exception:  # noqa: BLE001 - anything that is no QConfig
        raise TypeError(f"qconfig_spec[{key!r}]: expected a torch.ao.quantization QConfig or None, "
                        f"got {type(qconfig).__name__}") from None
    if dtype != torch.qint8:
        raise ValueError(f"qconfig_spec[{key!r}]: rnnkit quantizes LSTM/GRU weights to torch.qint8, the qconfig asks "
                         f"for {dtype}; use torch.ao.quantization.quantize_dynamic for that")


def _split_spec(qconfig_spec):
    """(recurrent types -> include?, names -> include?, whether torch has entries to handle)."""
    if qconfig_spec is None:
        return {nn.LSTM: True, nn.GRU: True}, {}, False
    if isinstance(qconfig_spec, dict):
        items = list(qconfig_spec.items())
    elif isinstance(qconfig_spec, (set, frozenset, list, tuple)):
        items = [(k, True) for k in qconfig_spec]
    else:
        raise TypeError(f"qconfig_spec: expected None, a set of module types / names or a dict of them, "
                        f"got {type(qconfig_spec).__name__}")
    types: Dict[type, bool] = {}
    names: Dict[str, bool] = {}
    for key, qconfig in items:
        if isinstance(key, str):
            names[key] = qconfig is not None
        elif isinstance(key, type):
            if key in _SAME:
                types[_SAME[key]] = qconfig is not None
        else:
            raise TypeError(f"qconfig_spec: keys are module types or submodule names, got {type(key).__name__} "
                            f"{key!r}")
        if qconfig is not None and qconfig is not True and (isinstance(key, str) or key in _SAME):
            _check_qconfig(key, qconfig)
    others = any(isinstance(k, type) and k not in _SAME for k, _ in items) or bool(names)
    return types, names, others


def _swap(module: nn.Module, prefix: str, types, names, inherited: bool, done, left) -> nn.Module:
    """``module`` or its int8 twin, children swapped in place (torch's propagation:
    a type's entry overrides the parent's, a name's overrides the type's)."""
    kind = _SAME.get(type(module))
    include = names.get(prefix, types.get(kind, inherited))
    if id(module) in done:
        return done[id(module)]
    if kind is not None and include:
        if getattr(module, "proj_size", 0) > 0:
            left.append(prefix or "<model>")
        else:
            done[id(module)] = _RECURRENT[type(module)].from_float(module)
            return done[id(module)]
    done[id(module)] = module
    for child_name, child in list(module._modules.items()):
        if child is not None:
            new = _swap(child, f"{prefix}.{child_name}" if prefix else child_name, types, names, include, done,
                        left)
            if new is not child:
                setattr(module, child_name, new)
    return module


def quantize_dynamic(model: nn.Module, qconfig_spec=None, dtype=torch.qint8, mapping=None,
                     inplace: bool = False) -> nn.Module:
    """torch.ao.quantization.quantize_dynamic's contract, with the LSTM and
    GRU modules running rnnkit's int8 kernels.

    Returns ``model`` (a deep copy unless ``inplace``) in eval mode, its
    ``torch.nn.LSTM`` / ``torch.nn.GRU`` modules (and rnnkit.torch's) replaced
    by :class:`QuantizedLSTM` / :class:`QuantizedGRU`: weights quantized once
    (int8, per output row), inputs and states per step; inference only.
    ``model`` itself may be an LSTM or GRU: its int8 twin is returned (torch
    returns such a model unquantized).

    ``qconfig_spec`` selects as torch's does: a set of module types and/or
    submodule names, or a dict of them to QConfigs (None excludes; a name's
    entry overrides a type's and applies to the submodules below it). By
    default (None) only the LSTM and GRU modules are quantized, unlike torch,
    whose default also quantizes ``nn.Linear`` and the RNN cells: name those
    types to have them quantized too. Entries rnnkit has no kernels for
    (``nn.Linear``, cells, ...) are handed to torch's own quantize_dynamic
    with ``mapping``; LSTMs with ``proj_size > 0`` too. Only ``dtype=torch.qint8``
    (and QConfigs with qint8 weights) are taken for the recurrent modules.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if dtype != torch.qint8:
        raise ValueError(f"dtype: rnnkit quantizes to torch.qint8, got {dtype}; use "
                         f"torch.ao.quantization.quantize_dynamic for other dtypes")
    inplace = as_bool(inplace, "inplace")
    if mapping is not None and any(k in _SAME for k in mapping):
        raise ValueError("mapping: rnnkit maps LSTM and GRU modules itself; leave them out of mapping (or use "
                         "torch.ao.quantization.quantize_dynamic)")
    types, names, others = _split_spec(qconfig_spec)
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    left: list = []
    model = _swap(model, "", types, names, False, {}, left)
    if left or others:
        # What rnnkit has no kernels for: torch's own quantization, with the caller's spec.
        spec = {nn.LSTM} if qconfig_spec is None else qconfig_spec
        from torch.ao.quantization import quantize_dynamic as torch_quantize_dynamic
        model = torch_quantize_dynamic(model, spec, dtype, mapping=mapping, inplace=True)
    return model
