"""bfloat16 and int8 packs as objects: what a user does with PackedWeights
(unpack, matches, update, copies, pickles, repr) holds for the
low-precision packs too, on every ISA. The packs' accuracy is tested in
test_precision_bounds.py, their kernels in tests/kernels.
"""

import copy
import pickle

import numpy as np
import pytest

from helpers import rnnkit

_core = rnnkit._core

CELLS = [("lstm", True), ("gru", True), ("gru", False)]
PRECISIONS = ["bfloat16", "int8"]


def weights(cell, I, H, seed=0):
    G = 4 if cell == "lstm" else 3
    rng = np.random.default_rng(seed)
    s = 1 / np.sqrt(H)
    return [rng.uniform(-s, s, shape).astype(np.float32) for shape in [(G * H, I), (G * H, H), (G * H,), (G * H,)]]


def run(cell, packed, x):
    out = _core.lstm_forward(x, packed) if cell == "lstm" else _core.gru_forward(x, packed)
    return out[0]


def x_for(I, T=5, B=3, seed=1):
    return np.random.default_rng(seed).standard_normal((T, B, I)).astype(np.float32)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("cell,lbr", CELLS)
def test_unpacked_weights_pack_back_to_the_same_pack(isa, cell, lbr, precision):
    I, H = 13, 37
    w = weights(cell, I, H)
    p = _core.pack(cell, *w, linear_before_reset=lbr, precision=precision)
    assert p.precision == precision
    assert p.matches(*w)
    w_ih, w_hh, b_ih, b_hh = p.unpack()
    # The values the products use: bf16 values, or q * scale.
    assert np.max(np.abs(w_ih - w[0])) <= (2.0 ** -8 if precision == "bfloat16" else 1 / 254 + 1e-6) * np.abs(w[0]).max()
    np.testing.assert_array_equal(b_ih, w[2])
    again = _core.pack(cell, w_ih, w_hh, b_ih, b_hh, linear_before_reset=lbr, precision=precision)
    assert again.matches(w_ih, w_hh, b_ih, b_hh)
    assert p.matches(w_ih, w_hh, b_ih, b_hh)
    x = x_for(I)
    np.testing.assert_array_equal(run(cell, again, x), run(cell, p, x))


@pytest.mark.parametrize("precision", PRECISIONS)
def test_matches_tells_a_change_that_repacking_would_see(isa, precision):
    w = weights("lstm", 8, 16)
    p = _core.pack("lstm", *w, precision=precision)
    changed = [a.copy() for a in w]
    changed[1][5, 3] += 0.05
    assert not p.matches(*changed)
    changed = [a.copy() for a in w]
    changed[3][7] = np.nextafter(changed[3][7], np.float32(1))   # biases stay float32: any bit counts
    assert not p.matches(*changed)
    assert not p.matches(w[0].astype(np.float64), *w[1:])


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("cell,lbr", CELLS)
def test_copies_and_pickles_compute_the_same(isa, cell, lbr, precision):
    I, H = 9, 33
    w = weights(cell, I, H, seed=3)
    p = _core.pack(cell, *w, linear_before_reset=lbr, precision=precision)
    x = x_for(I)
    want = run(cell, p, x)
    for other in [copy.copy(p), copy.deepcopy(p)] + [pickle.loads(pickle.dumps(p, proto)) for proto in range(6)]:
        assert other.precision == precision
        assert other.linear_before_reset == lbr
        np.testing.assert_array_equal(run(cell, other, x), want)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_update_repacks_at_the_same_precision(isa, precision):
    w, w2 = weights("gru", 6, 20, seed=4), weights("gru", 6, 20, seed=5)
    p = _core.pack("gru", *w, precision=precision)
    p.update(*w2)
    assert p.precision == precision
    assert p.matches(*w2)
    x = x_for(6)
    np.testing.assert_array_equal(run("gru", p, x), run("gru", _core.pack("gru", *w2, precision=precision), x))


@pytest.mark.parametrize("precision", PRECISIONS)
def test_repr_names_the_precision(precision):
    p = _core.pack("lstm", *weights("lstm", 3, 4), precision=precision)
    assert f"precision={precision}" in repr(p)
    assert "precision" not in repr(_core.pack("lstm", *weights("lstm", 3, 4)))


def test_precision_arguments_are_checked():
    w = weights("lstm", 3, 4)
    with pytest.raises(ValueError, match="precision.*float64"):
        _core.pack("lstm", *[a.astype(np.float64) for a in w], precision="bfloat16")
    with pytest.raises(ValueError, match="precision.*'float16'"):
        _core.pack("lstm", *w, precision="float16")
    with pytest.raises(TypeError, match="precision"):
        _core.pack("lstm", *w, precision=8)
    assert _core.pack("lstm", *w, precision="float32").precision == "float32"
    assert _core.pack("lstm", *[a.astype(np.float64) for a in w]).precision == "float64"


def test_int8_packs_do_not_train():
    w = weights("lstm", 3, 4)
    p = _core.pack("lstm", *w, precision="int8")
    with pytest.raises(ValueError, match="training.*int8"):
        _core.lstm_forward(x_for(3), p, training=True)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_nonfinite_weights_and_inputs_give_nan_not_garbage(isa, precision):
    w = weights("lstm", 5, 8)
    x = x_for(5)
    x[2, 1, 3] = np.nan
    y = run("lstm", _core.pack("lstm", *w, precision=precision), x)
    # Batch row 1 is NaN from step 2 on; the other rows never see it.
    assert np.isnan(y[2:, 1]).all()
    assert np.isfinite(y[:, [0, 2]]).all() and np.isfinite(y[:2]).all()
    # An infinite weight: bf16 products saturate the gates as float32's
    # do; int8 cannot scale the weight's row, so its unit comes out NaN.
    w[0][3, 2] = np.inf
    y = run("lstm", _core.pack("lstm", *w, precision=precision), x_for(5))
    if precision == "bfloat16":
        np.testing.assert_array_equal(np.isnan(y), np.isnan(run("lstm", _core.pack("lstm", *w), x_for(5))))
    else:
        assert np.isnan(y[..., 3]).all()
