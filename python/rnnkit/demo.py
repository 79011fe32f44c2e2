"""A short demonstration: python -m rnnkit.demo

Runs an LSTM and a GRU layer forward and backward on every instruction set
this CPU supports, checks the results against the NumPy float64 reference,
and times a float32 forward pass and a training step beside the same work
done as plain NumPy matrix products (the GEMM-only lower bound).
"""

from __future__ import annotations

import platform
import time

import numpy as np

import rnnkit
from rnnkit import reference


def _max_rel_err(got, ref) -> float:
    return max(float(np.max(np.abs(g - r)) / max(np.max(np.abs(r)), 1e-300)) for g, r in zip(got, ref))


def _params(rng, gates: int, I: int, H: int, dtype):
    k = 1.0 / np.sqrt(H)
    return [rng.uniform(-k, k, shape).astype(dtype) for shape in ((gates * H, I), (gates * H, H), (gates * H,), (gates * H,))]


def check_against_reference(rng) -> None:
    """Forward and every gradient of both cells vs the float64 reference."""
    T, B, I, H = 7, 3, 17, 33
    x = rng.standard_normal((T, B, I))
    dy = rng.standard_normal((T, B, H))
    for isa in rnnkit.available_isas():
        with rnnkit.use_isa(isa):
            p = _params(rng, 4, I, H, np.float64)
            y, h, c, ctx = rnnkit.lstm_forward(x, rnnkit.pack_lstm(*p), training=True)
            ry, rh, rc, rcache = reference.lstm_forward(x, *p)
            lstm_err = max(_max_rel_err((y, h, c), (ry, rh, rc)),
                           _max_rel_err(rnnkit.lstm_backward(ctx, dy), reference.lstm_backward(dy, None, None, rcache)))
            p = _params(rng, 3, I, H, np.float64)
            y, h, ctx = rnnkit.gru_forward(x, rnnkit.pack_gru(*p), training=True)
            ry, rh, rcache = reference.gru_forward(x, *p)
            gru_err = max(_max_rel_err((y, h), (ry, rh)),
                          _max_rel_err(rnnkit.gru_backward(ctx, dy), reference.gru_backward(dy, None, rcache)))
        print(f"  {isa:7s} float64 vs reference: LSTM max rel err {lstm_err:.1e}, GRU {gru_err:.1e}")


def _interleaved_medians(fns: dict, repeats: int = 7, settle: float = 0.15) -> dict:
    """Median seconds of each callable, repetitions interleaved so drift hits
    all alike. Before each timed call the machine settles: a BLAS's worker
    threads keep spinning for ~0.1 s after a call (OpenBLAS does), which
    would otherwise slow whichever candidate runs next."""
    times = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up: first-touch allocations, lazy packing
    for _ in range(repeats):
        for name, fn in fns.items():
            time.sleep(settle)
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(t)) for name, t in times.items()}


def time_layers(rng) -> None:
    """float32 forward and training step beside the GEMM-only bound."""
    T, B, I, H = 50, 32, 256, 256
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    dy = np.ones((T, B, H), np.float32)
    print(f"  shape T={T} B={B} I={I} H={H}, float32, isa={rnnkit.isa()}, threads={rnnkit.get_num_threads()}")
    for cell, gates in (("lstm", 4), ("gru", 3)):
        p = _params(rng, gates, I, H, np.float32)
        pack = getattr(rnnkit, f"pack_{cell}")
        forward = getattr(rnnkit, f"{cell}_forward")
        backward = getattr(rnnkit, f"{cell}_backward")
        w = pack(*p)

        def train_step():
            out = forward(x, pack(*p), training=True)
            backward(out[-1], dy)

        xs, wt, ht, h = x.reshape(T * B, I), p[0].T.copy(), p[1].T.copy(), np.zeros((B, H), np.float32)

        def gemm_only():
            xs @ wt
            for _ in range(T):
                h @ ht

        m = _interleaved_medians({"forward": lambda: forward(x, w), "train": train_step, "bound": gemm_only})
        fwd, train, bound = m["forward"], m["train"], m["bound"]
        print(f"  {cell.upper():4s} forward {fwd * 1e3:7.2f} ms   GEMM-only bound (NumPy) {bound * 1e3:7.2f} ms"
              f"   training step {train * 1e3:7.2f} ms")


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"rnnkit {rnnkit.__version__} on {platform.machine()}: ISAs {', '.join(rnnkit.available_isas())}")
    print("Correctness:")
    check_against_reference(rng)
    print("Speed (medians of 7 interleaved repetitions):")
    time_layers(rng)


if __name__ == "__main__":
    main()
