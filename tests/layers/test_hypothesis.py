"""Property test: for random small shapes, options and data, rnnkit's float64
layers (forward and backward) match the reference to the float64 tolerance.

The fixed grids in test_rnn_vs_reference.py cover the sizes around the SIMD
widths systematically; this explores the combinations between them.
"""

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

import rnnkit  # noqa: E402
from helpers import (CELL_FORMS, assert_all_close, make_case, pack,  # noqa: E402
                      reference_forward_backward, rnnkit_forward_backward)

# Optional arguments that may be left out (None = zeros).
OPTIONAL = ("h0", "c0", "bias_ih", "bias_hh", "dy", "dh_n", "dc_n")


@settings(max_examples=40, deadline=None)
@given(
    T=st.integers(1, 6),
    B=st.integers(1, 5),
    I=st.integers(1, 40),
    H=st.integers(1, 40),
    cell=st.sampled_from(CELL_FORMS),
    reverse=st.booleans(),
    isa=st.sampled_from(list(rnnkit.available_isas())),
    none=st.sets(st.sampled_from(OPTIONAL), max_size=3),
    seed=st.integers(0, 2**32 - 1),
)
def test_layer_matches_reference(T, B, I, H, cell, reverse, isa, none, seed):
    dtype = np.dtype(np.float64)
    with rnnkit.use_isa(isa):
        case = make_case(cell, T, B, I, H, dtype, seed, none=tuple(sorted(none)))
        w = pack(cell, case)
        out, grads = rnnkit_forward_backward(cell, case, reverse, w)
    ref_out, ref_grads = reference_forward_backward(cell, case, reverse)
    assert_all_close(cell, out, ref_out, dtype, T, B, I, H)
    assert_all_close(cell, grads, ref_grads, dtype, T, B, I, H)
