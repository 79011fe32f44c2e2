"""Many Python threads at once give the serial results bit for bit (issue 16):
threads training their own modules, threads computing gradients on one
shared module's packed weights, threads sharing one eval-mode module, and
set_num_threads changing while all of that runs.

The kernels fix their reduction order whatever the thread count, and the
bindings keep no shared scratch space, so there is nothing to tolerate:
every comparison is exact.
"""

import threading

import numpy as np
import pytest

import rnnkit
from rnnkit import layers

T, B, I, H = 12, 8, 24, 72
WORKERS = 6
STEPS = 3


@pytest.fixture
def restore_threads():
    saved = rnnkit.get_num_threads()
    yield
    rnnkit.set_num_threads(saved)


def run_threads(fn, n, churn_threads=False):
    """fn(k) in n threads at once (plus one changing set_num_threads between
    1 and 2 until they finish); re-raises the first error."""
    results, errors = [None] * n, []
    done = threading.Event()

    def wrap(k):
        try:
            results[k] = fn(k)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    def churn():
        count = 0
        while not done.is_set():
            rnnkit.set_num_threads(1 + count % 2)
            count += 1
        assert count > 0

    threads = [threading.Thread(target=wrap, args=(k,)) for k in range(n)]
    extra = threading.Thread(target=churn) if churn_threads else None
    if extra:
        extra.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    if extra:
        extra.join()
    assert not errors, errors
    return results


def make_module(k, cls):
    return cls(I, H, num_layers=2, bidirectional=k % 2 == 1, dropout=0.2, seed=k, dtype=np.float32)


def data(k):
    rng = np.random.default_rng(1000 + k)
    return rng.standard_normal((T, B, I)).astype(np.float32), rng.integers(1, T + 1, B)


def train(module, x, lengths):
    """STEPS SGD steps on sum(y); returns the final parameters and the last dx."""
    for _ in range(STEPS):
        y, _ = module(x, lengths=lengths)
        dx, _ = module.backward(np.ones_like(y))
        for name, g in module.grads.items():
            setattr(module, name, getattr(module, name) - np.float32(0.05) * g)
    return {**module.state_dict(), "dx": dx}


def assert_bitwise(expected, got, what):
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=f"{what}: {name}")


@pytest.mark.parametrize("cls", [rnnkit.LSTM, rnnkit.GRU])
@pytest.mark.parametrize("churn", [False, True], ids=["fixed-threads", "set_num_threads-churn"])
def test_threads_training_their_own_modules(cls, churn, restore_threads):
    rnnkit.set_num_threads(2)
    serial = [train(make_module(k, cls), *data(k)) for k in range(WORKERS)]
    got = run_threads(lambda k: train(make_module(k, cls), *data(k)), WORKERS, churn_threads=churn)
    for k in range(WORKERS):
        assert_bitwise(serial[k], got[k], f"thread {k}")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("churn", [False, True], ids=["fixed-threads", "set_num_threads-churn"])
def test_threads_computing_gradients_on_one_shared_module(cell, churn, restore_threads):
    # Data parallel: one module's weights packed once and shared; each thread
    # runs its own batch forward and backward on them.
    module = (rnnkit.LSTM if cell == "lstm" else rnnkit.GRU)(I, H, num_layers=2, bidirectional=True, seed=5)
    packed = layers.pack_layer_weights(cell, module.parameters(), num_layers=2, bidirectional=True)

    def step(k):
        x, lengths = data(k)
        y, h_n, c_n, ctx = layers.rnn_forward(cell, x, packed, num_layers=2, bidirectional=True, lengths=lengths,
                                              training=True)
        dx, dhx, dcx, grads = layers.rnn_backward(ctx, np.ones_like(y), np.ones_like(h_n))
        out = {"y": y, "h_n": h_n, "dx": dx, "dhx": dhx}
        out.update({f"g{i}_{j}": g for i, gs in enumerate(grads) for j, g in enumerate(gs)})
        return out

    serial = [step(k) for k in range(WORKERS)]
    got = run_threads(step, WORKERS, churn_threads=churn)
    for k in range(WORKERS):
        assert_bitwise(serial[k], got[k], f"thread {k}")


@pytest.mark.parametrize("cls", [rnnkit.LSTM, rnnkit.GRU])
def test_threads_sharing_one_eval_module(cls, restore_threads):
    # The first calls race to pack; one packing must win and the parameters
    # must stay frozen exactly while it is held.
    module = make_module(1, cls).eval()
    serial = [make_module(1, cls).eval()(data(k)[0])[0] for k in range(WORKERS)]
    got = run_threads(lambda k: module(data(k)[0])[0], WORKERS, churn_threads=True)
    for k in range(WORKERS):
        np.testing.assert_array_equal(got[k], serial[k], err_msg=f"thread {k}")
    assert not module.weight_ih_l0.flags.writeable
    module.train()
    assert all(p.flags.writeable for p in module.parameters().values())
