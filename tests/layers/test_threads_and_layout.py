"""Results must not depend on how the work is split or how inputs are laid
out in memory.

The design fixes the reduction order, so forward outputs and every gradient
are bitwise identical for any thread count. Non-contiguous inputs are
accepted and give exactly the contiguous answer.
"""

import os
import pickle
import threading
import time

import numpy as np
import pytest

import rnnkit
from helpers import (CELL_FORMS, CELLS, GRU_CELL_GRADS, LSTM_CELL_GRADS, assert_all_close, assert_all_equal,
                      cached_reference, grads_dict,
                      make_case, pack, rnnkit_forward_backward)


@pytest.fixture
def restore_threads():
    """Put the thread count back however the test ends."""
    saved = rnnkit.get_num_threads()
    yield
    rnnkit.set_num_threads(saved)


# ----------------------------------------------------------- thread counts

# Big enough that the drivers split hidden units (and batch) over threads: a
# batched shape, a B = 1 shape where only hidden units can be split, one
# whose last block of 32 hidden units is partial (145 = 4 * 32 + 17), and
# one whose input projections span several chunks (LSTM: 13 of 3 steps and
# a last one of 1; GRU float32: 18, 18 and 4 steps), where threads compute
# the next chunk's while they wait for each other.
THREAD_SHAPES = [(20, 32, 96, 160, False), (30, 1, 64, 256, True), (7, 6, 33, 145, False),
                 (40, 24, 40, 200, True)]


@pytest.mark.parametrize("T,B,I,H,reverse", THREAD_SHAPES)
@pytest.mark.parametrize("cell", CELL_FORMS)
def test_results_do_not_depend_on_thread_count(cell, T, B, I, H, reverse, isa, dtype, restore_threads):
    case = make_case(cell, T, B, I, H, dtype, seed=10)
    results = {}
    for n in (1, 2):
        rnnkit.set_num_threads(n)
        assert rnnkit.get_num_threads() == n
        # Pack under each count too, in case packing is threaded.
        results[n] = rnnkit_forward_backward(cell, case, reverse, pack(cell, case))
    assert_all_equal(results[1][0], results[2][0], what="1 vs 2 threads: ")
    assert_all_equal(results[1][1], results[2][1], what="1 vs 2 threads: ")


# On one thread a batch of one computes the next chunk's input projection
# inside the recurrent matrix-vector products (AVX-512: tiles of 8 steps,
# each in pieces resumed from one kernel call to the next); a batch of two
# computes it on its own. Every sum is the same chain either way, so a
# sequence alone must give bitwise what it gives beside a copy of itself,
# and match the reference. Shapes: T one past a tile (a last chunk of one
# row), several tiles and a partial last one, I = 1, I off the panel width
# and at the k block (1024), H off the unit block and G * H off the panel.
ALONE_SHAPES = [(9, 7, 33), (100, 1, 64), (37, 20, 100), (17, 1024, 16), (26, 256, 256)]


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("T,I,H", ALONE_SHAPES)
@pytest.mark.parametrize("cell", CELL_FORMS)
def test_a_sequence_alone_matches_it_in_a_batch(cell, T, I, H, reverse, isa, dtype, restore_threads):
    rnnkit.set_num_threads(1)
    case = make_case(cell, T, 1, I, H, dtype, seed=4)
    w = pack(cell, case)
    out, grads = rnnkit_forward_backward(cell, case, reverse, w)
    ref_out, ref_grads = cached_reference(cell, T, 1, I, H, np.dtype(dtype).name, 4, (), reverse)
    assert_all_close(cell, out, ref_out, dtype, T, 1, I, H)
    assert_all_close(cell, grads, ref_grads, dtype, T, 1, I, H)

    # The same sequence twice: batch axis 1 of x and dy, 0 of the states.
    pair = dict(case)
    for name, axis in (("x", 1), ("dy", 1), ("h0", 0), ("c0", 0), ("dh_n", 0), ("dc_n", 0)):
        if case.get(name) is not None:
            pair[name] = np.ascontiguousarray(np.repeat(case[name], 2, axis=axis))
    out2, grads2 = rnnkit_forward_backward(cell, pair, reverse, w)
    first = {"y": lambda a: a[:, :1], "dx": lambda a: a[:, :1]}
    for name in out:
        assert_all_equal({name: out[name]}, {name: first.get(name, lambda a: a[:1])(out2[name])}, what="alone: ")
    # The weight gradients of two sequences are sums of two terms; the rest
    # belong to each sequence.
    for name in ("dx", "dh0", "dc0"):
        if name in grads:
            assert_all_equal({name: grads[name]}, {name: first.get(name, lambda a: a[:1])(grads2[name])},
                             what="alone: ")
    # Inference takes the fused path too.
    if cell == "lstm":
        alone = rnnkit.lstm_forward(case["x"], w, case["h0"], case["c0"], reverse=reverse)
        both = rnnkit.lstm_forward(pair["x"], w, pair["h0"], pair["c0"], reverse=reverse)
    else:
        alone = rnnkit.gru_forward(case["x"], w, case["h0"], reverse=reverse)
        both = rnnkit.gru_forward(pair["x"], w, pair["h0"], reverse=reverse)
    assert_all_equal({"y": alone[0]}, {"y": both[0][:, :1]}, what="inference alone: ")
    assert_all_equal({"y": alone[0]}, {"y": out["y"]}, what="inference vs training: ")


def thread_masks():
    """CPU affinity of every thread of this process, by thread id."""
    masks = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            masks[int(tid)] = os.sched_getaffinity(int(tid))
        except OSError:   # the thread ended meanwhile
            pass
    return masks


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or not os.path.isdir("/proc/self/task")
                    or len(os.sched_getaffinity(0)) < 2, reason="needs Linux and 2 CPUs")
def test_threads_keep_their_affinity(restore_threads):
    # A team thread found on the CPU of a lower-numbered one moves off it by
    # narrowing its affinity mask for a moment (after a pause, a virtual
    # machine often wakes both on one vCPU); the masks must end as they were.
    rnnkit.set_num_threads(2)
    rng = np.random.default_rng(0)
    w = rnnkit.pack_lstm(rng.standard_normal((256, 32), dtype=np.float32),
                         rng.standard_normal((256, 64), dtype=np.float32))
    x = rng.standard_normal((200, 8, 32), dtype=np.float32)
    expected = rnnkit.lstm_forward(x, w)[0]
    before = thread_masks()
    for _ in range(10):
        time.sleep(0.05)
        assert_all_equal({"y": rnnkit.lstm_forward(x, w)[0]}, {"y": expected}, what="after a pause: ")
    after = thread_masks()
    for tid, mask in before.items():
        if tid in after:
            assert after[tid] == mask, f"thread {tid}: affinity {sorted(after[tid])}, was {sorted(mask)}"


def test_core_round_trip_is_measured(restore_threads):
    # The thread plan's measurement (a ping-pong of one cache line between
    # two pool threads, reused for 20 ms): a positive time, finite where two
    # CPUs are available (a thread the OS did not run in time makes one
    # attempt infinite: up to three), 0 without OpenMP.
    rnnkit.set_num_threads(2)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    for _ in range(3):
        time.sleep(0.03)
        rt = rnnkit._core._testing.core_round_trip_ns()
        if rt < float("inf"):
            break
    if not rnnkit._core.HAVE_OPENMP:
        assert rt == 0.0
    else:
        assert rt > 0.0, rt
        if cpus >= 2:
            assert rt < 100_000.0, rt


@pytest.mark.parametrize("n", [0, -1, -8])
def test_set_num_threads_rejects_non_positive(n, restore_threads):
    before = rnnkit.get_num_threads()
    with pytest.raises(ValueError):
        rnnkit.set_num_threads(n)
    assert rnnkit.get_num_threads() == before


def test_get_num_threads_is_positive():
    assert rnnkit.get_num_threads() >= 1


@pytest.mark.parametrize("cell", CELLS)
def test_concurrent_python_threads(cell, isa, dtype):
    # The bindings release the GIL; calls from several Python threads on one
    # shared pack must not interfere (no shared scratch space).
    T, B, I, H = 4, 3, 17, 33
    base = make_case(cell, T, B, I, H, dtype, seed=11)
    w = pack(cell, base)
    cases = []
    for k in range(4):
        c = make_case(cell, T, B, I, H, dtype, seed=100 + k)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            c[name] = base[name]
        cases.append(c)
    expected = [rnnkit_forward_backward(cell, c, k % 2 == 1, w) for k, c in enumerate(cases)]

    got = [None] * len(cases)
    errors = []

    def work(k):
        try:
            for _ in range(5):
                got[k] = rnnkit_forward_backward(cell, cases[k], k % 2 == 1, w)
        except BaseException as e:  # surfaced in the main thread below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for k in range(len(cases)):
        assert_all_equal(expected[k][0], got[k][0], what=f"thread {k}: ")
        assert_all_equal(expected[k][1], got[k][1], what=f"thread {k}: ")


# ------------------------------------------------------------------ layout


def first_axis_stride(a):
    """Every other slice of a bigger array along axis 0 (like x[::2]); the
    slices in between hold NaN, so reading them would show."""
    big = np.full((2 * a.shape[0],) + a.shape[1:], np.nan, dtype=a.dtype)
    big[::2] = a
    return big[::2]


def last_axis_stride(a):
    """Every other element along the last axis: no unit stride anywhere."""
    big = np.full(a.shape[:-1] + (2 * a.shape[-1],), np.nan, dtype=a.dtype)
    big[..., ::2] = a
    return big[..., ::2]


def padded_rows(a):
    """Rows of a wider array (a leading dimension larger than the row)."""
    big = np.full(a.shape[:-1] + (a.shape[-1] + 3,), np.nan, dtype=a.dtype)
    big[..., :a.shape[-1]] = a
    return big[..., :a.shape[-1]]


def negative_strides(a):
    """Same values, walked backwards in memory along every axis."""
    flipped = np.ascontiguousarray(a[(slice(None, None, -1),) * a.ndim])
    return flipped[(slice(None, None, -1),) * a.ndim]


def read_only(a):
    """A contiguous copy that cannot be written (e.g. from np.frombuffer)."""
    b = a.copy()
    b.flags.writeable = False
    return b


def misaligned(a):
    """Contiguous but not aligned to the element size (np.frombuffer at an
    odd byte offset): valid NumPy, undefined behaviour if read in place."""
    raw = np.zeros(a.nbytes + 1, np.uint8)
    b = np.frombuffer(raw.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    b[...] = a
    assert not b.flags.aligned
    return b


def unpickled(a):
    """A pickle round trip (multiprocessing, joblib) gives a dtype that is
    equal to, but not the same object as, np.dtype(np.float32)."""
    b = pickle.loads(pickle.dumps(a))
    assert b.dtype == a.dtype
    return b


LAYOUTS = {
    "first-axis-stride": first_axis_stride,
    "last-axis-stride": last_axis_stride,
    "fortran-order": np.asfortranarray,
    "padded-rows": padded_rows,
    "negative-strides": negative_strides,
    "read-only": read_only,
    "misaligned": misaligned,
    "unpickled": unpickled,
}


def relayout(case, fn):
    out = {}
    for k, v in case.items():
        if v is None:
            out[k] = None
        else:
            out[k] = fn(v)
            assert np.array_equal(out[k], v)
    return out


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("cell", CELLS)
def test_layer_non_contiguous_inputs(cell, layout, isa, dtype):
    # Every array argument (x, weights, biases, h0, c0, dy, dh_n, dc_n) in
    # the given layout must give exactly the contiguous result.
    T, B, I, H = 5, 3, 19, 21
    case = make_case(cell, T, B, I, H, dtype, seed=12)
    expected = rnnkit_forward_backward(cell, case, reverse=False)
    odd = relayout(case, LAYOUTS[layout])
    got = rnnkit_forward_backward(cell, odd, reverse=False)
    assert_all_equal(expected[0], got[0], what=f"{layout}: ")
    assert_all_equal(expected[1], got[1], what=f"{layout}: ")


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("cell", CELLS)
def test_cell_non_contiguous_inputs(cell, layout, isa, dtype):
    B, I, H = 3, 19, 21
    case = make_case(cell, 1, B, I, H, dtype, seed=13)
    case["x"] = np.ascontiguousarray(case["x"][0])

    def run(c):
        w = pack(cell, c)
        if cell == "lstm":
            h1, c1, ctx = rnnkit.lstm_cell(c["x"], w, c["h0"], c["c0"], training=True)
            g = rnnkit.lstm_cell_backward(ctx, c["dh_n"], c["dc_n"])
            return dict(h1=h1, c1=c1), grads_dict(g, LSTM_CELL_GRADS)
        h1, ctx = rnnkit.gru_cell(c["x"], w, c["h0"], training=True)
        g = rnnkit.gru_cell_backward(ctx, c["dh_n"])
        return dict(h1=h1), grads_dict(g, GRU_CELL_GRADS)

    expected = run(case)
    got = run(relayout(case, LAYOUTS[layout]))
    assert_all_equal(expected[0], got[0], what=f"{layout}: ")
    assert_all_equal(expected[1], got[1], what=f"{layout}: ")


@pytest.mark.parametrize("cell", CELLS)
def test_broadcast_initial_state(cell, isa, dtype):
    # A zero-stride h0/c0 (one row broadcast over the batch, read-only) is
    # the same as the materialised array.
    T, B, I, H = 3, 4, 7, 9
    case = make_case(cell, T, B, I, H, dtype, seed=14)
    for name in ("h0", "c0"):
        if case.get(name) is not None:
            case[name] = np.ascontiguousarray(np.broadcast_to(case[name][:1], (B, H)))
    expected = rnnkit_forward_backward(cell, case, reverse=False)
    bcast = dict(case)
    for name in ("h0", "c0"):
        if case.get(name) is not None:
            bcast[name] = np.broadcast_to(case[name][:1], (B, H))
    got = rnnkit_forward_backward(cell, bcast, reverse=False)
    assert_all_equal(expected[0], got[0], what="broadcast state: ")
    assert_all_equal(expected[1], got[1], what="broadcast state: ")


# ----------------------------------------------------------- workspace cache

@pytest.mark.parametrize("cell", CELLS)
def test_reused_workspace_does_not_leak_into_results(cell, isa, dtype):
    """Large workspaces freed by one call are handed to the next one with
    their old contents; results must not depend on them. A run on NaN
    inputs leaves NaN in every kept block; the next run must be clean and
    identical to a run on freshly allocated memory."""
    T, B, I, H = 20, 16, 64, 96   # every workspace is above the cache's 256 KiB floor
    case = make_case(cell, T, B, I, H, dtype, seed=3)
    poisoned = dict(case, x=np.full_like(case["x"], np.nan), h0=np.full_like(case["h0"], np.nan))
    rnnkit.clear_workspace_cache()
    fresh = rnnkit_forward_backward(cell, case, reverse=False)
    rnnkit_forward_backward(cell, poisoned, reverse=False)
    assert rnnkit.workspace_cache_bytes() > 0
    reused = rnnkit_forward_backward(cell, case, reverse=False)
    for got, want in zip(reused, fresh):
        assert_all_equal(got, want, "reused workspace: ")
    assert rnnkit.clear_workspace_cache() > 0
    assert rnnkit.workspace_cache_bytes() == 0


@pytest.mark.parametrize("cell", CELLS)
def test_large_outputs_are_owned_and_recycled(cell, dtype):
    """Outputs above the cache's floor (y, dx, the weight gradients) take
    their memory from the workspace cache and give it back when they die.
    An output still alive is never handed to a later call, and outputs of
    a call on poisoned input leave nothing behind in the next one."""
    T, B, I, H = 30, 24, 128, 112    # y, dx and both weight gradients above 256 KiB
    case = make_case(cell, T, B, I, H, dtype, seed=5)
    poisoned = dict(case, x=np.full_like(case["x"], np.nan))
    rnnkit.clear_workspace_cache()
    first = rnnkit_forward_backward(cell, case, reverse=False)
    kept = {name: arr.copy() for part in first for name, arr in part.items()}
    # A second call while the first outputs live: no memory shared with them.
    second = rnnkit_forward_backward(cell, poisoned, reverse=False)
    for part_a, part_b in zip(first, second):
        for name in part_a:
            assert not np.shares_memory(part_a[name], part_b[name]), name
    for part in first:
        for name, arr in part.items():
            np.testing.assert_array_equal(arr, kept[name], err_msg=f"live output {name}")
            assert arr.flags.c_contiguous and arr.flags.writeable
    # Freed outputs go back to the cache; the next call reuses them cleanly.
    held = rnnkit.workspace_cache_bytes()
    del second
    assert rnnkit.workspace_cache_bytes() > held
    again = rnnkit_forward_backward(cell, case, reverse=False)
    for got, want in zip(again, first):
        assert_all_equal(got, want, "recycled output: ")
    rnnkit.clear_workspace_cache()
