"""Private helpers shared by rnnkit's Python modules: the cell vocabulary and
argument checks written once, so every entry point answers a bad argument
with the same short TypeError / ValueError naming it.

Imports nothing from rnnkit: every other module may import it.
"""

from __future__ import annotations

import numbers
from typing import Optional

import numpy as np

# Gate count per cell, spelled as the C++ core and PackedWeights.cell spell it.
GATES = {"lstm": 4, "gru": 3}


def cell_name(value, name: str = "cell") -> str:
    """'lstm' or 'gru' from any casing ('LSTM' is torch.nn's mode string)."""
    if not isinstance(value, str) or value.lower() not in GATES:
        raise ValueError(f"{name}: expected 'LSTM' or 'GRU' (any case), got {value!r}")
    return value.lower()


def gate_count(cell: str) -> int:
    """G: 4 for the LSTM, 3 for the GRU."""
    return GATES[cell_name(cell)]


def as_bool(value, name: str, *, zero_one: bool = False) -> bool:
    """A flag: only True/False (numpy bools too); 2, "yes" or None are refused
    rather than guessed at. ``zero_one`` also takes the integers 0 and 1, for
    flags that ONNX stores as integer attributes (linear_before_reset)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if zero_one and isinstance(value, (numbers.Integral, np.integer)):
        if value in (0, 1):
            return bool(value)
        raise ValueError(f"{name}: expected a bool (or 0 / 1), got {value!r}")
    raise TypeError(f"{name}: expected a bool (True or False), got {type(value).__name__} {value!r}")


def as_int(value, name: str, minimum: Optional[int] = None) -> int:
    """An integer (numpy integers too; bools and floats are refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return value


def as_numpy(value) -> np.ndarray:
    """An array from a NumPy array, an array-like or a torch tensor (duck-typed,
    torch stays optional: detached and moved to the CPU first)."""
    if hasattr(value, "detach") and hasattr(value, "cpu") and hasattr(value, "numpy"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def integer_array(value, name: str) -> np.ndarray:
    """A 1-D integer array (lengths, batch sizes). Integer dtypes only: a float
    array is a TypeError even when its values are whole numbers, so that
    2.0 and 2.5 are not treated differently."""
    try:
        arr = as_numpy(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: expected a 1-D array of integers, got {type(value).__name__}") from exc
    if arr.dtype.kind not in "iu":
        # An empty list becomes float64: let the size check name that.
        if not (arr.size == 0 and arr.dtype.kind == "f"):
            raise TypeError(f"{name}: expected an integer array, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of integers, got shape {arr.shape}")
    return arr.astype(np.int64)


def check_lengths(value, steps: int, batch: int, name: str = "lengths") -> np.ndarray:
    """Sequence lengths: one integer per batch element, each in [1, steps]."""
    arr = integer_array(value, name)
    if arr.shape[0] != batch:
        raise ValueError(f"{name}: expected {batch} lengths (one per batch element), got shape {arr.shape}")
    if arr.size and (arr.min() < 1 or arr.max() > steps):
        raise ValueError(f"{name}: every length must be in [1, {steps}] (the input's time steps), "
                         f"got min {arr.min()}, max {arr.max()}")
    return arr


def check_batch_sizes(value, rows: Optional[int] = None, name: str = "batch_sizes") -> np.ndarray:
    """PackedSequence batch sizes: non-empty, every entry >= 1, non-increasing,
    summing to the packed rows when ``rows`` is given."""
    bs = integer_array(value, name)
    if bs.size == 0:
        raise ValueError(f"{name}: expected at least one time step, got none")
    if bs.min() < 1 or np.any(np.diff(bs) > 0):
        raise ValueError(f"{name}: expected positive, non-increasing counts (a packed sequence)")
    if rows is not None and int(bs.sum()) != rows:
        raise ValueError(f"{name}: they sum to {int(bs.sum())} but x has {rows} rows")
    return bs
