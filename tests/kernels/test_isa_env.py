"""ISA selection: the RNNKIT_ISA environment variable (read once, at import,
so each case runs in a fresh interpreter), and set_isa / use_isa / packs in
process.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import rnnkit
from helpers import make_case, pack, rnnkit_forward_backward, assert_all_equal

KNOWN_ISAS = ("scalar", "avx2", "avx2_vnni", "avx512", "avx512_vnni", "avx512_bf16", "amx", "neon")
AVAILABLE = list(rnnkit.available_isas())

# Prints the active ISA and the ISA of a pack made right after import.
PROBE = ("import numpy as np, rnnkit; "
         "w = rnnkit.pack_gru(np.zeros((3, 2), np.float32), np.zeros((3, 1), np.float32)); "
         "print(rnnkit.isa(), w.isa)")


def run_python(code, rnnkit_isa, tmp_path):
    """Run `code` in a fresh interpreter that imports the same rnnkit as this
    process, with RNNKIT_ISA set (or unset if None)."""
    env = dict(os.environ)
    env.pop("RNNKIT_ISA", None)
    if rnnkit_isa is not None:
        env["RNNKIT_ISA"] = rnnkit_isa
    # The child must find rnnkit where we did, whatever put it on our path.
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def test_available_isas_are_known_and_include_scalar():
    assert "scalar" in AVAILABLE
    assert set(AVAILABLE) <= set(KNOWN_ISAS)
    assert len(set(AVAILABLE)) == len(AVAILABLE)
    assert rnnkit.isa() in AVAILABLE


@pytest.mark.parametrize("name", AVAILABLE)
def test_env_selects_isa(name, tmp_path):
    res = run_python(PROBE, name, tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [name, name]


def test_env_scalar(tmp_path):
    res = run_python("import rnnkit; print(rnnkit.isa())", "scalar", tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "scalar"


def test_env_bogus_fails_the_import_clearly(tmp_path):
    res = run_python("import rnnkit; print(rnnkit.isa())", "bogus", tmp_path)
    # A Python exception (exit status 1), not a signal such as SIGILL
    # (a negative returncode).
    assert res.returncode > 0, (res.returncode, res.stdout, res.stderr)
    assert "RNNKIT_ISA" in res.stderr
    assert "bogus" in res.stderr


def test_env_isa_this_cpu_lacks_does_not_crash(tmp_path):
    # Whether forcing an ISA the CPU lacks is an import error or a fallback
    # is the implementation's choice; running its instructions is not.
    missing = [i for i in KNOWN_ISAS if i not in AVAILABLE]
    if not missing:
        pytest.skip("this CPU runs every ISA rnnkit knows")
    for name in missing:
        res = run_python(PROBE, name, tmp_path)
        assert res.returncode >= 0, f"RNNKIT_ISA={name}: killed by signal {-res.returncode}"
        if res.returncode == 0:
            assert res.stdout.split()[0] in AVAILABLE
        else:
            assert "RNNKIT_ISA" in res.stderr


def test_default_isa_uses_simd_when_available(tmp_path):
    res = run_python(PROBE, None, tmp_path)
    assert res.returncode == 0, res.stderr
    chosen, pack_isa = res.stdout.split()
    assert chosen in AVAILABLE and pack_isa == chosen
    if len(AVAILABLE) > 1:
        assert chosen != "scalar", "dispatch picked scalar on a SIMD-capable CPU"


# ------------------------------------------------------------- in process


def test_use_isa_restores_on_exit_and_on_error():
    before = rnnkit.isa()
    for name in AVAILABLE:
        with rnnkit.use_isa(name):
            assert rnnkit.isa() == name
        assert rnnkit.isa() == before
    with pytest.raises(KeyError):
        with rnnkit.use_isa("scalar"):
            raise KeyError("inside")
    assert rnnkit.isa() == before


def test_set_isa_switches_and_switches_back():
    before = rnnkit.isa()
    try:
        for name in AVAILABLE:
            rnnkit.set_isa(name)
            assert rnnkit.isa() == name
    finally:
        rnnkit.set_isa(before)
    assert rnnkit.isa() == before


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_pack_keeps_the_isa_it_was_made_for(cell):
    # A pack carries its ISA and is run with that ISA's kernels, whatever is
    # active when it is used: results equal those under its own ISA.
    case = make_case(cell, 3, 2, 19, 21, np.float32, seed=30)
    for made_for in AVAILABLE:
        with rnnkit.use_isa(made_for):
            w = pack(cell, case)
            expected = rnnkit_forward_backward(cell, case, reverse=False, w=w)
        assert w.isa == made_for
        for active in AVAILABLE:
            with rnnkit.use_isa(active):
                got = rnnkit_forward_backward(cell, case, reverse=False, w=w)
            assert_all_equal(expected[0], got[0], what=f"{made_for} pack under {active}: ")
            assert_all_equal(expected[1], got[1], what=f"{made_for} pack under {active}: ")
