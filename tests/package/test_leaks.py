"""Resident memory stays flat over many calls (issue 16): forward, training
forward + backward, single steps, contexts dropped without backward, packs
and modules made and dropped, pickles and copies.

Measured in a fresh subprocess so that nothing else the suite does moves
the numbers. Each workload first runs WARMUP rounds: the workspace block
cache (up to 16 blocks, 512 MiB) and the allocators' free lists reach their
steady size there, which is memory held, not leaked. Then RSS is read after
each of ROUNDS further rounds; it must not grow by more than TOLERANCE in
all. A round is ITERS calls, so a leak of 2 KiB per call (one (B, H)
float32 state here) adds ROUNDS * ITERS * 2 KiB = 4 MiB, twice the
tolerance; the slow workloads (modules, pickles) run a quarter or an eighth
as many calls, each of which makes whole contexts of ~100 KiB. The
tolerance covers page-granular allocator noise: measured, the readings
after warm-up move by under 0.1 MiB. A self-check runs the same harness on
a deliberate 2 KiB-per-call leak and expects it caught.
"""

import json
import subprocess
import sys
import textwrap

import pytest

WARMUP, ROUNDS, ITERS = 2, 5, 400
TOLERANCE_MIB = 2.0

HARNESS = textwrap.dedent("""
    import copy, gc, json, os, pickle, sys
    import numpy as np
    import rnnkit

    PAGE = os.sysconf("SC_PAGE_SIZE")
    def rss_mib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE / 2**20

    T, B, I, H = 6, 8, 16, 64
    rng = np.random.default_rng(0)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)
    lw = [f32(4 * H, I), f32(4 * H, H), f32(4 * H), f32(4 * H)]
    gw = [f32(3 * H, I), f32(3 * H, H), f32(3 * H), f32(3 * H)]
    x, h, c, dy = f32(T, B, I), f32(B, H), f32(B, H), f32(T, B, H)
    xp = f32(29, I)  # packed rows of batch sizes 8, 8, 6, 4, 2, 1
    lp, gp = rnnkit.pack_lstm(*lw), rnnkit.pack_gru(*gw, linear_before_reset=False)
    module = rnnkit.LSTM(I, H, num_layers=2, dropout=0.1, seed=0)
    kept = []

    def inference():
        rnnkit.lstm_forward(x, lp, h, c); rnnkit.gru_forward(x, gp, h, reverse=True)
        rnnkit.lstm_cell(x[0], lp, h, c); rnnkit.gru_cell(x[0], gp, h)

    def training():
        ctx = rnnkit.lstm_forward(x, lp, h, c, training=True)[-1]
        rnnkit.lstm_backward(ctx, dy)
        ctx = rnnkit.gru_forward(xp, gp, h, training=True, batch_sizes=[8, 8, 6, 4, 2, 1])[-1]
        rnnkit.gru_backward(ctx, None, h)
        rnnkit.lstm_cell_backward(rnnkit.lstm_cell(x[0], lp, h, c, training=True)[-1], h, c)

    def dropped_contexts():
        rnnkit.lstm_forward(x, lp, h, c, training=True)
        rnnkit.gru_cell(x[0], gp, h, training=True)

    def packs_and_updates():
        p = rnnkit.pack_lstm(*lw); p.update(*lw)
        rnnkit.pack_gru(*gw)
        lp.update(*lw)

    def pickles_and_copies():
        pickle.loads(pickle.dumps(lp))
        copy.deepcopy(rnnkit.gru_forward(x, gp, h, training=True)[-1])

    def module_steps():
        y, _ = module(x)
        module.backward(np.ones_like(y))

    def leaky():
        kept.append(np.empty(2048, np.uint8) + 1)

    work = globals()[sys.argv[1]]
    slow = {"module_steps": 8, "pickles_and_copies": 4}
    iters = int(sys.argv[4]) // slow.get(sys.argv[1], 1)
    readings = []
    for r in range(int(sys.argv[2]) + int(sys.argv[3])):
        for _ in range(iters):
            work()
        gc.collect()
        readings.append(rss_mib())
    print(json.dumps(readings[int(sys.argv[2]):]))
""")


def measure(workload):
    run = subprocess.run([sys.executable, "-c", HARNESS, workload, str(WARMUP), str(ROUNDS), str(ITERS)],
                         capture_output=True, text=True, timeout=300, env={"OMP_NUM_THREADS": "2",
                                                                          **__import__("os").environ})
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
@pytest.mark.parametrize("workload", ["inference", "training", "dropped_contexts", "packs_and_updates",
                                      "pickles_and_copies", "module_steps"])
def test_resident_memory_is_flat(workload):
    readings = measure(workload)
    growth = readings[-1] - readings[0]
    assert growth <= TOLERANCE_MIB, f"{workload}: RSS grew {growth:.1f} MiB over {ROUNDS} rounds: {readings}"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_the_harness_catches_a_leak_of_2_kib_per_call():
    readings = measure("leaky")
    assert readings[-1] - readings[0] > TOLERANCE_MIB, readings
