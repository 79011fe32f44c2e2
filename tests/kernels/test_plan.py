"""The time loops' plans (rnnkit._core._testing.describe_plan): which schedule runs
a call, how the input projection is cut into chunks and pieces, and how the
backward pass cuts its weight-gradient operands. The plan is made before any
work, so these tests check the decisions themselves, on shapes chosen to sit
on either side of each condition documented in csrc/layer/layer_plan.cpp.
"""

import pytest

from rnnkit import _core

# An ISA whose kernels have projection tiles (the fused-projection schedule
# needs them), if this CPU has one.
TILED = "avx512" if "avx512" in _core.available_isas() else None
KC = 1024   # kGemmKC, the GEMM's k block


def plan(cell="lstm", I=64, H=128, T=40, B=1, **kw):
    return _core._testing.describe_plan(cell, I, H, T, B, **kw)


def schedule(**kw):
    return plan(**kw)["forward"]["schedule"]


@pytest.mark.skipif(TILED is None, reason="no ISA with projection tiles on this CPU")
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_fused_projection_only_for_one_thread_one_row_uniform(cell):
    base = dict(cell=cell, isa=TILED, threads=1)
    p = plan(**base)
    assert p["forward"]["schedule"] == "fused_projection"
    # Chunks of one tile of steps, two projection buffers, feed calls per step.
    assert p["forward"]["chunk_steps"] == 8
    assert p["forward"]["projection_buffers"] == 2
    assert p["forward"]["calls_per_step"] > 0
    assert schedule(**dict(base, threads=2)) != "fused_projection"             # threads for the rest
    assert schedule(**dict(base, B=2)) != "fused_projection"                   # two rows per step
    assert schedule(**dict(base, B=2, batch_sizes=[2] * 39 + [1])) != "fused_projection"  # lengths
    assert schedule(**dict(base, I=KC + 1)) != "fused_projection"              # W_ih beyond one k block
    assert schedule(**dict(base, I=KC)) == "fused_projection"
    assert schedule(**dict(base, T=8)) != "fused_projection"                   # no more steps than a tile
    assert schedule(**dict(base, H=1024, I=1024)) != "fused_projection"        # weights beyond the cache
    assert schedule(**dict(base, dtype="float64")) == "fused_projection"
    assert schedule(**dict(base, reverse=True)) == "fused_projection"


def test_fused_projection_needs_tiles_and_linear_before_reset():
    assert schedule(isa="scalar", threads=1) == "plain"
    if TILED:
        assert schedule(cell="gru", isa=TILED, threads=1, linear_before_reset=False) == "plain"


@pytest.mark.parametrize("cell,lbr", [("lstm", True), ("gru", True), ("gru", False)])
def test_overlapped_only_with_loop_threads_chunks_and_short_steps(cell, lbr):
    base = dict(cell=cell, linear_before_reset=lbr, I=256, H=256, T=30, B=8, threads=2, loop_threads=2)
    p = plan(**base)
    assert p["forward"]["schedule"] == "overlapped"
    assert len(p["forward"]["chunks"]) > 1
    assert p["forward"]["projection_buffers"] == 2
    assert schedule(**dict(base, loop_threads=1)) == "plain"                    # one loop thread
    assert schedule(**dict(base, T=4)) == "plain"                               # one chunk
    assert schedule(**dict(base, H=1024, B=32)) == "plain"                      # long steps
    assert plan(**dict(base, loop_threads=1))["forward"]["projection_buffers"] == 1


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("sizes", [None, sorted([8, 8, 7, 7, 5, 5, 5, 3, 2, 2, 1, 1] * 3, reverse=True)])
def test_chunks_cover_the_steps_in_processing_order(reverse, sizes):
    T = 36 if sizes else 30
    rows = sizes if sizes else [8] * T
    starts = [sum(rows[:t]) for t in range(T)]
    p = plan(I=256, H=256, T=T, B=8, batch_sizes=sizes, reverse=reverse, threads=2, loop_threads=2)["forward"]
    s_next = 0
    for s0, n, fill, r_lo in p["chunks"]:
        assert s0 == s_next and n >= 1
        steps = [T - 1 - s if reverse else s for s in range(s0, s0 + n)]
        assert fill == sum(rows[t] for t in steps)
        assert r_lo == starts[min(steps)]
        assert fill <= p["chunk_rows"] or n == 1
        s_next = s0 + n
    assert s_next == T


def test_overlapped_pieces_cover_each_later_chunk_once():
    G, H = 4, 256
    p = plan(I=256, H=H, T=30, B=8, threads=2, loop_threads=2)["forward"]
    chunks, pieces, first = p["chunks"], p["pieces"], p["first_piece"]
    assert first[0] == first[1] == 0 and first[-1] == len(pieces)
    for c in range(1, len(chunks)):
        cover = {}
        for i0, rows, j0, j1 in pieces[first[c]:first[c + 1]]:
            for r in range(i0, i0 + rows):
                cover.setdefault(r, []).append((j0, j1))
        assert sorted(cover) == list(range(chunks[c][2]))
        for spans in cover.values():
            spans.sort()
            assert spans[0][0] == 0 and spans[-1][1] == G * H
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


def test_state_pingpong_only_for_reverse_inference_with_lengths():
    sizes = [3, 3, 2, 1]
    assert plan(T=4, B=3, batch_sizes=sizes, reverse=True)["forward"]["state_pingpong"]
    assert not plan(T=4, B=3, batch_sizes=sizes, reverse=True, training=True)["forward"]["state_pingpong"]
    assert not plan(T=4, B=3, batch_sizes=sizes)["forward"]["state_pingpong"]
    assert not plan(T=4, B=3, reverse=True)["forward"]["state_pingpong"]


def test_thread_plan_keeps_tiny_steps_on_one_thread():
    p = plan(H=16, B=1, T=10, threads=2)
    assert (p["loop_threads"], p["other_threads"]) == (1, 2)
    # Long steps split their blocks of hidden units over the threads...
    p = plan(H=64, B=64, T=10, threads=2)
    assert (p["loop_threads"], p["other_threads"]) == (2, 2)
    # ...but never over more threads than there are blocks (32 units each).
    p = plan(H=32, B=512, T=10, threads=2)
    assert (p["loop_threads"], p["other_threads"]) == (1, 2)


def test_backward_operand_parts():
    # Narrow operands: all rows at once.
    p = plan(I=16, H=16, T=100, B=32)["backward"]
    assert p["operand_rows_x"] == p["operand_rows_h"] == 3200
    # Wide X with more rows than one part: whole k blocks.
    p = plan(I=600, H=16, T=40, B=32)["backward"]
    assert p["operand_rows_x"] == KC and p["operand_rows_h"] == 1280


def test_backward_sides_and_contiguous_states():
    assert plan(cell="lstm")["backward"]["same_sides"]
    assert not plan(cell="gru")["backward"]["same_sides"]
    assert plan(cell="gru", linear_before_reset=False)["backward"]["same_sides"]
    sizes = [3, 3, 2, 1]
    assert not plan(T=4, B=3, batch_sizes=sizes)["backward"]["h_contiguous"]
    assert plan(T=4, B=3, batch_sizes=sizes, reverse=True)["backward"]["h_contiguous"]
    assert plan(T=4, B=3)["backward"]["h_contiguous"]


@pytest.mark.parametrize("kw,match", [
    (dict(cell="rnn"), "cell"),
    (dict(dtype="float16"), "dtype"),
    (dict(T=0), "steps"),
    (dict(T=3, B=2, batch_sizes=[2, 3, 1]), "batch_sizes"),
    (dict(T=3, B=2, batch_sizes=[2, 1]), "batch_sizes"),
    (dict(threads=2, loop_threads=3), "loop_threads"),
    (dict(isa="sse9"), "isa"),
])
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        plan(**kw)
