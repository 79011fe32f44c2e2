"""The AMX tile kernels of the bf16 and int8 products (csrc/kernels/gemm_amx.cpp),
through the packing and threaded driver the layers use (_testing.lowp_gemm).

int8 sums are exact integers, so AMX must give the portable kernel's bits.
AMX bf16 sums round differently from vdpbf16ps' odd-then-even order (the
hardware's internal order and precision are not documented; measured here,
not bitwise equal), so bf16 is checked (1) bit for bit where every partial
sum is exact in float32 and (2) against float64 sums of the same bf16
values within the worst-case float32 summation bound.
"""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from helpers import rnnkit

T = rnnkit._core._testing if rnnkit is not None else None

M_SIZES = (1, 15, 16, 17, 31, 32, 33, 100)
K_SIZES = (1, 31, 32, 33, 64, 100, 1024)
N_SIZES = (1, 15, 16, 17, 32, 33, 100)
# One float32 rounding: half an ulp of 1.
U32 = 2.0 ** -24


def cpu_has_amx():
    """AMX-TILE, -BF16 and -INT8 per the kernel's CPU flags (Linux only)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return all(name in flags for name in ("amx_tile", "amx_bf16", "amx_int8"))


@pytest.fixture(autouse=True)
def need_amx():
    if "amx" in rnnkit.available_isas():
        return
    if os.environ.get("CI") == "true" and cpu_has_amx():
        pytest.fail("this CPU has AMX but rnnkit was built without the amx ISA (CI=true)")
    pytest.skip("the amx ISA is not available on this machine or build")


def to_bf16(x):
    """float32 -> nearest-even bf16 value, as float32 (lowp_scalar.h's to_bf16; finite values)."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return u.astype(np.uint32).view(np.float32)


def operands(rng, m, k, n):
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    return a, b, c0


def shapes():
    # Every M and N edge with a short, a padded and a long K, and every K
    # with a few row/column edges: the tiles' edges without the full cube.
    out = {(m, k, n) for m in M_SIZES for n in N_SIZES for k in (1, 33, 100)}
    out |= {(m, k, n) for k in K_SIZES for m in (1, 17, 33) for n in (15, 33)}
    # Calls of 64+ rows go K block by K block (a partial last block at K=600).
    out |= {(100, 1024, 100), (64, 1024, 100), (150, 600, 70), (300, 600, 33)}
    return sorted(out)


SHAPES = shapes()


@pytest.mark.parametrize("accumulate", [False, True], ids=["set", "accumulate"])
def test_int8_bitwise_equal_to_scalar(accumulate):
    rng = np.random.default_rng(18)
    for m, k, n in SHAPES:
        a, b, c0 = operands(rng, m, k, n)
        c = c0 if accumulate else None
        want = T.lowp_gemm(a, b, "int8", isa="scalar", c=c)
        got = T.lowp_gemm(a, b, "int8", isa="amx", c=c)
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), (m, k, n)


@pytest.mark.parametrize("accumulate", [False, True], ids=["set", "accumulate"])
def test_bf16_exact_sums_bitwise(accumulate):
    # Small integers times 1/8: products are multiples of 1/64 below 2^6, sums
    # of up to 1024 of them stay below 2^17, so every partial sum in any
    # order is exact in float32 and so must the result be, bit for bit.
    rng = np.random.default_rng(7)
    for m, k, n in SHAPES:
        a = (rng.integers(-8, 9, (m, k)) / 8).astype(np.float32)
        b = (rng.integers(-8, 9, (k, n)) / 8).astype(np.float32)
        c0 = (rng.integers(-64, 65, (m, n)) / 8).astype(np.float32)
        want = a.astype(np.float64) @ b.astype(np.float64) + (c0 if accumulate else 0)
        got = T.lowp_gemm(a, b, "bfloat16", isa="amx", c=c0 if accumulate else None)
        assert np.array_equal(got, want.astype(np.float32)), (m, k, n)


@pytest.mark.parametrize("accumulate", [False, True], ids=["set", "accumulate"])
def test_bf16_within_float32_sum_bound(accumulate):
    # The float64 sum of the same bf16 values is the target; any order of
    # float32 additions, each rounded, stays within (additions) * u * sum of
    # |terms| (Higham's gamma_n to first order; 2u per addition covers a
    # directed intermediate rounding too). Half of that for the float32 start.
    rng = np.random.default_rng(3)
    for m, k, n in SHAPES:
        a, b, c0 = operands(rng, m, k, n)
        ab, bb = to_bf16(a).astype(np.float64), to_bf16(b).astype(np.float64)
        start = c0.astype(np.float64) if accumulate else 0.0
        exact = ab @ bb + start
        magnitude = np.abs(ab) @ np.abs(bb) + np.abs(start)
        additions = k + 1
        bound = 2 * additions * U32 * magnitude + 1e-30
        got = T.lowp_gemm(a, b, "bfloat16", isa="amx", c=c0 if accumulate else None)
        err = np.abs(got - exact)
        assert np.all(err <= bound), (m, k, n, float((err / bound).max()))
        # The portable odd-then-even sums meet the same bound (the check is
        # the contract's, not fitted to AMX).
        ref = T.lowp_gemm(a, b, "bfloat16", isa="scalar", c=c0 if accumulate else None)
        assert np.all(np.abs(ref - exact) <= bound), (m, k, n)


@pytest.mark.parametrize("precision", ["bfloat16", "int8"])
def test_thread_count_does_not_change_bits(precision):
    # The driver's row blocks and tiles do not depend on the thread count,
    # so neither may any element's sum.
    rng = np.random.default_rng(11)
    for m, k, n in [(100, 1024, 100), (257, 96, 200), (33, 300, 129), (300, 600, 65)]:
        a, b, c0 = operands(rng, m, k, n)
        one = T.lowp_gemm(a, b, precision, isa="amx", c=c0, threads=1)
        for threads in (2, 3, 4):
            got = T.lowp_gemm(a, b, precision, isa="amx", c=c0, threads=threads)
            assert np.array_equal(got.view(np.uint32), one.view(np.uint32)), (m, k, n, threads)


def test_concurrent_python_threads_each_keep_their_tiles():
    # Each thread has its own tile configuration; shapes of different row
    # counts make the threads configure differently, interleaved.
    rng = np.random.default_rng(5)
    cases = []
    for m in (9, 20, 32, 45, 100):
        for precision in ("bfloat16", "int8"):
            a, b, c0 = operands(rng, m, 160, 70)
            cases.append((a, b, c0, precision, T.lowp_gemm(a, b, precision, isa="amx", c=c0, threads=1)))
    failures = []

    def run(offset):
        for rep in range(6):
            for i in range(len(cases)):
                a, b, c0, precision, want = cases[(i + offset + rep) % len(cases)]
                got = T.lowp_gemm(a, b, precision, isa="amx", c=c0, threads=1)
                if not np.array_equal(got.view(np.uint32), want.view(np.uint32)):
                    failures.append((a.shape, precision))

    threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    assert not failures, failures


FORK_SCRIPT = r"""
import os, sys
import numpy as np
from rnnkit._core import _testing as T

rng = np.random.default_rng(1)
a = rng.standard_normal((40, 130)).astype(np.float32)
b = rng.standard_normal((130, 50)).astype(np.float32)
want = {p: T.lowp_gemm(a, b, p, isa="amx") for p in ("bfloat16", "int8")}
# The parent's thread now has its tiles configured (40 rows: two configs).
pid = os.fork()
if pid == 0:
    ok = True
    for p in ("bfloat16", "int8"):
        ok &= np.array_equal(T.lowp_gemm(a, b, p, isa="amx"), want[p])
        ok &= np.array_equal(T.lowp_gemm(a[:20], b, p, isa="amx"), want[p][:20])
        ok &= np.array_equal(T.lowp_gemm(a, b, p, isa="amx", threads=3), want[p])
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
# And the parent goes on after its child.
ok = all(np.array_equal(T.lowp_gemm(a, b, p, isa="amx"), want[p]) for p in want)
sys.exit(os.waitstatus_to_exitcode(status) or (0 if ok else 4))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_amx_product_in_forked_child():
    # A separate interpreter (with a timeout), so a hang cannot stall the suite.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(rnnkit.__file__)),
                                         env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", FORK_SCRIPT], env=env, timeout=300, capture_output=True,
                          text=True)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])


def test_bad_precision_is_a_value_error():
    a = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="precision"):
        T.lowp_gemm(a, np.ones((3, 2), np.float32), "float16", isa="amx")
    with pytest.raises(ValueError, match="c"):
        T.lowp_gemm(a, np.ones((3, 2), np.float32), "int8", isa="amx", c=np.ones((3, 3), np.float32))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_int8_layer_on_amx_equals_avx512_bf16(cell):
    # A whole forward pass: the amx ISA's float kernels are avx512_bf16's
    # (and every CPU with amx has it), and int8 products are bitwise equal,
    # so the layers must be too: batches from one row (vector kernel) to
    # several tile blocks, widths off the panel and tile sizes.
    rng = np.random.default_rng(8)
    G = 4 if cell == "lstm" else 3
    forward = rnnkit._core.lstm_forward if cell == "lstm" else rnnkit._core.gru_forward
    for T_, B, I, H in [(4, 1, 7, 9), (3, 20, 33, 17), (2, 70, 100, 40), (2, 130, 300, 24)]:
        w_ih = (rng.standard_normal((G * H, I)) / np.sqrt(I)).astype(np.float32)
        w_hh = (rng.standard_normal((G * H, H)) / np.sqrt(H)).astype(np.float32)
        b_ih = (0.1 * rng.standard_normal(G * H)).astype(np.float32)
        b_hh = (0.1 * rng.standard_normal(G * H)).astype(np.float32)
        x = rng.standard_normal((T_, B, I)).astype(np.float32)
        ys = []
        for isa in ("avx512_bf16", "amx"):
            with rnnkit.use_isa(isa):
                w = rnnkit._core.pack(cell, w_ih, w_hh, b_ih, b_hh, True, "int8")
                ys.append(forward(x, w)[0])
        assert np.array_equal(ys[0].view(np.uint32), ys[1].view(np.uint32)), (T_, B, I, H)
