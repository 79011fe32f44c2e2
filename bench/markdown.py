"""Markdown tables of a suite run, as the project README carries them:
python bench/markdown.py [bench/results/results.json]
"""

from __future__ import annotations

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = (("rnnkit", "rnnkit"), ("torch", "PyTorch"), ("ort", "ONNX RT"), ("gemm", "GEMM bound"))


def _time(case: dict, peer: str) -> str:
    """Median in ms (single steps in us), or '-' where the peer has no such mode."""
    p = case["peers"].get(peer)
    if not p:
        return "-"
    if case["mode"] == "step":
        return f"{p['median_s'] * 1e6:.1f} us"
    return f"{p['median_s'] * 1e3:.2f}"


def _speedup(case: dict, peer: str) -> str:
    p = case["peers"].get(peer)
    return f"{p['rnnkit_speedup']:.2f}x" if p else "-"


def case_table(cases: list) -> str:
    """One row per (cell, mode, shape, threads): medians and rnnkit's speed-ups."""
    head = ["cell", "mode", "T x B x I x H", "thr"] + [label for _, label in PEERS] + ["vs PyTorch", "vs ONNX RT"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in cases:
        row = [c["cell"], c["mode"], c["shape"].replace("x", " x "), str(c["threads"])]
        row += [_time(c, peer) for peer, _ in PEERS] + [_speedup(c, "torch"), _speedup(c, "ort")]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def summary_table(summary: dict) -> str:
    """Geometric-mean speed-ups over PyTorch and ONNX Runtime."""
    lines = ["| peer / mode | LSTM | GRU | all |", "|---|---|---|---|"]
    for peer, label in (("torch", "PyTorch"), ("ort", "ONNX Runtime")):
        for mode in ("inference", "train", "step"):
            cells = [summary["geomean_speedup"].get(f"{peer}/{mode}/{k}") for k in ("lstm", "gru", "all")]
            if any(cells):
                lines.append(f"| {label} {mode} | " + " | ".join(f"{x['geomean']:.2f}x" if x else "-" for x in cells) + " |")
    return "\n".join(lines)


def main(argv: list) -> int:
    path = argv[1] if len(argv) > 1 else os.path.join(HERE, "results", "results.json")
    with open(path) as f:
        run = json.load(f)
    meta = run["meta"]
    print(f"{meta['cpu_model']}, {meta['cores']} cores, ISA {meta['isa']}, float32, "
          f"torch {meta['versions'].get('torch', '-')}, onnxruntime {meta['versions'].get('onnxruntime', '-')}, "
          f"{meta['date'][:10]}; milliseconds unless marked\n")
    print(case_table(run["cases"]))
    print()
    print(summary_table(run["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
