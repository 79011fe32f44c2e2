"""Weight interchange: PyTorch state_dicts, Keras and ONNX LSTM/GRU weights.

rnnkit's canonical parameters are a *params dict*: torch.nn.LSTM/GRU names
(``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``,
suffix ``_reverse`` for the reverse direction) -> NumPy arrays of one dtype
(float32 or float64), shapes and gate order as torch holds them. Every gate
reorder and transpose of the project happens in this module.

Layouts (H hidden size, I input size, D directions)::

    framework        weights                          gate order
    PyTorch/rnnkit   weight_ih (G*H, I), weight_hh    LSTM i f g o   GRU r z n
                     (G*H, H), bias_ih, bias_hh (G*H)
    Keras            kernel (I, G*H), recurrent_      LSTM i f c o   GRU z r h
                     kernel (H, G*H), bias (G*H,) or
                     (2, 3H) for GRU reset_after=True
    ONNX             W [D, G*H, I], R [D, G*H, H],    LSTM i o f c   GRU z r h
                     B [D, 2*G*H] = [Wb, Rb]

GRU forms: torch's (and Keras reset_after=True, ONNX linear_before_reset=1)
is "linear before reset", n = tanh(W_in x + b_in + r * (W_hn h + b_hn));
Keras reset_after=False and ONNX linear_before_reset=0 (ONNX's default) is
n = tanh(W_in x + b_in + W_hn (r * h) + b_hn), rnnkit's
``linear_before_reset=False``. The params dict is the same for both; the form
travels beside it as ``linear_before_reset``.

Only NumPy is needed; :func:`run_onnx_node` imports onnx when called.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import layers
from .modules import GRU, LSTM

__all__ = [
    "check_params", "from_state_dict", "to_state_dict",
    "from_keras_lstm", "to_keras_lstm", "from_keras_gru", "to_keras_gru", "layer_from_keras",
    "from_onnx_lstm", "from_onnx_gru", "to_onnx_lstm", "to_onnx_gru",
    "run_onnx_rnn", "run_onnx_node", "layer_from_onnx",
]

# Gate blocks of the other layouts in torch's terms: block k of the other
# layout is torch's block PERM[k] (LSTM torch i,f,g,o; GRU torch r,z,n).
_ONNX_LSTM = (0, 3, 1, 2)   # ONNX i, o, f, c
_KERAS_LSTM = (0, 1, 2, 3)  # Keras i, f, c, o
_ZRH_GRU = (1, 0, 2)        # ONNX and Keras z, r, h

_KEY = re.compile(r"^(weight|bias)_(ih|hh)_l(\d+)(_reverse)?$")


# ---- small helpers -----------------------------------------------------------

def _mode(mode: str) -> str:
    if not isinstance(mode, str) or mode.upper() not in layers.MODES:
        raise ValueError(f"mode: expected 'LSTM' or 'GRU', got {mode!r}")
    return mode.upper()


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
    return f"_l{layer}" + ("_reverse" if reverse else "")


def _expect_shape(name: str, arr: np.ndarray, shape: Tuple[int, ...], meaning: str) -> None:
    if arr.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)} = {meaning}, got {arr.shape}")


# ---- the params dict and torch state_dicts ---------------------------------------

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
    G = layers.MODES[mode]
    parsed = {k: _KEY.match(k) for k in params}
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


def from_state_dict(state_dict: Mapping[str, Any], mode: str, *, prefix: str = "",
                    num_layers: Optional[int] = None, bidirectional: Optional[bool] = None,
                    bias: Optional[bool] = None, dtype=None) -> Dict[str, np.ndarray]:
    """The params dict of a torch.nn.LSTM/GRU state_dict (or of any mapping
    with torch's names). Values may be torch tensors (copied to NumPy,
    detached, on the CPU) or arrays; ``dtype`` casts them (default: keep).

    ``prefix``: the module's path inside a larger model's state_dict (e.g.
    ``"encoder.rnn"``); only keys under it are read and the prefix is
    stripped. Every key under it must be an LSTM/GRU parameter of the
    inferred (or given) configuration: see :func:`check_params`.
    """
    if prefix and not prefix.endswith("."):
        prefix += "."
    params = {key[len(prefix):]: value for key, value in state_dict.items() if key.startswith(prefix)}
    if not params:
        raise ValueError(f"state_dict: no keys start with prefix {prefix!r}" if prefix else "state_dict: empty")
    label = f"state_dict (prefix {prefix!r})" if prefix else "state_dict"
    check_params(mode, params, num_layers=num_layers, bidirectional=bidirectional, bias=bias, what=label,
                 check_dtypes=dtype is None)
    return {key: _array(f"state_dict[{prefix + key!r}]", value, dtype) for key, value in params.items()}


def to_state_dict(params: Mapping[str, np.ndarray], *, prefix: str = "", tensors: bool = False) -> Dict[str, Any]:
    """A state_dict for torch.nn.LSTM/GRU (``module.load_state_dict``): the
    params with ``prefix`` prepended to every key, as copies; ``tensors=True``
    makes them torch tensors (imports torch)."""
    if prefix and not prefix.endswith("."):
        prefix += "."
    out = {prefix + key: np.array(value, copy=True) for key, value in params.items()}
    if tensors:
        import torch
        out = {key: torch.from_numpy(value) for key, value in out.items()}
    return out


# ---- Keras -------------------------------------------------------------------------

def _keras_arrays(G: int, kernel, recurrent_kernel, bias):
    """Checked float arrays of one Keras layer -> (kernel, recurrent_kernel, bias)."""
    recurrent_kernel = _array("recurrent_kernel", recurrent_kernel)
    if recurrent_kernel.ndim != 2 or recurrent_kernel.shape[1] != G * recurrent_kernel.shape[0]:
        raise ValueError(f"recurrent_kernel: expected shape (H, {G}*H), got {recurrent_kernel.shape}")
    H = recurrent_kernel.shape[0]
    kernel = _array("kernel", kernel)
    if kernel.ndim != 2 or kernel.shape[1] != G * H:
        raise ValueError(f"kernel: expected shape (input_size, {G * H}) = (I, {G}*H), got {kernel.shape}")
    if bias is not None:
        bias = _array("bias", bias)
        # The GRU's reset_after=True keeps its input and recurrent biases apart.
        allowed = [(2, G * H), (G * H,)] if G == 3 else [(G * H,)]
        if bias.shape not in allowed:
            raise ValueError(f"bias: expected shape {' or '.join(map(str, allowed))} for hidden size {H}, "
                             f"got {bias.shape}")
    for name, arr in (("recurrent_kernel", recurrent_kernel), ("bias", bias)):
        if arr is not None and arr.dtype != kernel.dtype:
            raise TypeError(f"{name}: dtype {arr.dtype} differs from kernel's {kernel.dtype}")
    return kernel, recurrent_kernel, bias


def _torch_weights(kernel, recurrent_kernel, perm, sfx):
    # Keras multiplies x @ kernel; torch multiplies W_ih @ x: transpose, reorder rows.
    return {"weight_ih" + sfx: _reorder(np.ascontiguousarray(kernel.T), _undo(perm)),
            "weight_hh" + sfx: _reorder(np.ascontiguousarray(recurrent_kernel.T), _undo(perm))}


def _layer_params(mode: str, params: Mapping[str, Any], sfx: str):
    """Checked (w_ih, w_hh, b_ih, b_hh) of one layer and direction; the biases None when absent."""
    G = layers.MODES[mode]
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


def _keras_kernels(w_ih, w_hh, perm):
    # torch computes W_ih x (gate rows); Keras computes x @ kernel (gate columns).
    return (np.ascontiguousarray(_reorder(w_ih, perm).T), np.ascontiguousarray(_reorder(w_hh, perm).T))


def from_keras_lstm(kernel, recurrent_kernel, bias=None, *, layer: int = 0,
                    reverse: bool = False) -> Dict[str, np.ndarray]:
    """Params of one Keras LSTM layer (``layer.get_weights()``): kernel
    (I, 4H), recurrent_kernel (H, 4H), bias (4H,) or None (use_bias=False),
    gates i, f, c, o. Returns the torch-named entries of ``layer`` (and the
    reverse direction with ``reverse``, e.g. a Bidirectional's backward
    layer), ready to ``params.update(...)``. Keras's single bias becomes
    bias_ih; bias_hh is zero (torch adds the two, so this is the same layer).
    """
    kernel, recurrent_kernel, bias = _keras_arrays(4, kernel, recurrent_kernel, bias)
    sfx = _suffix(layer, reverse)
    params = _torch_weights(kernel, recurrent_kernel, _KERAS_LSTM, sfx)
    if bias is not None:
        params["bias_ih" + sfx] = _reorder(bias, _undo(_KERAS_LSTM))
        params["bias_hh" + sfx] = np.zeros_like(bias)
    return params


def to_keras_lstm(params: Mapping[str, Any], *, layer: int = 0, reverse: bool = False):
    """Keras LSTM weights ``(kernel (I, 4H), recurrent_kernel (H, 4H), bias
    (4H,) or None)`` of one layer and direction of a params dict, for
    ``keras_layer.set_weights([...])``."""
    w_ih, w_hh, b_ih, b_hh = _layer_params("LSTM", params, _suffix(layer, reverse))
    kernel, recurrent = _keras_kernels(w_ih, w_hh, _KERAS_LSTM)
    # Both biases add to the same gate pre-activation: Keras's one bias is their sum.
    bias = None if b_ih is None else _reorder(b_ih + b_hh, _KERAS_LSTM)
    return kernel, recurrent, bias


def from_keras_gru(kernel, recurrent_kernel, bias=None, *, reset_after: Optional[bool] = None, layer: int = 0,
                   reverse: bool = False) -> Tuple[Dict[str, np.ndarray], bool]:
    """Params of one Keras GRU layer: kernel (I, 3H), recurrent_kernel
    (H, 3H), gates z, r, h, and bias (2, 3H) = [input; recurrent] for
    reset_after=True or (3H,) for reset_after=False (None: use_bias=False).
    The bias shape tells the form; ``reset_after`` must agree with it, and
    is required without a bias. Returns ``(entries, linear_before_reset)``
    with the torch-named entries of ``layer`` (``reverse``: its reverse
    direction); ``linear_before_reset == reset_after``.
    """
    kernel, recurrent_kernel, bias = _keras_arrays(3, kernel, recurrent_kernel, bias)
    if bias is not None:
        form = bias.ndim == 2
        if reset_after is not None and bool(reset_after) != form:
            raise ValueError(f"bias: shape {bias.shape} is the reset_after={form} form, "
                             f"but reset_after={reset_after} was given")
        reset_after = form
    elif reset_after is None:
        raise ValueError("reset_after: required when there is no bias (the bias shape tells the form otherwise)")
    sfx = _suffix(layer, reverse)
    params = _torch_weights(kernel, recurrent_kernel, _ZRH_GRU, sfx)
    if bias is not None:
        # reset_after=False has one bias per gate, all outside r: it is bias_ih, with bias_hh = 0.
        b_ih, b_hh = (bias[0], bias[1]) if reset_after else (bias, np.zeros_like(bias))
        params["bias_ih" + sfx] = _reorder(b_ih, _undo(_ZRH_GRU))
        params["bias_hh" + sfx] = _reorder(b_hh, _undo(_ZRH_GRU))
    return params, bool(reset_after)


def to_keras_gru(params: Mapping[str, Any], *, linear_before_reset: bool = True, layer: int = 0,
                 reverse: bool = False):
    """Keras GRU weights ``(kernel (I, 3H), recurrent_kernel (H, 3H), bias)``
    of one layer and direction of a params dict for a GRU of the form
    ``linear_before_reset``, which the Keras layer must match:
    reset_after=True takes bias (2, 3H), reset_after=False bias (3H,)."""
    w_ih, w_hh, b_ih, b_hh = _layer_params("GRU", params, _suffix(layer, reverse))
    kernel, recurrent = _keras_kernels(w_ih, w_hh, _ZRH_GRU)
    if b_ih is None:
        return kernel, recurrent, None
    if linear_before_reset:
        return kernel, recurrent, np.stack([_reorder(b_ih, _ZRH_GRU), _reorder(b_hh, _ZRH_GRU)])
    # Reset before linear adds b_hn after W_hn (r * h), outside r, as it adds b_in:
    # each gate's two biases meet in one sum, so Keras's single bias is exactly it.
    return kernel, recurrent, _reorder(b_ih + b_hh, _ZRH_GRU)


def _build_layer(mode: str, params: Dict[str, np.ndarray], *, batch_first: bool, linear_before_reset: bool):
    """A rnnkit.LSTM/GRU (NumPy module, eval mode) holding ``params``."""
    cfg = check_params(mode, params)
    kw = {} if mode == "LSTM" else {"linear_before_reset": bool(linear_before_reset)}
    cls = LSTM if mode == "LSTM" else GRU
    module = cls(cfg["input_size"], cfg["hidden_size"], cfg["num_layers"], bias=cfg["bias"],
                 batch_first=batch_first, bidirectional=cfg["bidirectional"],
                 dtype=params["weight_ih_l0"].dtype, **kw)
    module.load_state_dict(params)
    return module.eval()


def layer_from_keras(mode: str, weights: Sequence[Sequence[Any]], *, bidirectional: bool = False,
                     batch_first: bool = True, reset_after: Optional[bool] = None):
    """A rnnkit.LSTM/GRU (eval mode) from Keras weights.

    ``weights``: one ``(kernel, recurrent_kernel[, bias])`` per layer and
    direction (each Keras layer's ``get_weights()``), in the order layer 0
    forward, layer 0 backward (bidirectional only), layer 1 forward, ...
    ``batch_first`` defaults to Keras's (B, T, I). GRU: the form comes from
    the bias shapes (see :func:`from_keras_gru`).
    """
    mode = _mode(mode)
    dirs = 2 if bidirectional else 1
    weights = list(weights)
    if not weights or len(weights) % dirs:
        raise ValueError(f"weights: expected num_layers * {dirs} weight tuples, got {len(weights)}")
    params: Dict[str, np.ndarray] = {}
    forms = set()
    for k, w in enumerate(weights):
        if not isinstance(w, (tuple, list)) or len(w) not in (2, 3):
            raise TypeError(f"weights[{k}]: expected (kernel, recurrent_kernel[, bias]), got {type(w).__name__}")
        layer, d = divmod(k, dirs)
        if mode == "LSTM":
            params.update(from_keras_lstm(*w, layer=layer, reverse=bool(d)))
        else:
            entries, lbr = from_keras_gru(*w, reset_after=reset_after, layer=layer, reverse=bool(d))
            params.update(entries)
            forms.add(lbr)
    if len(forms) > 1:
        raise ValueError("weights: the GRU layers mix reset_after=True and reset_after=False biases")
    return _build_layer(mode, params, batch_first=batch_first, linear_before_reset=forms.pop() if forms else True)


# ---- ONNX --------------------------------------------------------------------------

# The node's inputs in ONNX order; missing optional inputs are None.
_ONNX_INPUTS = {"LSTM": ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"),
                "GRU": ("X", "W", "R", "B", "sequence_lens", "initial_h")}
_ONNX_ATTRIBUTES = {"LSTM": {"activation_alpha", "activation_beta", "activations", "clip", "direction",
                             "hidden_size", "input_forget", "layout"},
                    "GRU": {"activation_alpha", "activation_beta", "activations", "clip", "direction",
                            "hidden_size", "layout", "linear_before_reset"}}
_ONNX_ACTIVATIONS = {"LSTM": ("sigmoid", "tanh", "tanh"), "GRU": ("sigmoid", "tanh")}


def _op(op_type: str) -> str:
    if op_type not in _ONNX_INPUTS:
        raise ValueError(f"op_type: expected 'LSTM' or 'GRU', got {op_type!r}")
    return op_type


def _text(value) -> str:
    # onnx.helper.get_attribute_value returns strings as bytes.
    return value.decode() if isinstance(value, bytes) else str(value)


def _onnx_attributes(op: str, attributes: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """Checked attributes -> dict(direction, layout, linear_before_reset, hidden_size or None)."""
    attributes = dict(attributes or {})
    unknown = sorted(set(attributes) - _ONNX_ATTRIBUTES[op])
    if unknown:
        raise ValueError(f"attributes: {unknown} are not attributes of ONNX {op}")
    direction = _text(attributes.get("direction", "forward"))
    if direction not in ("forward", "reverse", "bidirectional"):
        raise ValueError(f"direction: expected 'forward', 'reverse' or 'bidirectional', got {direction!r}")
    dirs = 2 if direction == "bidirectional" else 1
    if "activations" in attributes:
        names = [_text(a).lower() for a in attributes["activations"]]
        if names != list(_ONNX_ACTIVATIONS[op]) * dirs:
            raise ValueError(f"activations: only ONNX's defaults {list(_ONNX_ACTIVATIONS[op]) * dirs} are "
                             f"supported, got {names}")
    # activation_alpha/beta are ignored: Sigmoid and Tanh, the only activations allowed, take none.
    if "clip" in attributes:
        raise ValueError(f"clip: cell clipping (clip={attributes['clip']}) is not supported")
    if int(attributes.get("input_forget", 0)) != 0:
        raise ValueError("input_forget: coupled input and forget gates (input_forget=1) are not supported")
    layout = int(attributes.get("layout", 0))
    if layout not in (0, 1):
        raise ValueError(f"layout: expected 0 or 1, got {layout}")
    lbr = int(attributes.get("linear_before_reset", 0)) if op == "GRU" else 1
    if lbr not in (0, 1):
        raise ValueError(f"linear_before_reset: expected 0 or 1, got {lbr}")
    hidden = attributes.get("hidden_size")
    return dict(direction=direction, layout=layout, linear_before_reset=bool(lbr),
                hidden_size=None if hidden is None else int(hidden))


def _from_onnx(op: str, W, R, B, P, attributes):
    """Checked ONNX weights and attributes -> (op, config, params); see from_onnx_lstm."""
    G = layers.MODES[op]
    attrs = _onnx_attributes(op, attributes)
    dirs = 2 if attrs["direction"] == "bidirectional" else 1
    for name, value in (("W", W), ("R", R)):
        if value is None:
            raise ValueError(f"{name}: a required input of ONNX {op} is missing")
    W, R = _array("W", W), _array("R", R)
    for name, arr, last in (("W", W, "input_size"), ("R", R, "hidden_size")):
        if arr.ndim != 3:
            raise ValueError(f"{name}: expected a 3-D array [num_directions, {G}*hidden_size, {last}], "
                             f"got shape {arr.shape}")
    H = R.shape[-1]
    _expect_shape("R", R, (dirs, G * H, H), f"[num_directions, {G}*hidden_size, hidden_size] "
                  f"for direction={attrs['direction']!r}")
    if attrs["hidden_size"] is not None and attrs["hidden_size"] != H:
        raise ValueError(f"hidden_size: the attribute says {attrs['hidden_size']}, but R has hidden size {H}")
    I = W.shape[-1]
    _expect_shape("W", W, (dirs, G * H, I), f"[num_directions, {G}*hidden_size, input_size]")
    extra = {"B": (B, (dirs, 2 * G * H), f"[num_directions, {2 * G}*hidden_size]")}
    if op == "LSTM":
        extra["P"] = (P, (dirs, 3 * H), "[num_directions, 3*hidden_size]")
    arrays = {}
    for name, (value, shape, meaning) in extra.items():
        arrays[name] = None if value is None else _array(name, value)
        if arrays[name] is not None:
            _expect_shape(name, arrays[name], shape, meaning)
    for name, arr in (("R", R), *arrays.items()):
        if arr is not None and arr.dtype != W.dtype:
            raise TypeError(f"{name}: dtype {arr.dtype} differs from W's {W.dtype}")
    if arrays.get("P") is not None and np.any(arrays["P"] != 0):
        raise ValueError("P: peephole weights are not supported (only an absent or all-zero P)")

    perm = _undo(_ONNX_LSTM if op == "LSTM" else _ZRH_GRU)
    params: Dict[str, np.ndarray] = {}
    for d in range(dirs):
        sfx = _suffix(0, reverse=d == 1)
        params["weight_ih" + sfx] = _reorder(W[d], perm)
        params["weight_hh" + sfx] = _reorder(R[d], perm)
        if arrays["B"] is not None:
            # B[d] = [Wb, Rb]: input-side then recurrent-side biases.
            params["bias_ih" + sfx] = _reorder(arrays["B"][d, :G * H], perm)
            params["bias_hh" + sfx] = _reorder(arrays["B"][d, G * H:], perm)
    config = dict(input_size=I, hidden_size=H, direction=attrs["direction"], bidirectional=dirs == 2,
                  linear_before_reset=attrs["linear_before_reset"], layout=attrs["layout"],
                  bias=arrays["B"] is not None)
    return op, config, params


def from_onnx_lstm(W, R, B=None, P=None, attributes: Optional[Mapping[str, Any]] = None):
    """An ONNX LSTM's weights -> ``("LSTM", config, params)``.

    W [D, 4H, I], R [D, 4H, H] (gates i, o, f, c), B [D, 8H] = [Wb, Rb] or
    None (zeros), P [D, 3H] peepholes: only None or all zeros (else
    ValueError). ``attributes``: the node's (direction, hidden_size, layout;
    activations only the defaults; clip and input_forget=1 raise).
    config: dict(input_size, hidden_size, direction, bidirectional,
    linear_before_reset, layout, bias). params: torch names of layer 0
    (``_reverse``: the second direction of a bidirectional node; a
    direction='reverse' node's single direction is stored as layer 0).
    """
    return _from_onnx("LSTM", W, R, B, P, attributes)


def from_onnx_gru(W, R, B=None, attributes: Optional[Mapping[str, Any]] = None):
    """An ONNX GRU's weights -> ``("GRU", config, params)``: W [D, 3H, I],
    R [D, 3H, H] (gates z, r, h), B [D, 6H] = [Wb, Rb] or None; attribute
    linear_before_reset 0 (ONNX's default) or 1 goes to
    config['linear_before_reset']. See :func:`from_onnx_lstm`."""
    return _from_onnx("GRU", W, R, B, None, attributes)


def _to_onnx(op: str, params, direction, layer, layout, lbr):
    if direction is None:
        direction = "bidirectional" if f"weight_ih_l{layer}_reverse" in params else "forward"
    if direction not in ("forward", "reverse", "bidirectional"):
        raise ValueError(f"direction: expected 'forward', 'reverse' or 'bidirectional', got {direction!r}")
    if layout not in (0, 1):
        raise ValueError(f"layout: expected 0 or 1, got {layout!r}")
    sfxs = [_suffix(layer, False)] + ([_suffix(layer, True)] if direction == "bidirectional" else [])
    per = [_layer_params(op, params, s) for s in sfxs]
    if len(per) == 2:
        for k, what in enumerate(("weight_ih", "weight_hh", "bias_ih", "bias_hh")):
            a, b = per[0][k], per[1][k]
            if (a is None) != (b is None) or (a is not None and (a.shape != b.shape or a.dtype != b.dtype)):
                raise ValueError(f"params: {what}{sfxs[1]} does not match {what}{sfxs[0]} (shape, dtype, presence)")
    perm = _ONNX_LSTM if op == "LSTM" else _ZRH_GRU
    inputs = {"W": np.stack([_reorder(p[0], perm) for p in per]),
              "R": np.stack([_reorder(p[1], perm) for p in per])}
    if per[0][2] is not None:
        inputs["B"] = np.stack([np.concatenate([_reorder(p[2], perm), _reorder(p[3], perm)]) for p in per])
    attributes: Dict[str, Any] = {"hidden_size": int(per[0][1].shape[1]), "direction": direction}
    if op == "GRU":
        attributes["linear_before_reset"] = int(bool(lbr))
    if layout:
        attributes["layout"] = 1  # only written when set: opsets before 14 lack it
    return inputs, attributes


def to_onnx_lstm(params: Mapping[str, Any], *, direction: Optional[str] = None, layer: int = 0,
                 layout: int = 0) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """ONNX LSTM initializers and attributes of one layer of a params dict:
    ``({"W": [D, 4H, I], "R": [D, 4H, H], "B": [D, 8H]}, {"hidden_size",
    "direction"[, "layout"]})``, gates i, o, f, c; no "B" without biases.
    ``direction`` defaults to 'bidirectional' when the layer has ``_reverse``
    entries, else 'forward'; 'forward' and 'reverse' read the layer's
    forward-named entries (the inverse of :func:`from_onnx_lstm`)."""
    return _to_onnx("LSTM", params, direction, layer, layout, True)


def to_onnx_gru(params: Mapping[str, Any], *, linear_before_reset: bool = True, direction: Optional[str] = None,
                layer: int = 0, layout: int = 0) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """ONNX GRU initializers (W [D, 3H, I], R [D, 3H, H], gates z, r, h;
    B [D, 6H]) and attributes (hidden_size, direction, linear_before_reset
    of the GRU's form, default 1 = torch's[, layout]). See :func:`to_onnx_lstm`."""
    return _to_onnx("GRU", params, direction, layer, layout, linear_before_reset)


def _onnx_state(name: str, value, dirs: int, batch: int, hidden: int, layout: int, dtype):
    """initial_h / initial_c as (D, B, H), or None."""
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype} (W's), got {arr.dtype}")
    if layout:
        _expect_shape(name, arr, (batch, dirs, hidden), "[batch_size, num_directions, hidden_size] (layout=1)")
        return np.ascontiguousarray(arr.transpose(1, 0, 2))
    _expect_shape(name, arr, (dirs, batch, hidden), "[num_directions, batch_size, hidden_size]")
    return np.ascontiguousarray(arr)


def _sequence_lens(value, batch: int, steps: int) -> np.ndarray:
    arr = np.asarray(value)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"sequence_lens: expected an integer array, got dtype {arr.dtype}")
    _expect_shape("sequence_lens", arr, (batch,), "[batch_size]")
    if arr.size and (arr.min() < 1 or arr.max() > steps):
        raise ValueError(f"sequence_lens: every length must be in [1, {steps}] (seq_length), "
                         f"got min {arr.min()}, max {arr.max()}")
    return arr.astype(np.int64)


def _flip_within(a: np.ndarray, lengths: Optional[np.ndarray]) -> np.ndarray:
    """Each sequence of a (T, B, ...) array reversed within its own length;
    steps past the end stay put. Its own inverse."""
    T, batch = a.shape[:2]
    t = np.arange(T)[:, None]
    lens = np.full(batch, T) if lengths is None else lengths
    src = np.where(t < lens, lens - 1 - t, t)
    return a[src, np.arange(batch)[None, :]]


def run_onnx_rnn(op_type: str, attributes: Optional[Mapping[str, Any]], X, W, R, B=None, sequence_lens=None,
                 initial_h=None, initial_c=None, P=None) -> Tuple[np.ndarray, ...]:
    """Run one ONNX LSTM/GRU node on rnnkit's kernels.

    Inputs as ONNX defines them: X [T, B, I] ([B, T, I] with layout=1),
    W, R, B (see :func:`from_onnx_lstm` / :func:`from_onnx_gru`),
    sequence_lens [B] (integers in [1, T], any order), initial_h / initial_c
    [D, B, H] ([B, D, H] with layout=1); None for a missing optional input.
    Returns ``(Y, Y_h)`` for the GRU, ``(Y, Y_h, Y_c)`` for the LSTM: Y
    [T, D, B, H] ([B, T, D, H] with layout=1; zero past each sequence's
    end), Y_h / Y_c [D, B, H] ([B, D, H]) at each sequence's own last step.
    """
    op = _op(op_type)
    mode, cfg, params = _from_onnx(op, W, R, B, P, attributes)
    dtype = params["weight_ih_l0"].dtype
    if X is None:
        raise ValueError(f"X: a required input of ONNX {op} is missing")
    X = np.asarray(X)
    if X.dtype != dtype:
        raise TypeError(f"X: expected dtype {dtype} (W's), got {X.dtype}")
    layout = cfg["layout"]
    if X.ndim != 3 or X.shape[2] != cfg["input_size"]:
        order = "[batch_size, seq_length" if layout else "[seq_length, batch_size"
        raise ValueError(f"X: expected shape {order}, {cfg['input_size']}] (input_size from W), got {X.shape}")
    x = np.ascontiguousarray(X.transpose(1, 0, 2)) if layout else X
    T, batch = x.shape[:2]
    dirs, H = (2 if cfg["bidirectional"] else 1), cfg["hidden_size"]
    h0 = _onnx_state("initial_h", initial_h, dirs, batch, H, layout, dtype)
    if op == "GRU" and initial_c is not None:
        raise ValueError("initial_c: the GRU has no cell state")
    c0 = _onnx_state("initial_c", initial_c, dirs, batch, H, layout, dtype)
    lengths = None if sequence_lens is None else _sequence_lens(sequence_lens, batch, T)

    packed = layers.pack_layer_weights(mode, params, num_layers=1, bidirectional=cfg["bidirectional"],
                                       bias=cfg["bias"], linear_before_reset=cfg["linear_before_reset"])
    # A reverse-only node has no torch layer: run forward over each sequence reversed within its length.
    reverse_only = cfg["direction"] == "reverse"
    if reverse_only:
        x = np.ascontiguousarray(_flip_within(x, lengths))
    y, h_n, c_n, _ = layers.rnn_forward(mode, x, packed, h0, c0, num_layers=1,
                                        bidirectional=cfg["bidirectional"], lengths=lengths)
    if reverse_only:
        y = _flip_within(y, lengths)
    # y (T, B, D*H) holds the directions side by side; ONNX gives them their own axis.
    Y = y.reshape(T, batch, dirs, H).transpose((1, 0, 2, 3) if layout else (0, 2, 1, 3))
    states = [h_n] + ([c_n] if op == "LSTM" else [])
    if layout:
        states = [s.transpose(1, 0, 2) for s in states]
    return tuple(np.ascontiguousarray(a) for a in [Y] + states)


def run_onnx_node(node, inputs) -> List[np.ndarray]:
    """Run an onnx.NodeProto (LSTM or GRU) on rnnkit's kernels.

    ``inputs``: a mapping from the node's input names to arrays, or a
    sequence of arrays for the node's present (non-empty) inputs in order
    (the ONNX backend-test convention). Returns the outputs the node names
    (non-empty entries of ``node.output``), in order.
    """
    from onnx import helper

    if node.domain not in ("", "ai.onnx") or node.op_type not in _ONNX_INPUTS:
        raise ValueError(f"node: expected an ONNX LSTM or GRU node, got {node.domain or 'ai.onnx'}.{node.op_type}")
    op = node.op_type
    names = list(node.input)
    if len(names) > len(_ONNX_INPUTS[op]):
        raise ValueError(f"node: ONNX {op} has at most {len(_ONNX_INPUTS[op])} inputs, the node has {len(names)}")
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if isinstance(inputs, Mapping):
        missing = [n for n in names if n and n not in inputs]
        if missing:
            raise ValueError(f"inputs: no array for the node's inputs {missing}")
        values = [inputs[n] if n else None for n in names]
    else:
        given = list(inputs)
        present = [i for i, n in enumerate(names) if n]
        if len(given) != len(present):
            raise ValueError(f"inputs: the node has {len(present)} present inputs {[names[i] for i in present]}, "
                             f"got {len(given)} arrays")
        values = [None] * len(names)
        for i, value in zip(present, given):
            values[i] = value
    outputs = run_onnx_rnn(op, attributes, **dict(zip(_ONNX_INPUTS[op], values)))
    return [out for out, name in zip(outputs, node.output) if name]


def layer_from_onnx(op_type: str, attributes: Optional[Mapping[str, Any]], W, R, B=None, P=None):
    """A rnnkit.LSTM/GRU (eval mode) holding an ONNX node's weights; layout=1
    gives batch_first=True. A direction='reverse' node has no such layer
    (ValueError): run it with :func:`run_onnx_rnn`."""
    op = _op(op_type)
    mode, cfg, params = _from_onnx(op, W, R, B, P, attributes)
    if cfg["direction"] == "reverse":
        raise ValueError("direction: a reverse-only node has no rnnkit.LSTM/GRU (torch) equivalent; "
                         "run it with run_onnx_rnn")
    return _build_layer(mode, params, batch_first=bool(cfg["layout"]),
                        linear_before_reset=cfg["linear_before_reset"])
