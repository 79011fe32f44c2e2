"""The benchmark suite runs end to end on awkward shapes, and every peer it
compares against computes the same thing as rnnkit (the suite stops with an
error when a peer's output or gradients disagree, e.g. a wrong gate order in
the ONNX model). Reduced-precision peers really run reduced precision, and
the GEMM-only bounds do exactly the layer's products. Timings are not judged here."""

import json
import os
import subprocess
import sys


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "bench")

LOWP_MODES = {"bf16": {"inference", "train"}, "int8": {"inference"}}


def _run_suite(tmp_path, *extra):
    out = tmp_path / "results"
    cmd = [sys.executable, os.path.join(BENCH, "run.py"), "--shapes", "3x2x5x7,2x1x17x33",
           "--threads", "1", "--repeats", "1", "--settle", "0", "--no-memory", "--no-plots", "--out", str(out), *extra]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    return json.loads((out / "results.json").read_text()), (out / "table.txt").read_text()


def test_suite_runs_and_peers_agree(tmp_path):
    results, table = _run_suite(tmp_path)
    cases = results["cases"]
    assert {c["precision"] for c in cases} == {"float32", "bf16", "int8"}
    f32 = [c for c in cases if c["precision"] == "float32"]
    modes = {(c["cell"], c["mode"]) for c in f32}
    assert modes == {(cell, mode) for cell in ("lstm", "gru") for mode in ("inference", "train", "step")}
    for precision, want in LOWP_MODES.items():
        assert {(c["cell"], c["mode"]) for c in cases if c["precision"] == precision} == \
            {(cell, mode) for cell in ("lstm", "gru") for mode in want}
    for case in cases:
        if "rnnkit" in case["peers"]:
            assert case["peers"]["rnnkit"]["median_s"] > 0
        else:
            # Only a reduced-precision mode this build lacks, and the record says so.
            assert case["precision"] != "float32"
            assert case["unsupported"]["rnnkit"] == "n/a (not supported by this build)"
        # Whatever peers were importable were checked on this very case.
        for peer, errs in case.get("check", {}).items():
            assert all(e <= 1e-3 for e in errs.values()), (case["shape"], peer, errs)
    for precision in LOWP_MODES:
        assert f"{precision}: issue targets" in table
    if os.environ.get("CI") == "true":
        assert not results["meta"]["peers_unavailable"], results["meta"]["peers_unavailable"]


def test_reduced_precision_errors_are_measured_and_real(tmp_path):
    """Each reduced-precision candidate's error against the float64 reference is recorded, and
    is that of a reduced precision: far above rnnkit's own float32 error (a peer left in float32,
    e.g. a quantize_dynamic that swapped nothing, would show float32-sized errors), far below
    the outputs' size."""
    results, _ = _run_suite(tmp_path, "--precision", "bf16,int8", "--mode", "inference,train")
    lowp = [c for c in results["cases"] if c["precision"] != "float32"]
    assert lowp and all(c["precision"] in LOWP_MODES for c in results["cases"])
    for case in lowp:
        acc = case["accuracy"]
        errs, scale = acc["max_abs_err"], acc["reference_max_abs"]
        f32 = errs["rnnkit_f32"]["y"]
        assert f32 < 1e-5 * scale["y"], (case["shape"], f32)
        for name, e in errs.items():
            assert set(e) <= set(scale), (name, e)
            if name == "rnnkit_f32":
                continue
            assert 20 * f32 < e["y"] < 0.1 * scale["y"], (case["precision"], case["cell"], case["shape"], name, e)
        if case["mode"] == "train":
            assert {"dx", "dw_ih", "dw_hh", "db_ih"} <= set(scale)


_BOUNDS_CHECK = r"""
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import bounds
from cases import Case
from peers import make_data

# The products of a case are exactly its FLOPs (forward, and 3x forward for training).
for mode in ("inference", "train"):
    for cell in ("lstm", "gru"):
        case = Case(cell, mode, 3, 2, 5, 7, 1)
        products, prime = bounds.layer_products(case, make_data(cell, 3, 2, 5, 7))
        flops = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b, _ in products)
        assert all(a.shape[1] == b.shape[0] for a, b, _ in products)
        assert flops == case.flops, (cell, mode, flops, case.flops)

# Every usable engine computes the products it is timed on.
rng = np.random.default_rng(3)
a, b = rng.standard_normal((9, 13)).astype(np.float32), rng.standard_normal((13, 11)).astype(np.float32)
products = [(a, b, True), (b.T.copy(), a.T.copy(), False)]
for engine in bounds.ENGINES:
    if engine.missing() is not None:
        continue
    got = [np.asarray(r.float() if hasattr(r, "float") else r, np.float64) for r in engine.compile(products, 1)()]
    for (x, y, _), g in zip(products, got):
        if engine.precision == "int8":
            unsigned = engine.key == "ort_int8"
            qa = bounds._quantize(x, unsigned).astype(np.int64)
            want = qa @ bounds._quantize(y, False).astype(np.int64)
            assert np.array_equal(g, want), engine.key
        else:
            want = x.astype(np.float64) @ y.astype(np.float64)
            tol = 1e-5 if engine.precision == "float32" else 3e-2
            assert np.max(np.abs(g - want)) <= tol * np.max(np.abs(want)), engine.key
    assert bounds.engine_rate(engine, 1, n=64) > 0
print("ok")
"""


def test_gemm_bounds_do_the_layer_products():
    run = subprocess.run([sys.executable, "-c", _BOUNDS_CHECK, BENCH], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stdout[-2000:] + run.stderr[-4000:]
