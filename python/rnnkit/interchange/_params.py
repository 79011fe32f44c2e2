"""The params dict (torch.nn.LSTM/GRU names -> arrays) that every format
converts to and from: its checks, gate-block reorders and the helpers the
format modules share."""

from __future__ import annotations

import re
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from .. import layers
from .._common import GATES, as_bool, as_int, cell_name
from ..modules import GRU, LSTM

# Gate blocks of the other layouts in torch's terms: block k of the other
# layout is torch's block PERM[k] (LSTM torch i,f,g,o; GRU torch r,z,n).
_ONNX_LSTM = (0, 3, 1, 2)   # ONNX i, o, f, c
_KERAS_LSTM = (0, 1, 2, 3)  # Keras i, f, c, o
_ZRH_GRU = (1, 0, 2)        # ONNX and Keras z, r, h

_KEY = re.compile(r"^(weight|bias)_(ih|hh)_l(\d+)(_reverse)?$")


def _mode(mode: str) -> str:
    """'LSTM' / 'GRU' (ONNX's op names and torch.nn's modes) from any casing."""
    return cell_name(mode, "mode").upper()


def _dtype_name(value) -> str:
    """'float32' for a float32 array or torch tensor (torch names its dtypes 'torch.float32')."""
    dt = getattr(value, "dtype", None)
    if dt is None:
        return np.asarray(value).dtype.name
    return str(dt)[6:] if str(dt).startswith("torch.") else np.dtype(dt).name


def _array(name: str, value, dtype=None) -> np.ndarray:
    """A float32/float64 NumPy copy of an array or a torch tensor (duck-typed,
    so torch is never imported here); ``dtype`` casts, otherwise the dtype
    must already be float32 or float64."""
    if dtype is None and _dtype_name(value) not in ("float32", "float64"):
        raise TypeError(f"{name}: expected dtype float32 or float64, got {_dtype_name(value)}")
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        # double() first: NumPy has no bfloat16, and float64 holds every torch float exactly.
        value = value.detach().cpu()
        value = (value if dtype is None else value.double()).numpy()
    return np.array(value, dtype=dtype, copy=True)


def _reorder(a: np.ndarray, perm: Sequence[int]) -> np.ndarray:
    """The gate blocks (along the first axis) of ``a`` in the order ``perm``:
    block k of the result is block perm[k] of ``a``."""
    blocks = np.split(a, len(perm))
    return np.concatenate([blocks[p] for p in perm])


def _undo(perm: Sequence[int]) -> Tuple[int, ...]:
    return tuple(int(i) for i in np.argsort(perm))


def _suffix(layer: int, reverse: bool) -> str:
    """``_l{layer}[_reverse]``; a negative or non-integer layer would make keys torch never has."""
    return f"_l{as_int(layer, 'layer', 0)}" + ("_reverse" if as_bool(reverse, "reverse") else "")


def _expect_shape(name: str, arr: np.ndarray, shape: Tuple[int, ...], meaning: str) -> None:
    if arr.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)} = {meaning}, got {arr.shape}")


def check_params(mode: str, params: Mapping[str, np.ndarray], *, input_size: Optional[int] = None,
                 hidden_size: Optional[int] = None, num_layers: Optional[int] = None,
                 bidirectional: Optional[bool] = None, bias: Optional[bool] = None,
                 what: str = "params", check_dtypes: bool = True) -> Dict[str, Any]:
    """Check a params dict and return its configuration.

    Whatever is not given is inferred from the keys (layers, ``_reverse``,
    biases) and from ``weight_ih_l0`` (input size) and ``weight_hh_l0``
    (hidden size); then every key, shape and dtype must match exactly.
    Raises ValueError naming a missing, unexpected or misshaped key (with the
    expected shape) and TypeError for mixed or non-float dtypes. Returns
    dict(input_size, hidden_size, num_layers, bidirectional, bias).
    """
    mode = _mode(mode)
    G = GATES[mode.lower()]
    if not isinstance(params, Mapping):
        raise TypeError(f"{what}: expected a mapping of parameter names to arrays, got {type(params).__name__}")
    input_size, hidden_size, num_layers = (None if v is None else as_int(v, name, 1) for v, name in (
        (input_size, "input_size"), (hidden_size, "hidden_size"), (num_layers, "num_layers")))
    bidirectional, bias = (None if v is None else as_bool(v, name) for v, name in (
        (bidirectional, "bidirectional"), (bias, "bias")))
    parsed = {k: _KEY.match(k) if isinstance(k, str) else None for k in params}
    for key, m in parsed.items():
        if m is None:
            hint = " (projections, proj_size > 0, are not supported)" if key.startswith("weight_hr") else ""
            raise ValueError(f"{what}: unexpected key {key!r}{hint}")
    found = list(parsed.values())
    if num_layers is None:
        num_layers = 1 + max((int(m.group(3)) for m in found), default=0)
    if bidirectional is None:
        bidirectional = any(m.group(4) for m in found)
    if bias is None:
        bias = any(m.group(1) == "bias" for m in found)
    # Sizes come from layer 0: weight_hh_l0 is (G*H, H), weight_ih_l0 (G*H, I).
    for name in ("weight_hh_l0", "weight_ih_l0"):
        if name not in params:
            raise ValueError(f"{what}: missing key {name!r} (expected shape ({G}*hidden_size, "
                             f"{'hidden_size' if 'hh' in name else 'input_size'}))")
    if hidden_size is None:
        shape = tuple(np.shape(params["weight_hh_l0"]))
        if len(shape) != 2 or shape[0] != G * shape[1]:
            raise ValueError(f"{what}['weight_hh_l0']: expected shape ({G}*hidden_size, hidden_size) "
                             f"for a {mode}, got {shape}")
        hidden_size = shape[1]
    if input_size is None:
        shape = tuple(np.shape(params["weight_ih_l0"]))
        if len(shape) != 2:
            raise ValueError(f"{what}['weight_ih_l0']: expected shape ({G}*hidden_size, input_size), got {shape}")
        input_size = shape[1]

    expected = layers.param_shapes(mode, input_size, hidden_size, num_layers, bidirectional, bias)
    config = dict(input_size=int(input_size), hidden_size=int(hidden_size), num_layers=int(num_layers),
                  bidirectional=bool(bidirectional), bias=bool(bias))
    described = (f"a {num_layers}-layer {'bidirectional ' if bidirectional else ''}{mode} with input_size "
                 f"{input_size}, hidden_size {hidden_size}{'' if bias else ', bias=False'}")
    for key in params:
        if key not in expected:
            raise ValueError(f"{what}: unexpected key {key!r} for {described}")
    first = _dtype_name(params["weight_ih_l0"])
    for key, shape in expected.items():
        if key not in params:
            raise ValueError(f"{what}: missing key {key!r} (expected shape {shape}) for {described}")
        got = tuple(np.shape(params[key]))
        if got != shape:
            raise ValueError(f"{what}[{key!r}]: expected shape {shape} for {described}, got {got}")
        name = _dtype_name(params[key])
        if check_dtypes and name not in ("float32", "float64"):
            raise TypeError(f"{what}[{key!r}]: expected dtype float32 or float64, got {name}")
        if check_dtypes and name != first:
            raise TypeError(f"{what}[{key!r}]: dtype {name} differs from weight_ih_l0's {first} (one dtype for all)")
    return config


def _layer_params(mode: str, params: Mapping[str, Any], sfx: str):
    """Checked (w_ih, w_hh, b_ih, b_hh) of one layer and direction; the biases None when absent."""
    G = GATES[mode.lower()]
    if not isinstance(params, Mapping):
        raise TypeError(f"params: expected a mapping of parameter names to arrays, got {type(params).__name__}")
    names = [kind + sfx for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    for name in names[:2]:
        if name not in params:
            raise ValueError(f"params: missing key {name!r}")
    if (names[2] in params) != (names[3] in params):
        raise ValueError(f"params: {names[2]!r} and {names[3]!r} must be given together")
    arrays = [_array(f"params[{n!r}]", params[n]) if n in params else None for n in names]
    w_ih, w_hh = arrays[:2]
    if w_hh.ndim != 2 or w_hh.shape[0] != G * w_hh.shape[1]:
        raise ValueError(f"params[{names[1]!r}]: expected shape ({G}*H, H), got {w_hh.shape}")
    gh = w_hh.shape[0]
    if w_ih.ndim != 2 or w_ih.shape[0] != gh:
        raise ValueError(f"params[{names[0]!r}]: expected shape ({gh}, input_size), got {w_ih.shape}")
    for name, arr in zip(names[1:], arrays[1:]):
        if arr is not None and name != names[1] and arr.shape != (gh,):
            raise ValueError(f"params[{name!r}]: expected shape ({gh},), got {arr.shape}")
        if arr is not None and arr.dtype != w_ih.dtype:
            raise TypeError(f"params[{name!r}]: dtype {arr.dtype} differs from {names[0]}'s {w_ih.dtype}")
    return tuple(arrays)


def _build_layer(mode: str, params: Dict[str, np.ndarray], *, batch_first: bool, linear_before_reset: bool):
    """A rnnkit.LSTM/GRU (NumPy module, eval mode) holding ``params``."""
    cfg = check_params(mode, params)
    kw = {} if mode == "LSTM" else {"linear_before_reset": as_bool(linear_before_reset, "linear_before_reset",
                                                                   zero_one=True)}
    cls = LSTM if mode == "LSTM" else GRU
    module = cls(cfg["input_size"], cfg["hidden_size"], cfg["num_layers"], bias=cfg["bias"],
                 batch_first=as_bool(batch_first, "batch_first"), bidirectional=cfg["bidirectional"],
                 dtype=params["weight_ih_l0"].dtype, **kw)
    module.load_state_dict(params)
    return module.eval()
