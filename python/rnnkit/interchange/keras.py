"""Keras LSTM/GRU weights <-> params dicts: kernel (I, G*H), recurrent_kernel
(H, G*H), gates LSTM i, f, c, o and GRU z, r, h; bias (G*H,) or (2, 3H) for
the GRU's reset_after=True."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from .._common import as_bool
from ._params import (_KERAS_LSTM, _ZRH_GRU, _array, _build_layer, _layer_params, _mode, _reorder, _suffix,
                      _undo)

__all__ = ["from_keras_lstm", "to_keras_lstm", "from_keras_gru", "to_keras_gru", "layer_from_keras"]


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
    if reset_after is not None:
        reset_after = as_bool(reset_after, "reset_after")
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
    linear_before_reset = as_bool(linear_before_reset, "linear_before_reset", zero_one=True)
    w_ih, w_hh, b_ih, b_hh = _layer_params("GRU", params, _suffix(layer, reverse))
    kernel, recurrent = _keras_kernels(w_ih, w_hh, _ZRH_GRU)
    if b_ih is None:
        return kernel, recurrent, None
    if linear_before_reset:
        return kernel, recurrent, np.stack([_reorder(b_ih, _ZRH_GRU), _reorder(b_hh, _ZRH_GRU)])
    # Reset before linear adds b_hn after W_hn (r * h), outside r, as it adds b_in:
    # each gate's two biases meet in one sum, so Keras's single bias is exactly it.
    return kernel, recurrent, _reorder(b_ih + b_hh, _ZRH_GRU)


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
    dirs = 2 if as_bool(bidirectional, "bidirectional") else 1
    batch_first = as_bool(batch_first, "batch_first")
    if reset_after is not None:
        reset_after = as_bool(reset_after, "reset_after")
    if isinstance(weights, (str, bytes)) or not hasattr(weights, "__iter__"):
        raise TypeError(f"weights: expected a sequence of (kernel, recurrent_kernel[, bias]) tuples, "
                        f"got {type(weights).__name__}")
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
