"""The benchmark suite runs end to end on awkward shapes, and every peer it
compares against computes the same thing as rnnkit (the suite stops with an
error when a peer's output or gradients disagree, e.g. a wrong gate order in
the ONNX model). Timings are not judged here."""

import json
import os
import subprocess
import sys


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_suite_runs_and_peers_agree(tmp_path):
    out = tmp_path / "results"
    cmd = [sys.executable, os.path.join(ROOT, "bench", "run.py"), "--shapes", "3x2x5x7,2x1x17x33",
           "--threads", "1", "--repeats", "1", "--settle", "0", "--no-memory", "--no-plots", "--out", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    modes = {(c["cell"], c["mode"]) for c in results["cases"]}
    assert modes == {(cell, mode) for cell in ("lstm", "gru") for mode in ("inference", "train", "step")}
    for case in results["cases"]:
        assert case["peers"]["rnnkit"]["median_s"] > 0
        # Whatever peers were importable were checked on this very case.
        for peer, errs in case.get("check", {}).items():
            assert all(e <= 1e-3 for e in errs.values()), (case["shape"], peer, errs)
    if os.environ.get("CI") == "true":
        assert not results["meta"]["peers_unavailable"], results["meta"]["peers_unavailable"]
