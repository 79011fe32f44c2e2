"""set_num_threads validates its argument (an int from 1 to 1024), and no
value of OMP_NUM_THREADS makes a later call crash."""
import os
import subprocess
import sys

import numpy as np
import pytest

import rnnkit


@pytest.fixture
def restore_threads():
    saved = rnnkit.get_num_threads()
    yield
    rnnkit.set_num_threads(saved)


@pytest.mark.parametrize("n", [2**31, 2**63, 10**30, 1025, 100000])
def test_huge_counts_are_value_errors_naming_n(n, restore_threads):
    before = rnnkit.get_num_threads()
    with pytest.raises(ValueError, match=r"^n: expected a thread count between 1 and 1024, got %d$" % n):
        rnnkit.set_num_threads(n)
    assert rnnkit.get_num_threads() == before


@pytest.mark.parametrize("n", [True, False, 2.0, "2", None, np.float64(2.0), [2]])
def test_non_int_counts_are_type_errors(n, restore_threads):
    before = rnnkit.get_num_threads()
    with pytest.raises(TypeError, match=r"^n: expected an int thread count between 1 and 1024, got "):
        rnnkit.set_num_threads(n)
    assert rnnkit.get_num_threads() == before


@pytest.mark.parametrize("n", [1, 2, 1024, np.int64(2), np.int32(3)])
def test_valid_counts_are_taken(n, restore_threads):
    rnnkit.set_num_threads(n)
    assert rnnkit.get_num_threads() == int(n)
    w = rnnkit.pack_gru(np.ones((6, 3), np.float32), np.ones((6, 2), np.float32))
    rnnkit.gru_forward(np.ones((4, 2, 3), np.float32), w)


@pytest.mark.parametrize("value", ["abc", "0", "-3", "99999999999", "100000000", "2,abc", "", "1e9"])
def test_omp_num_threads_garbage_does_not_crash(value, tmp_path):
    code = (
        "import numpy as np, rnnkit\n"
        "n = rnnkit.get_num_threads()\n"
        "assert 1 <= n <= 1024, n\n"
        "w = rnnkit.pack_lstm(np.ones((8, 3), np.float32), np.ones((8, 2), np.float32))\n"
        "y = rnnkit.lstm_forward(np.ones((40, 3, 3), np.float32), w)[0]\n"
        "rnnkit.set_num_threads(1)\n"
        "assert np.array_equal(y, rnnkit.lstm_forward(np.ones((40, 3, 3), np.float32), w)[0])\n"
        "print('OK')\n")
    env = dict(os.environ, OMP_NUM_THREADS=value)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr
