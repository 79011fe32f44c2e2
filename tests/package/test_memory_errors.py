"""Failed allocations: every allocation rnnkit makes (the bindings' copies of
non-contiguous arguments, output arrays, packs, workspaces, training
contexts) must fail with MemoryError, sizes no driver can index with
ValueError, and the process must stay usable. Each case runs in its own
interpreter under an address-space limit (RLIMIT_AS) so that allocations
really fail, and under a time limit."""
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")

# limit(extra): the soft address-space limit set to what the process maps
# now plus `extra` bytes (the hard limit stays, so unlimit() lifts it).
# A small call is computed before the limit; usable() repeats it under the
# limit and compares bit for bit.
PRELUDE = textwrap.dedent("""
    import resource, sys
    import numpy as np
    import rnnkit

    def mapped_bytes():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmSize")

    HARD = resource.getrlimit(resource.RLIMIT_AS)[1]

    def limit(extra):
        # Kept blocks would serve requests the limit is meant to refuse.
        rnnkit.clear_workspace_cache()
        resource.setrlimit(resource.RLIMIT_AS, (mapped_bytes() + extra, HARD))

    def unlimit():
        resource.setrlimit(resource.RLIMIT_AS, (HARD, HARD))

    NTHREADS = int(sys.argv[1])
    rnnkit.set_num_threads(NTHREADS)
    rng = np.random.default_rng(3)
    SMALL = {}
    for cell in ("lstm", "gru"):
        for dt in (np.float32, np.float64):
            G = 4 if cell == "lstm" else 3
            w = getattr(rnnkit, "pack_" + cell)(rng.standard_normal((G * 16, 8)).astype(dt),
                                                rng.standard_normal((G * 16, 16)).astype(dt))
            x = rng.standard_normal((9, 3, 8)).astype(dt)
            dy = rng.standard_normal((9, 3, 16)).astype(dt)
            res = getattr(rnnkit, cell + "_forward")(x, w, training=True)
            grads = getattr(rnnkit, cell + "_backward")(res[-1], dy)
            SMALL[cell, dt] = (w, x, dy, res[:-1], grads)

    def usable():
        for (cell, dt), (w, x, dy, outs, grads) in SMALL.items():
            res = getattr(rnnkit, cell + "_forward")(x, w, training=True)
            for a, b in zip(outs, res[:-1]):
                assert np.array_equal(a, b), (cell, dt)
            for a, b in zip(grads, getattr(rnnkit, cell + "_backward")(res[-1], dy)):
                assert np.array_equal(a, b), (cell, dt)

    def expect(exc, fn, *args, **kwargs):
        try:
            fn(*args, **kwargs)
        except exc as e:
            return str(e)
        raise AssertionError("expected " + exc.__name__ + " from " + fn.__name__)
""")


def run_case(tmp_path, body, nthreads, timeout=180):
    script = tmp_path / "case.py"
    script.write_text(PRELUDE + textwrap.dedent(body) + "\nusable()\nprint('OK')\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    try:
        r = subprocess.run([sys.executable, str(script), str(nthreads)], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail("timed out")
    assert r.returncode == 0 and "OK" in r.stdout, "exit %d\n%s%s" % (r.returncode, r.stdout, r.stderr)


THREADS = pytest.mark.parametrize("nthreads", [1, 2])


@THREADS
def test_broadcast_arguments_whose_copy_cannot_be_made(tmp_path, nthreads):
    run_case(tmp_path, """
        limit(1 << 30)
        for (cell, dt), (w, x, dy, outs, grads) in SMALL.items():
            fwd = getattr(rnnkit, cell + "_forward")
            # x: (2^20, 2^9, 8) zero-strided, 16 or 32 GiB once contiguous.
            big_x = np.broadcast_to(np.ones(8, dt), (1 << 20, 1 << 9, 8))
            for training in (False, True):
                expect(MemoryError, fwd, big_x, w, training=training)
            # A single step's x and state, a packed sequence's x.
            xs = np.broadcast_to(np.ones(8, dt), (1 << 28, 8))
            expect(MemoryError, getattr(rnnkit, cell + "_cell"), xs, w)
            expect(MemoryError, fwd, xs, w, batch_sizes=np.full(1, 1 << 28))
            # Weights: (G * 2^24, 64) zero-strided, 16 GiB or more.
            G = 4 if cell == "lstm" else 3
            w_ih = np.broadcast_to(np.ones(64, dt), (G << 24, 64))
            w_hh = np.broadcast_to(np.ones(1 << 24, dt), (G << 24, 1 << 24))
            expect(MemoryError, getattr(rnnkit, "pack_" + cell), w_ih, w_hh)
    """, nthreads)


@THREADS
def test_outputs_too_large_for_memory(tmp_path, nthreads):
    # x fits (I = 1), y = (T, B, H) does not: 2^24 rows of H = 1024.
    run_case(tmp_path, """
        for cell in ("lstm", "gru"):
            G = 4 if cell == "lstm" else 3
            for dt in (np.float32, np.float64):
                w = getattr(rnnkit, "pack_" + cell)(np.full((G * 1024, 1), 0.01, dt), np.zeros((G * 1024, 1024), dt))
                x = np.ones((1 << 14, 1 << 10, 1), dt)
                limit(1 << 30)
                for training in (False, True):
                    expect(MemoryError, getattr(rnnkit, cell + "_forward"), x, w, training=training)
                xp = np.ones((1 << 24, 1), dt)
                expect(MemoryError, getattr(rnnkit, cell + "_forward"), xp, w, batch_sizes=np.full(1 << 10, 1 << 14))
                usable()
                unlimit()
    """, nthreads)


@THREADS
def test_pack_too_large_for_memory(tmp_path, nthreads):
    # The weights themselves fit (contiguous, no copy), their pack does not.
    run_case(tmp_path, """
        for cell in ("lstm", "gru"):
            G = 4 if cell == "lstm" else 3
            w_ih = np.ones((G * 2048, 3), np.float32)
            w_hh = np.ones((G * 2048, 2048), np.float32)
            limit(16 << 20)
            expect(MemoryError, getattr(rnnkit, "pack_" + cell), w_ih, w_hh)
            usable()
            unlimit()
            w = getattr(rnnkit, "pack_" + cell)(w_ih[:G * 64, :], w_hh[:G * 64, :64].copy())
            new_ih = np.zeros_like(w_ih[:G * 64]); new_hh = np.zeros((G * 64, 64), np.float32)
            w.update(new_ih, new_hh)   # in place: no allocation needed
    """, nthreads)


@THREADS
def test_training_context_and_backward_too_large_for_memory(tmp_path, nthreads):
    run_case(tmp_path, """
        for cell in ("lstm", "gru"):
            G = 4 if cell == "lstm" else 3
            for dt in (np.float32, np.float64):
                fwd = getattr(rnnkit, cell + "_forward")
                bwd = getattr(rnnkit, cell + "_backward")
                w = getattr(rnnkit, "pack_" + cell)(np.full((G * 256, 1), 0.01, dt), np.zeros((G * 256, 256), dt))
                # Inference fits (y: 2^18 rows of 256), the training context
                # (several times y) does not.
                x = np.ones((1 << 12, 1 << 6, 1), dt)
                limit((1 << 18) * 256 * np.dtype(dt).itemsize + (96 << 20))
                y, *_ = fwd(x, w)
                del y
                expect(MemoryError, fwd, x, w, training=True)
                unlimit()
                # The context fits, backward's workspace does not.
                xs = np.ones((1 << 9, 1 << 6, 1), dt)
                res = fwd(xs, w, training=True)
                dy = np.ones_like(res[0])
                limit(4 << 20)
                expect(MemoryError, bwd, res[-1], dy)
                usable()
                unlimit()
                # The context is still good once memory is back.
                bwd(res[-1], dy)
    """, nthreads)


def test_sizes_no_driver_can_index_are_value_errors(tmp_path):
    # Refused before any copy or allocation is tried: no limit needed.
    run_case(tmp_path, """
        for (cell, dt), (w, x, dy, outs, grads) in SMALL.items():
            fwd = getattr(rnnkit, cell + "_forward")
            msg = expect(ValueError, fwd, np.broadcast_to(np.ones(8, dt), (1 << 31, 1, 8)), w)
            assert "x:" in msg, msg
            msg = expect(ValueError, fwd, np.broadcast_to(np.ones(8, dt), (1 << 16, 1 << 15, 8)), w)
            assert "x: T * B" in msg, msg
            msg = expect(ValueError, getattr(rnnkit, cell + "_cell"), np.broadcast_to(np.ones(8, dt), (1 << 31, 8)), w)
            assert "x:" in msg, msg
            G = 4 if cell == "lstm" else 3
            msg = expect(ValueError, getattr(rnnkit, "pack_" + cell), np.broadcast_to(np.ones(1, dt), (G << 29, 1)),
                         np.ones((1, 1), dt))
            assert "weight_ih" in msg, msg
    """, 1)
