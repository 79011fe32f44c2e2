"""ONNX LSTM/GRU nodes <-> params dicts, and running a node on rnnkit's
kernels: W [D, G*H, I], R [D, G*H, H], B [D, 2*G*H] = [Wb, Rb], gates LSTM
i, o, f, c and GRU z, r, h. onnx itself is imported only by run_onnx_node."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from .. import layers
from .._common import GATES, as_bool, as_int
from ._params import _ONNX_LSTM, _ZRH_GRU, _array, _build_layer, _expect_shape, _layer_params, _reorder, _suffix, _undo

__all__ = ["from_onnx_lstm", "from_onnx_gru", "to_onnx_lstm", "to_onnx_gru", "run_onnx_rnn", "run_onnx_node",
           "layer_from_onnx"]


# The node's inputs in ONNX order; missing optional inputs are None.
_ONNX_INPUTS = {"LSTM": ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"),
                "GRU": ("X", "W", "R", "B", "sequence_lens", "initial_h")}


_ONNX_ATTRIBUTES = {"LSTM": {"activation_alpha", "activation_beta", "activations", "clip", "direction",
                             "hidden_size", "input_forget", "layout"},
                    "GRU": {"activation_alpha", "activation_beta", "activations", "clip", "direction",
                            "hidden_size", "layout", "linear_before_reset"}}


_ONNX_ACTIVATIONS = {"LSTM": ("sigmoid", "tanh", "tanh"), "GRU": ("sigmoid", "tanh")}


def _op(op_type: str) -> str:
    if not isinstance(op_type, str) or op_type not in _ONNX_INPUTS:
        raise ValueError(f"op_type: expected 'LSTM' or 'GRU', got {op_type!r}")
    return op_type


def _text(value) -> str:
    # onnx.helper.get_attribute_value returns strings as bytes.
    return value.decode() if isinstance(value, bytes) else str(value)


def _onnx_attributes(op: str, attributes: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """Checked attributes -> dict(direction, layout, linear_before_reset, hidden_size or None)."""
    if attributes is not None and not isinstance(attributes, Mapping):
        raise TypeError(f"attributes: expected a mapping of ONNX attribute names to values, "
                        f"got {type(attributes).__name__}")
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
    if _int_attribute(attributes, "input_forget", 0) != 0:
        raise ValueError("input_forget: coupled input and forget gates (input_forget=1) are not supported")
    layout = _int_attribute(attributes, "layout", 0)
    if layout not in (0, 1):
        raise ValueError(f"layout: expected 0 or 1, got {layout}")
    lbr = _int_attribute(attributes, "linear_before_reset", 0) if op == "GRU" else 1
    if lbr not in (0, 1):
        raise ValueError(f"linear_before_reset: expected 0 or 1, got {lbr}")
    hidden = _int_attribute(attributes, "hidden_size", None)
    if hidden is not None and hidden < 1:
        raise ValueError(f"hidden_size: expected an integer >= 1, got {hidden}")
    return dict(direction=direction, layout=layout, linear_before_reset=bool(lbr), hidden_size=hidden)


def _int_attribute(attributes: Mapping[str, Any], name: str, default):
    """An integer attribute (onnx.helper gives Python ints; NumPy integers count too)."""
    value = attributes.get(name, default)
    if value is None:
        return None
    return as_int(value, name)


def _from_onnx(op: str, W, R, B, P, attributes):
    """Checked ONNX weights and attributes -> (op, config, params); see from_onnx_lstm."""
    G = GATES[op.lower()]
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
    layer = as_int(layer, "layer", 0)
    lbr = as_bool(lbr, "linear_before_reset", zero_one=True)
    if direction is None:
        direction = "bidirectional" if f"weight_ih_l{layer}_reverse" in params else "forward"
    if not isinstance(direction, str) or direction not in ("forward", "reverse", "bidirectional"):
        raise ValueError(f"direction: expected 'forward', 'reverse' or 'bidirectional', got {direction!r}")
    if as_int(layout, "layout") not in (0, 1):
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
    if arr.dtype.kind not in "iu":
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
