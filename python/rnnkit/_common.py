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
    torch stays optional: detached and moved to the CPU first; a bfloat16
    tensor, which NumPy cannot hold, becomes float32, exactly)."""
    if hasattr(value, "detach") and hasattr(value, "cpu") and hasattr(value, "numpy"):
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    return np.asarray(value)


# ---- reduced precision ------------------------------------------------------------

# What the products of packed weights take (PackedWeights.precision).
PRECISIONS = ("float32", "float64", "bfloat16", "int8")


def precision_name(value, name: str = "precision", unknown=ValueError) -> str:
    """'float32', 'float64', 'bfloat16' or 'int8' from that string, a NumPy
    dtype (ml_dtypes.bfloat16 included, when installed) or a torch dtype
    (torch.qint8 is 'int8'). Anything else raises, naming ``name``: a
    TypeError for what is no str or dtype, ``unknown`` for another one
    (a ``dtype`` argument passes TypeError there, as NumPy does for a
    dtype it does not know)."""
    if isinstance(value, str):
        label = value
    elif type(value).__name__ == "dtype" and type(value).__module__ == "torch":
        # Duck-typed: torch stays optional.
        label = {"qint8": "int8"}.get(str(value)[len("torch."):], str(value)[len("torch."):])
    else:
        try:
            label = np.dtype(value).name if value is not None else None
        except (TypeError, ValueError):
            label = None
        if label is None:
            raise TypeError(f"{name}: expected one of {', '.join(map(repr, PRECISIONS))} (a str or a dtype), "
                            f"got {type(value).__name__} {value!r}")
    if label not in PRECISIONS:
        raise unknown(f"{name}: expected one of {', '.join(map(repr, PRECISIONS))}, got {value!r}")
    return label


def is_bfloat16(value) -> bool:
    """Whether ``value`` is a NumPy array of a bfloat16 dtype (ml_dtypes',
    or any other registered under that name): checked by name, so nothing
    is imported and ml_dtypes stays optional."""
    return isinstance(value, np.ndarray) and value.dtype.name == "bfloat16"


def from_bfloat16(value):
    """A bfloat16 array as float32 (exact: every bfloat16 is a float32);
    anything else as it is."""
    return value.astype(np.float32) if is_bfloat16(value) else value


def like_input(arr, bf16_dtype):
    """A float32 result in the dtype of the input it came from: rounded to
    ``bf16_dtype`` (the input's own bfloat16 dtype) when there is one."""
    return arr if arr is None or bf16_dtype is None else arr.astype(bf16_dtype)


def bfloat16_dtype(value):
    """The bfloat16 dtype of ``value`` (to give results back in), or None."""
    return value.dtype if is_bfloat16(value) else None


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
