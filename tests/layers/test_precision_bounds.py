"""The accuracy contract of bf16 and int8 inference: element-wise bounds on
y, h_n and c_n against the float64 reference, derived from the shape and
the data (tests/lowp_bounds.py states the derivation), on every ISA.

Checks per case:
- LOCAL (rigorous): every step of every sequence, started from the
  kernel's own previous state (h, c), lands within the one-step bound:
  operand rounding (bf16: 2^-8 per operand) or quantization (int8: half a
  step per element, range/510 for x and h rows, amax/254 for weight rows), float32 accumulation, the gate
  slopes on the error interval, float32 state updates.
- END TO END: y, h_n, c_n within the local bounds propagated through the
  reference's own Jacobians (first order, with SECOND_ORDER headroom).

The bounds are not vacuous: on random data the worst element reaches
10 - 30 % of its local bound and 5 - 20 % of its end-to-end bound, and the
tests require at least 1/50 of it (so a bound 50x too loose fails).

But a worst-case bound must let every rounding go the worst way, so it
cannot see a SYSTEMATIC error of the size of one rounding. Planted bugs,
tried once on a local build (scalar ISA), not in the code:
- bf16 rounding toward zero instead of to nearest: passes the bounds
  (worst err/bound 0.64 instead of 0.25);
- int8 activation scale off by +0.5 % or +1 %: passes the bounds (worst
  0.41, 0.56); +2 % fails one case of fifteen (1.1).
A third check catches these: round-to-nearest errors are unbiased and
uncorrelated with the products, so the least-squares estimate kappa of a
common relative error of all products (lowp_bounds.product_scale_estimate)
is ~0 (a + 1 % scale gives kappa = +1e-2): |kappa| <= 0.63e-3 (bf16) and <= 1.6e-3 (int8) on the clean build,
-5.0e-3 .. -6.0e-3 with truncation and +3.3e-3 .. +5.8e-3 with the +0.5 %
scale; the tests require |kappa| <= KAPPA_MAX.
"""

import functools

import numpy as np
import pytest

from rnnkit import _core, reference
from helpers import linear_before_reset, make_case
import lowp_bounds as lb

# A bound must not be more than this many times the worst observed error
# (on cases with enough elements to see a typical worst one).
MAX_LOOSENESS = 50
MIN_ELEMENTS = 200
# Largest systematic relative error of the products (kappa, see above)
# allowed; clean runs stay under about half of it, the planted bugs above it.
KAPPA_MAX = {"bfloat16": 2e-3, "int8": 3e-3}

# (lengths, I, H), lengths longest first (unequal ones run with batch_sizes):
# T = 1 and B = 1, sizes 1, 7, 15, 16, 17, 31, 33 around the SIMD widths and
# the int8/bf16 k alignment, primes, I != H, ties and a length-1 sequence.
SHAPES = [
    ((1,), 1, 1),
    ((5,), 3, 7),
    ((4, 4, 4), 15, 17),
    ((7, 7, 5, 2, 1), 7, 16),
    ((6, 3, 3, 1), 33, 31),
    ((3,) * 7, 31, 13),
    ((9, 9), 1, 33),
]
# Larger cases for the default ISA only (the bound's Jacobian products cost
# T * (2H)^3 per sequence).
LARGE = [
    ((16,) * 3, 64, 64),
    ((12, 12, 9, 5), 96, 80),
]


def shape_id(v):
    return "-".join(map(str, v)) if isinstance(v, tuple) else str(v)


def base_cell(cell):
    return "lstm" if cell == "lstm" else "gru"


@functools.lru_cache(maxsize=None)
def make(cell, lengths, I, H, seed):
    """Sequences (time order), states and float64 weights of one case."""
    T, B = lengths[0], len(lengths)
    c = make_case(base_cell(cell), T, B, I, H, np.float32, seed)
    seqs = tuple(c["x"][:n, b] for b, n in enumerate(lengths))
    weights32 = tuple(c[k] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    h0 = np.asarray(c["h0"], np.float64)
    c0 = np.asarray(c["c0"], np.float64) if cell == "lstm" else None
    return seqs, h0, c0, weights32


@functools.lru_cache(maxsize=None)
def endtoend(cell, lengths, I, H, seed, reverse, precision):
    """The end-to-end bounds of a case, shared by every ISA."""
    seqs, h0, c0, weights32 = make(cell, lengths, I, H, seed)
    w64 = tuple(np.asarray(w, np.float64) for w in weights32)
    return [lb.endtoend_bound(cell, lb.processing_order(np.asarray(s, np.float64), reverse), h0[b],
                              None if c0 is None else c0[b], w64, precision)
            for b, s in enumerate(seqs)]


def check(cell, lengths, I, H, reverse, precision, seed=0):
    seqs, h0, c0, weights32 = make(cell, lengths, I, H, seed)
    packed = _core.pack(base_cell(cell), *weights32, linear_before_reset(cell), precision=precision)
    assert packed.precision == precision
    w64 = tuple(np.asarray(w, np.float64) for w in weights32)
    local, whole, _ = lb.check_case(cell, precision, seqs, h0, c0, w64, reverse, packed,
                                    endtoend(cell, lengths, I, H, seed, reverse, precision))
    # One product of K = 1 is exact in int8 (the value is its row's amax),
    # so only cases with many elements must come near their bounds.
    if local.count >= MIN_ELEMENTS:
        assert local.worst >= 1 / MAX_LOOSENESS, \
            f"local bound is {1 / local.worst:.0f}x the worst error: too loose to catch a bug"
        assert whole.worst >= 1 / MAX_LOOSENESS, \
            f"end-to-end bound is {1 / whole.worst:.0f}x the worst error: too loose to catch a bug"
        kappa, se = local.kappa
        assert abs(kappa) <= KAPPA_MAX[precision], \
            f"the products carry a systematic relative error {kappa:.2e} (standard error {se:.1e})"
    return local, whole


@pytest.mark.parametrize("precision", lb.PRECISIONS)
@pytest.mark.parametrize("lengths,I,H", SHAPES, ids=shape_id)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "gru_no_lbr"])
def test_within_bound(cell, reverse, lengths, I, H, precision, isa):
    check(cell, lengths, I, H, reverse, precision)


@pytest.mark.parametrize("precision", lb.PRECISIONS)
@pytest.mark.parametrize("lengths,I,H", LARGE, ids=shape_id)
@pytest.mark.parametrize("cell", ["lstm", "gru", "gru_no_lbr"])
def test_within_bound_larger(cell, lengths, I, H, precision):
    check(cell, lengths, I, H, lengths == LARGE[1][0], precision, seed=3)


@pytest.mark.parametrize("cell", ["lstm", "gru", "gru_no_lbr"])
def test_bound_model_is_the_reference(cell):
    # The bound's own step (lowp_bounds.step) must compute exactly the
    # reference's recurrence, or the bound would be about something else.
    lengths, I, H = (6, 6), 5, 9
    seqs, h0, c0, weights32 = make(cell, lengths, I, H, 0)
    w64 = tuple(np.asarray(w, np.float64) for w in weights32)
    x = np.stack(seqs, axis=1).astype(np.float64)
    if cell == "lstm":
        y, h_n, c_n, _ = reference.lstm_forward(x, *w64, h0, c0)
    else:
        y, h_n, _ = reference.gru_forward(x, *w64, h0, linear_before_reset=linear_before_reset(cell))
        c_n = None
    for b in range(len(seqs)):
        h_ref, c_ref, Eh, Ec = lb.endtoend_bound(cell, x[:, b], h0[b], None if c0 is None else c0[b],
                                                 w64, "bfloat16")
        np.testing.assert_allclose(h_ref, y[:, b], rtol=0, atol=1e-13)
        if c_n is not None:
            np.testing.assert_allclose(c_ref[-1], c_n[b], rtol=0, atol=1e-13)
        assert np.all(Eh > 0) and np.all(np.isfinite(Eh))


def _bf16_round(a):
    """float32 -> nearest bf16 (ties to even), as float64."""
    u = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return u.astype(np.uint32).view(np.float32).astype(np.float64)


def _int8_quantize(a):
    """Weight rows of a -> dequantized values, symmetric, scale amax/127 per
    row, as the packing."""
    a = np.asarray(a, np.float32)
    amax = np.abs(a).max(axis=1, keepdims=True)
    amax = np.where(amax == 0, np.float32(1), amax).astype(np.float32)
    q = np.clip(np.rint(a * (np.float32(127) / amax)), -127, 127)
    return q.astype(np.float64) * (amax / np.float32(127)).astype(np.float64)


def _int8_quantize_asym(a):
    """Activation rows of a -> dequantized values (u - zp) * scale, scale =
    range/255 per row and a zero point, as the kernels."""
    a = np.asarray(a, np.float32)
    lo = np.minimum(np.float32(0), a.min(axis=1, keepdims=True))
    hi = np.maximum(np.float32(0), a.max(axis=1, keepdims=True))
    scale = ((hi - lo) / np.float32(255)).astype(np.float32)
    scale = np.where(scale >= np.finfo(np.float32).tiny, scale, np.float32(1)).astype(np.float32)
    zp = np.clip(np.rint(-lo / scale), 0, 255)
    u = np.clip(np.rint(a / scale) + zp, 0, 255)
    return (u - zp).astype(np.float64) * scale.astype(np.float64)


@pytest.mark.parametrize("precision", lb.PRECISIONS)
@pytest.mark.parametrize("K", [1, 7, 64, 1000])
def test_product_bound_holds_for_the_rounding_it_models(precision, K):
    # The product bound alone, on a NumPy model of the operand rounding
    # (exact sums): it holds, and its worst case is reached within 10x for
    # small K (within sqrt(K)-ish for large K, where errors partly cancel).
    rng = np.random.default_rng(K)
    w = rng.uniform(-1, 1, (64, K)).astype(np.float32).astype(np.float64)
    a = (rng.standard_normal((32, K)) * rng.uniform(0.1, 3, (32, 1))).astype(np.float32).astype(np.float64)
    if precision == "bfloat16":
        approx = _bf16_round(a) @ _bf16_round(w).T
    else:
        approx = _int8_quantize_asym(a) @ _int8_quantize(w).T
    err = np.abs(approx - a @ w.T)
    bound = lb.product_bound(w, np.abs(a), precision, lb.row_range(a))
    assert np.all(err <= bound)
    if precision == "int8" and K == 1:
        return      # a lone value is its row's amax: quantized exactly
    assert err.max() / bound.max() >= (0.1 if K <= 7 else 0.2 / np.sqrt(K))
