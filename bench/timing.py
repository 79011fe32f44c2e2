"""Interleaved timing: every repetition runs every candidate once, in rotating order.

Before each timed call: a settle pause, so the previous candidate's spinning
thread pool is quiet, then (unless disabled) an untimed priming call of the
same library on one time step. On 2-vCPU virtual machines a thread pool whose
threads slept through the pause pays a wake-up penalty in its next call (a
2-thread T=100 LSTM measured 1.1 ms back-to-back, 11.7 ms after a 0.5 s pause,
1.3 ms after a pause and a one-step call), which would otherwise swamp small shapes.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np


def settle(seconds: float) -> None:
    # OpenBLAS, torch's OpenMP pool and ORT's pool spin ~0.1 s after a call;
    # the pause keeps that spinning from slowing whichever candidate runs next.
    if seconds > 0:
        time.sleep(seconds)


def _call(fn):
    if fn is not None:
        fn()


def warm_up(fns: dict, pause: float, primes: dict):
    """Run each callable twice: returns (first results, seconds of the second call).

    The first call pays one-time costs (allocation, primitive creation) and its
    result feeds the correctness check; the second estimates the cost of a repetition.
    """
    first, cost = {}, {}
    for name, fn in fns.items():
        first[name] = fn()
        settle(pause)
        _call(primes.get(name))
        t0 = time.perf_counter()
        fn()
        cost[name] = time.perf_counter() - t0
    return first, cost


def choose_repeats(cost: dict, pause: float, budget: float, lo: int, hi: int) -> int:
    """As many repetitions as fit in `budget` seconds (settle pauses included), within [lo, hi]."""
    per_rep = sum(cost.values()) + pause * len(cost)
    return int(min(hi, max(lo, budget // max(per_rep, 1e-9))))


def _rotations(names, repeats):
    # Rotating the order gives every candidate every position equally often.
    for r in range(repeats):
        k = r % len(names)
        yield names[k:] + names[:k]


def interleaved(fns: dict, repeats: int, pause: float, primes: dict) -> dict:
    """Seconds of each timed call, one call per candidate per repetition."""
    names = list(fns)
    times = {n: [] for n in names}
    for order in _rotations(names, repeats):
        for name in order:
            settle(pause)
            _call(primes.get(name))
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def interleaved_batches(fns: dict, batches: int, calls: int, pause: float, primes: dict) -> dict:
    """Seconds per call of each candidate, averaged within a batch of back-to-back calls."""
    names = list(fns)
    times = {n: [] for n in names}
    for order in _rotations(names, batches):
        for name in order:
            fn = fns[name]
            settle(pause)
            _call(primes.get(name))
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            times[name].append((time.perf_counter() - t0) / calls)
    return times


def summarize(samples) -> dict:
    """Median, min and max of a list of seconds."""
    a = np.asarray(samples, dtype=float)
    return {"median_s": float(np.median(a)), "min_s": float(a.min()), "max_s": float(a.max()), "samples": len(a)}


@contextlib.contextmanager
def no_blas_limit(_n):
    yield


def blas_threads():
    """A context factory limiting NumPy's BLAS threads, and a note on how it is done."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return no_blas_limit, "threadpoolctl absent: NumPy's BLAS ran at its default thread count"
    return (lambda n: threadpool_limits(limits=n, user_api="blas")), "threadpoolctl limits NumPy's BLAS threads"


def back_to_back_rate(call, flops: float, repeats: int = 5) -> float:
    """GFLOP/s of `call` (doing `flops`): one warm-up, then the median of `repeats` timed calls.

    Calls run back to back: nothing else runs in between, and a hot thread pool
    gives the peak rate the other figures are compared with (see bounds.engine_rate)."""
    call()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return flops / float(np.median(times)) / 1e9
