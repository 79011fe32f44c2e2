"""Packed sequences of different lengths (``batch_sizes``) against the
float64 reference run on each sequence on its own.

With batch_sizes, x, y, dy and dx are packed as in torch's PackedSequence:
the rows of step t start at sum(batch_sizes[:t]) and row b of a step is
sequence b (sorted longest first). Sequence b, of length len_b, is checked
by running reference.lstm_forward / gru_forward on x[:len_b, b] alone (with
h0[b], c0[b], its own dy and dh_n[b], dc_n[b]); the weight and bias
gradients of the batch are the sums of the sequences' gradients.
"""

import functools
import re

import numpy as np
import pytest

import rnnkit
from rnnkit import reference
from helpers import (CELL_FORMS, CELLS, GRU_GRADS, LSTM_GRADS, accumulation_length, assert_all_equal,
                      assert_close, grads_dict, linear_before_reset, make_case, pack)


def batch_sizes_of(lengths):
    """PackedSequence batch_sizes of sequences of these lengths (sorted
    longest first): how many are still running at each step."""
    lengths = list(lengths)
    assert lengths == sorted(lengths, reverse=True)
    return np.array([sum(n > t for n in lengths) for t in range(lengths[0])], dtype=np.int64)


def pack_steps(a, batch_sizes):
    """(T, B, ...) padded time-major array -> packed (N, ...) rows."""
    return np.ascontiguousarray(np.concatenate([a[t, :n] for t, n in enumerate(batch_sizes)]))


def packed_rows(batch_sizes, b):
    """Packed row indices of sequence b, by time."""
    starts = np.concatenate([[0], np.cumsum(batch_sizes)[:-1]])
    return [int(starts[t]) + b for t in range(len(batch_sizes)) if batch_sizes[t] > b]


def make_packed_case(cell, lengths, I, H, dtype, seed=0, none=()):
    """A padded make_case for (T, B) = (longest, count) with x and dy packed;
    the padding of x and dy is never used."""
    bs = batch_sizes_of(lengths)
    case = make_case(cell, len(bs), int(bs[0]), I, H, dtype, seed, none=none)
    case["batch_sizes"] = bs
    case["x_padded"] = case["x"]
    case["x"] = pack_steps(case["x"], bs)
    if case["dy"] is not None:
        case["dy"] = pack_steps(case["dy"], bs)
    return case


def forward(cell, case, w, reverse, training):
    """rnnkit forward on the packed case -> (outputs dict, ctx or None)."""
    if cell == "lstm":
        res = rnnkit.lstm_forward(case["x"], w, case["h0"], case["c0"], reverse=reverse,
                                  training=training, batch_sizes=case["batch_sizes"])
        assert len(res) == (4 if training else 3)
        return dict(zip(("y", "h_n", "c_n"), res[:3])), res[3] if training else None
    res = rnnkit.gru_forward(case["x"], w, case["h0"], reverse=reverse, training=training,
                             batch_sizes=case["batch_sizes"])
    assert len(res) == (3 if training else 2)
    return dict(zip(("y", "h_n"), res[:2])), res[2] if training else None


def backward(cell, case, ctx):
    if cell == "lstm":
        return grads_dict(rnnkit.lstm_backward(ctx, case["dy"], case["dh_n"], case["dc_n"]), LSTM_GRADS)
    return grads_dict(rnnkit.gru_backward(ctx, case["dy"], case["dh_n"]), GRU_GRADS)


def forward_backward(cell, case, reverse, w=None):
    """Training forward + backward, and the inference forward, on one pack."""
    w = pack(cell, case) if w is None else w
    out, ctx = forward(cell, case, w, reverse, training=True)
    grads = backward(cell, case, ctx)
    inference, _ = forward(cell, case, w, reverse, training=False)
    return out, grads, inference


def reference_per_sequence(cell, case, reverse):
    """The float64 reference on each sequence alone, assembled into the
    packed outputs and gradients rnnkit returns."""
    bs = case["batch_sizes"]
    N, B, H = int(bs.sum()), int(bs[0]), case["weight_hh"].shape[1]
    x = case["x_padded"]
    dy_packed = case["dy"]

    def row(name, b):
        return None if case.get(name) is None else case[name][b:b + 1]

    fields = LSTM_GRADS if cell == "lstm" else GRU_GRADS
    out = dict(y=np.zeros((N, H)), h_n=np.zeros((B, H)))
    if cell == "lstm":
        out["c_n"] = np.zeros((B, H))
    grads = {f: None for f in fields}
    grads["dx"] = np.zeros((N, x.shape[2]))
    for b in range(B):
        rows = packed_rows(bs, b)
        xb = x[:len(rows), b:b + 1]
        dyb = None if dy_packed is None else dy_packed[rows][:, None, :]
        weights = (case["weight_ih"], case["weight_hh"], case["bias_ih"], case["bias_hh"])
        if cell == "lstm":
            y, h_n, c_n, cache = reference.lstm_forward(xb, *weights, row("h0", b), row("c0", b),
                                                        reverse=reverse)
            g = reference.lstm_backward(dyb, row("dh_n", b), row("dc_n", b), cache)
            out["c_n"][b] = c_n[0]
        else:
            y, h_n, cache = reference.gru_forward(xb, *weights, row("h0", b), reverse=reverse,
                                                  linear_before_reset=linear_before_reset(cell))
            g = reference.gru_backward(dyb, row("dh_n", b), cache)
        out["y"][rows] = y[:, 0]
        out["h_n"][b] = h_n[0]
        g = dict(zip(fields, g))
        grads["dx"][rows] = g["dx"][:, 0]
        for name in fields:
            if name == "dx":
                continue
            if name in ("dh0", "dc0"):
                if grads[name] is None:
                    grads[name] = np.zeros((B, H))
                grads[name][b] = g[name][0]
            else:
                grads[name] = g[name] if grads[name] is None else grads[name] + g[name]
    return out, grads


@functools.lru_cache(maxsize=None)
def cached_reference(cell, lengths, I, H, dtype_name, seed, none, reverse):
    """reference_per_sequence of make_packed_case(...), shared by every ISA.
    The returned arrays must not be modified."""
    case = make_packed_case(cell, lengths, I, H, np.dtype(dtype_name), seed, none)
    return reference_per_sequence(cell, case, reverse)


def assert_matches_reference(cell, actual, ref, dtype, lengths, I, H, what=""):
    T, B = lengths[0], len(lengths)
    for name in ref:
        acc = accumulation_length(name, cell, T, B, I, H)
        assert_close(actual[name], ref[name], dtype, acc, T, name=f"{what}{name}")


def check(cell, lengths, I, H, dtype, reverse, *, seed=0, none=()):
    lengths, none = tuple(lengths), tuple(sorted(none))
    case = make_packed_case(cell, lengths, I, H, dtype, seed, none)
    out, grads, inference = forward_backward(cell, case, reverse)
    ref_out, ref_grads = cached_reference(cell, lengths, I, H, dtype.name, seed, none, reverse)
    assert out["y"].shape == (case["x"].shape[0], H)
    assert grads["dx"].shape == case["x"].shape
    assert_matches_reference(cell, out, ref_out, dtype, lengths, I, H)
    assert_matches_reference(cell, grads, ref_grads, dtype, lengths, I, H)
    # Inference keeps its states elsewhere (y, ping-pong buffers) but does
    # the same arithmetic on the same rows.
    assert_all_equal(inference, out, what="inference vs training: ")


# ---------------------------------------------------------------- shapes

# (lengths, I, H): one sequence, one step, equal lengths, ties, the lengths of
# the design notes, sizes 1, 7, 15, 17, 33 around the SIMD widths, I != H, and
# H of two unit blocks (more than one thread's share of the gates).
SHAPES = [
    ((7, 7, 5, 2, 1), 7, 15),
    ((1,), 1, 1),
    ((5,), 3, 7),
    ((1, 1, 1), 17, 1),
    ((4, 4, 4), 15, 17),
    ((6, 3, 3, 3, 1, 1), 33, 17),
    ((9, 8, 2), 1, 33),
    ((3, 1), 33, 7),
    ((12, 11, 7, 7, 3, 1), 20, 40),
]


def shape_id(v):
    return "-".join(map(str, v)) if isinstance(v, tuple) else str(v)


@pytest.mark.parametrize("lengths,I,H", SHAPES, ids=shape_id)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell", CELL_FORMS)
def test_packed_matches_reference_per_sequence(cell, reverse, lengths, I, H, isa, dtype):
    check(cell, lengths, I, H, dtype, reverse)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell", CELL_FORMS)
def test_zero_initial_states_and_no_output_gradient(cell, reverse, isa, dtype):
    # None states start from zeros (reverse: in every step a sequence starts
    # at); None dy leaves only dh_n / dc_n.
    check(cell, (6, 4, 4, 1), 5, 9, dtype, reverse, none=("h0", "c0", "dy"))


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell", CELL_FORMS)
def test_projection_in_several_chunks(cell, reverse, isa, dtype):
    # The input projection runs a few steps at a time (about 256 KiB of
    # gates when W_hh is larger than 512 KiB, as here): with B = 64 and
    # H = 256 a chunk holds one step of 64 rows, and several of the shorter
    # later steps, so chunk edges fall between steps of different sizes.
    lengths = (20,) * 8 + (17,) * 8 + (12,) * 16 + (5,) * 16 + (1,) * 16
    check(cell, lengths, 16, 256, dtype, reverse)


# ------------------------------------------------ equal lengths, no lengths


@pytest.mark.parametrize("T,B,I,H", [(1, 1, 1, 1), (5, 3, 7, 15), (4, 6, 17, 33)])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell", CELL_FORMS)
def test_equal_lengths_equal_unpacked_bitwise(cell, reverse, T, B, I, H, isa, dtype):
    # batch_sizes = [B] * T is the (T, B) layout flattened: every result must
    # be bit for bit the one without batch_sizes.
    case = make_packed_case(cell, (T,) * B, I, H, dtype, seed=3)
    w = pack(cell, case)
    out, grads, inference = forward_backward(cell, case, reverse, w)

    plain = dict(case, x=case["x_padded"], dy=case["dy"].reshape(T, B, H))
    if cell == "lstm":
        y, h_n, c_n, ctx = rnnkit.lstm_forward(plain["x"], w, plain["h0"], plain["c0"],
                                               reverse=reverse, training=True)
        ref_out = dict(y=y.reshape(T * B, H), h_n=h_n, c_n=c_n)
        g = rnnkit.lstm_backward(ctx, plain["dy"], plain["dh_n"], plain["dc_n"])
        ref_grads = grads_dict(g, LSTM_GRADS)
    else:
        y, h_n, ctx = rnnkit.gru_forward(plain["x"], w, plain["h0"], reverse=reverse, training=True)
        ref_out = dict(y=y.reshape(T * B, H), h_n=h_n)
        ref_grads = grads_dict(rnnkit.gru_backward(ctx, plain["dy"], plain["dh_n"]), GRU_GRADS)
    ref_grads["dx"] = ref_grads["dx"].reshape(T * B, I)
    assert_all_equal(out, ref_out, what="packed vs unpacked: ")
    assert_all_equal(inference, ref_out, what="packed vs unpacked inference: ")
    assert_all_equal(grads, ref_grads, what="packed vs unpacked: ")


@pytest.mark.parametrize("cell", CELLS)
def test_batch_sizes_as_any_integer_array_like(cell, isa):
    case = make_packed_case(cell, (5, 3, 3, 1), 4, 6, np.dtype(np.float64), seed=4)
    w = pack(cell, case)
    expected, _ = forward(cell, case, w, False, training=False)
    bs = case["batch_sizes"]
    for other in (bs.tolist(), tuple(bs.tolist()), bs.astype(np.int32), bs.astype(np.uint8),
                  bs[::-1][::-1]):
        got, _ = forward(cell, dict(case, batch_sizes=other), w, False, training=False)
        assert_all_equal(got, expected, what=f"batch_sizes as {type(other).__name__}: ")


# ------------------------------------------------------------ thread counts


@pytest.fixture
def restore_threads():
    saved = rnnkit.get_num_threads()
    yield
    rnnkit.set_num_threads(saved)


# H = 96 is three unit blocks and ~5 rows per step give a recurrent step of
# 2 * 5 * G * 96^2 >= 2.7e5 flops, above the drivers' 1.5e5 threshold: the
# time loop runs on 2 threads when 2 are allowed, and so do the projection
# and weight-gradient GEMMs. The second case's projections do not fit one
# chunk (about 2^16 values with a W_hh this size: 4-5 steps of 15 rows), so
# with 2 threads the next chunk's are computed during the steps of the
# current one.
THREAD_CASES = [((20, 18, 15, 15, 9, 4, 2, 1), 40, 96), (tuple(range(60, 0, -4)), 24, 256)]


@pytest.mark.parametrize("lengths,I,H", THREAD_CASES, ids=["one-chunk", "chunks"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell", CELL_FORMS)
def test_results_do_not_depend_on_thread_count(cell, reverse, lengths, I, H, isa, dtype, restore_threads):
    case = make_packed_case(cell, lengths, I, H, dtype, seed=5)
    results = {}
    for n in (1, 2):
        rnnkit.set_num_threads(n)
        results[n] = forward_backward(cell, case, reverse, pack(cell, case))
    for k, what in enumerate(("outputs", "gradients", "inference")):
        assert_all_equal(results[1][k], results[2][k], what=f"1 vs 2 threads, {what}: ")
    ref_out, ref_grads = cached_reference(cell, lengths, I, H, dtype.name, 5, (), reverse)
    assert_matches_reference(cell, results[2][0], ref_out, dtype, lengths, I, H)
    assert_matches_reference(cell, results[2][1], ref_grads, dtype, lengths, I, H)


# ------------------------------------------------------------------ errors


def named(*names):
    """A regex matching any of the names as a whole word."""
    return r"(?<![A-Za-z0-9_])(" + "|".join(re.escape(n) for n in names) + r")(?![A-Za-z0-9_])"


@pytest.fixture(params=CELLS)
def small(request):
    cell = request.param
    case = make_packed_case(cell, (3, 2, 2), 5, 4, np.dtype(np.float32), seed=6)
    return cell, case, pack(cell, case)


@pytest.mark.parametrize("bad,exc", [
    ([[3, 2, 2]], ValueError),          # 2-D
    (3, ValueError),                    # 0-D
    ([], ValueError),                   # no steps
    ([3, 0, 2], ValueError),            # an empty step
    ([3, 2, -1], ValueError),           # negative
    ([2, 3, 2], ValueError),            # increasing
    ([3.0, 2.0, 2.0], TypeError),       # not integers
    ([True, True], TypeError),          # bool is not a count
    (["3", "2", "2"], TypeError),
    (object(), TypeError),
], ids=["2-D", "0-D", "empty", "zero", "negative", "increasing", "float", "bool", "str", "object"])
def test_bad_batch_sizes(small, bad, exc):
    cell, case, w = small
    with pytest.raises(exc, match=named("batch_sizes")):
        forward(cell, dict(case, batch_sizes=bad), w, False, training=False)


def test_batch_sizes_that_do_not_match_x(small):
    cell, case, w = small
    # Same first size (so h0 fits) but 1 row more than x has.
    with pytest.raises(ValueError, match=named("x")):
        forward(cell, dict(case, batch_sizes=[3, 2, 2, 1]), w, False, training=False)


@pytest.mark.parametrize("which", ["padded 3-D", "too few rows", "too many rows", "wrong I"])
def test_bad_packed_x(small, which):
    cell, case, w = small
    x = case["x"]
    bad = {
        "padded 3-D": case["x_padded"],
        "too few rows": x[:-1],
        "too many rows": np.concatenate([x, x[:1]]),
        "wrong I": np.ascontiguousarray(x[:, :-1]),
    }[which]
    with pytest.raises(ValueError, match=named("x")):
        forward(cell, dict(case, x=bad), w, False, training=False)


@pytest.mark.parametrize("state", ["h0", "c0"])
def test_initial_state_of_the_wrong_batch(small, state):
    cell, case, w = small
    if state not in case:
        pytest.skip("GRU has no c0")
    # B is batch_sizes[0] = 3, not the row count or the number of steps.
    bad = np.zeros((2, case[state].shape[1]), case[state].dtype)
    with pytest.raises(ValueError, match=named(state)):
        forward(cell, dict(case, **{state: bad}), w, False, training=False)


@pytest.mark.parametrize("name", ["dy", "dh_n", "dc_n"])
def test_bad_gradients_of_a_packed_forward(small, name):
    cell, case, w = small
    if name not in case:
        pytest.skip("GRU has no dc_n")
    _, ctx = forward(cell, case, w, False, training=True)
    T, B, H = len(case["batch_sizes"]), int(case["batch_sizes"][0]), case["h0"].shape[1]
    # dy padded (T, B, H) instead of packed; states with the wrong batch.
    bad = np.zeros((T, B, H) if name == "dy" else (B + 1, H), np.float32)
    with pytest.raises(ValueError, match=named(name)):
        backward(cell, dict(case, **{name: bad}), ctx)


def test_batch_sizes_is_keyword_only(small):
    cell, case, w = small
    with pytest.raises(TypeError):
        if cell == "lstm":
            rnnkit.lstm_forward(case["x"], w, None, None, False, False, case["batch_sizes"])
        else:
            rnnkit.gru_forward(case["x"], w, None, False, False, case["batch_sizes"])
