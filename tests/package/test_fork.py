"""Fork safety: a child made by fork() after rnnkit ran on 2 OpenMP threads
must not hang on its first call (GNU libgomp's pool does not survive a
fork) and must give the parent's results bit for bit. Every case runs in
its own interpreter under a time limit, so a hang fails the test instead
of stopping the suite."""
import os
import subprocess
import sys
import textwrap

import pytest

import rnnkit

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()"),
    pytest.mark.skipif(not rnnkit._core.HAVE_OPENMP, reason="the hang needs OpenMP threads"),
]

# Weights, inputs and the parent's results of a forward, a training
# forward + backward (LSTM and GRU, float32 and float64), all on 2 threads;
# check(tag) recomputes them here and fails the process on any difference.
PRELUDE = textwrap.dedent("""
    import os, sys, threading, warnings
    import numpy as np
    import rnnkit
    rnnkit.set_num_threads(2)
    rng = np.random.default_rng(7)
    T, B, I, H = 37, 5, 11, 24
    CASES = []
    for cell in ("lstm", "gru"):
        for dt in (np.float32, np.float64):
            G = 4 if cell == "lstm" else 3
            w = getattr(rnnkit, "pack_" + cell)(rng.standard_normal((G * H, I)).astype(dt),
                                                rng.standard_normal((G * H, H)).astype(dt),
                                                rng.standard_normal(G * H).astype(dt),
                                                rng.standard_normal(G * H).astype(dt))
            x = rng.standard_normal((T, B, I)).astype(dt)
            dy = rng.standard_normal((T, B, H)).astype(dt)
            CASES.append((cell, w, x, dy))

    def run_all():
        out = []
        for cell, w, x, dy in CASES:
            fwd = getattr(rnnkit, cell + "_forward")
            out.append(fwd(x, w)[0])
            res = fwd(x, w, training=True)
            out.append(res[0])
            out.extend(getattr(rnnkit, cell + "_backward")(res[-1], dy))
        return out

    EXPECTED = run_all()

    def check(tag):
        got = run_all()
        for e, g in zip(EXPECTED, got):
            if not np.array_equal(e, g):
                print(tag + ": result differs from the parent's", flush=True)
                os._exit(3)

    def wait_child(pid, tag):
        _, status = os.waitpid(pid, 0)
        if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
            print(tag + ": child failed, status", status, flush=True)
            sys.exit(4)
""")


def run_script(tmp_path, body, timeout=120):
    # A file, not -c: spawn and forkserver children import the main module.
    script = tmp_path / "case.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env.pop("OMP_NUM_THREADS", None)
    try:
        r = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail("timed out: a forked child hung")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OK" in r.stdout, r.stdout + r.stderr
    return r


def test_os_fork_after_threaded_call(tmp_path):
    run_script(tmp_path, """
        pid = os.fork()
        if pid == 0:
            check("child")
            # The child reports what it does: one thread.
            if rnnkit.get_num_threads() != 1 or not rnnkit._core._testing.single_threaded_after_fork():
                os._exit(5)
            os._exit(0)
        wait_child(pid, "child")
        # The parent keeps its threads.
        assert rnnkit.get_num_threads() == 2
        assert not rnnkit._core._testing.single_threaded_after_fork()
        check("parent after fork")
        print("OK")
    """)


def test_set_num_threads_in_forked_child_warns_and_stays_single(tmp_path):
    run_script(tmp_path, """
        pid = os.fork()
        if pid == 0:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                rnnkit.set_num_threads(4)
            if not any(issubclass(c.category, RuntimeWarning) and "single-threaded" in str(c.message)
                       for c in caught):
                os._exit(6)
            if rnnkit.get_num_threads() != 1:
                os._exit(5)
            rnnkit.set_num_threads(1)   # asking for one thread is fine, silently
            check("child after set_num_threads")
            os._exit(0)
        wait_child(pid, "child")
        print("OK")
    """)


def test_fork_child_forks_again(tmp_path):
    run_script(tmp_path, """
        pid = os.fork()
        if pid == 0:
            check("child")
            grandchild = os.fork()
            if grandchild == 0:
                check("grandchild")
                os._exit(0)
            _, status = os.waitpid(grandchild, 0)
            os._exit(0 if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 else 7)
        wait_child(pid, "child")
        print("OK")
    """)


def test_multiprocessing_fork_pool(tmp_path):
    run_script(tmp_path, """
        import multiprocessing as mp

        def work(i):
            cell, w, x, dy = CASES[i]
            return getattr(rnnkit, cell + "_forward")(x, w)[0], rnnkit.get_num_threads()

        ctx = mp.get_context("fork")
        with ctx.Pool(2) as pool:
            got = pool.map(work, range(len(CASES)))
        idx = 0
        for (cell, w, x, dy), (y, nthreads) in zip(CASES, got):
            assert np.array_equal(y, EXPECTED[idx]), cell
            assert nthreads == 1
            idx += 2 + (7 if cell == "lstm" else 6)
        print("OK")
    """)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_multiprocessing_spawn_and_forkserver_keep_threads(method, tmp_path):
    # Children that are not forks of a threaded process keep their threads.
    run_script(tmp_path, """
        import multiprocessing as mp

        def work(n):
            import rnnkit
            rnnkit.set_num_threads(n)
            return rnnkit.get_num_threads()

        if __name__ == "__main__":
            with mp.get_context("%s").Pool(1) as pool:
                assert pool.map(work, [2]) == [2]
            print("OK")
    """ % method)


def test_fork_while_another_thread_is_inside_a_call(tmp_path):
    # The parent's other thread is inside long threaded calls (the GIL
    # released, the OpenMP team and the workspace cache busy) when the
    # main thread forks.
    run_script(tmp_path, """
        import time
        big_w = rnnkit.pack_lstm(rng.standard_normal((4 * 256, 64)).astype(np.float32),
                                 rng.standard_normal((4 * 256, 256)).astype(np.float32))
        big_x = rng.standard_normal((400, 16, 64)).astype(np.float32)
        stop = False
        calls = [0]

        def busy():
            while not stop:
                res = rnnkit.lstm_forward(big_x, big_w, training=True)
                rnnkit.lstm_backward(res[-1], res[0])
                calls[0] += 1

        t = threading.Thread(target=busy)
        t.start()
        while calls[0] == 0:
            time.sleep(0.01)
        pids = []
        for _ in range(3):
            time.sleep(0.05)
            pid = os.fork()
            if pid == 0:
                check("child")
                res = rnnkit.lstm_forward(big_x, big_w, training=True)
                rnnkit.lstm_backward(res[-1], res[0])
                os._exit(0)
            pids.append(pid)
        for pid in pids:
            wait_child(pid, "child")
        stop = True
        t.join()
        check("parent")
        print("OK")
    """, timeout=240)
