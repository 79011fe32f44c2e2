"""PyTorch state_dicts <-> params dicts (torch is imported only for
``to_state_dict(tensors=True)``)."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import numpy as np

from .._common import as_bool
from ._params import _array, check_params

__all__ = ["from_state_dict", "to_state_dict"]


def _prefix(prefix) -> str:
    """A module path as a key prefix ('encoder.rnn' -> 'encoder.rnn.')."""
    if not isinstance(prefix, str):
        raise TypeError(f"prefix: expected a str, got {type(prefix).__name__}")
    return prefix + "." if prefix and not prefix.endswith(".") else prefix


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
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict: expected a mapping of names to tensors or arrays, got {type(state_dict).__name__}")
    prefix = _prefix(prefix)
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
    if not isinstance(params, Mapping):
        raise TypeError(f"params: expected a mapping of parameter names to arrays, got {type(params).__name__}")
    prefix = _prefix(prefix)
    tensors = as_bool(tensors, "tensors")
    out = {prefix + key: np.array(value, copy=True) for key, value in params.items()}
    if tensors:
        import torch
        out = {key: torch.from_numpy(value) for key, value in out.items()}
    return out
