"""Markdown tables of a suite run, as the project README carries them:
python bench/markdown.py [bench/results/results.json]
"""

from __future__ import annotations

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = (("rnnkit", "rnnkit"), ("torch", "PyTorch"), ("ort", "ONNX RT"), ("gemm", "GEMM bound"))
# Reduced precisions: the timed candidates, then the rivals rnnkit's error is set beside.
LOWP = {
    "bf16": ((("rnnkit", "rnnkit bf16"), ("rnnkit_f32", "rnnkit f32"), ("torch_bf16", "PyTorch bf16"),
              ("torch_autocast", "PyTorch autocast"), ("gemm", "bf16 GEMM bound")),
             ("torch_bf16", "torch_autocast")),
    "int8": ((("rnnkit", "rnnkit int8"), ("rnnkit_f32", "rnnkit f32"), ("torch_int8", "PyTorch int8"),
              ("ort_int8", "ONNX RT int8"), ("gemm", "int8 GEMM bound")),
             ("torch_int8", "ort_int8")),
}


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
    return f"{p['rnnkit_speedup']:.2f}x" if p and p["rnnkit_speedup"] else "-"


def _precision(case: dict) -> str:
    return case.get("precision", "float32")


def case_table(cases: list) -> str:
    """One row per float32 (cell, mode, shape, threads): medians and rnnkit's speed-ups."""
    cases = [c for c in cases if _precision(c) == "float32"]
    head = ["cell", "mode", "T x B x I x H", "thr"] + [label for _, label in PEERS] + ["vs PyTorch", "vs ONNX RT"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in cases:
        row = [c["cell"], c["mode"], c["shape"].replace("x", " x "), str(c["threads"])]
        row += [_time(c, peer) for peer, _ in PEERS] + [_speedup(c, "torch"), _speedup(c, "ort")]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _lowp_time(case: dict, peer: str) -> str:
    if peer == "rnnkit" and "rnnkit" in case.get("unsupported", {}):
        return "n/a"
    return _time(case, peer)


def _err(case: dict, peer: str) -> str:
    e = (case.get("accuracy") or {}).get("max_abs_err", {}).get(peer)
    return f"{e['y']:.1e}" if e else "-"


def lowp_table(cases: list, precision: str) -> str:
    """Medians, rnnkit's speed-up over its faster rival, over its own float32 and its time over the
    bound, and max |y - y_float64| of rnnkit and each rival."""
    cases = [c for c in cases if _precision(c) == precision]
    if not cases:
        return ""
    cols, rivals = LOWP[precision]
    labels = dict(cols)
    head = (["cell", "mode", "T x B x I x H", "thr"] + [label for _, label in cols] +
            ["vs faster peer", "vs rnnkit f32", "rnnkit / bound"] +
            [f"y err {labels[n]}" for n in ("rnnkit",) + rivals])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in cases:
        times = [c["peers"][n]["median_s"] for n in rivals if n in c["peers"]]
        base = c["peers"].get("rnnkit")
        vs = f"{min(times) / base['median_s']:.2f}x" if times and base else "-"
        bound = f"{c['rnnkit_over_bound']:.2f}" if "rnnkit_over_bound" in c else "-"
        row = [c["cell"], c["mode"], c["shape"].replace("x", " x "), str(c["threads"])]
        row += [_lowp_time(c, n) for n, _ in cols] + [vs, _speedup(c, "rnnkit_f32"), bound]
        row += [_err(c, n) for n in ("rnnkit",) + rivals]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def targets_list(summary: dict) -> str:
    """The issue's targets as a list: PASS / FAIL / n/a, each with its worst case or geomean."""
    lines = []
    for precision in LOWP:
        for t in (summary.get("lowp") or {}).get(precision, {}).get("targets", []):
            verdict = {True: "PASS", False: "FAIL", None: "n/a"}[t["pass"]]
            lines.append(f"- {verdict}: {t['target']} ({t['detail']})")
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
    print(f"{meta['cpu_model']}, {meta['cores']} cores, ISA {meta['isa']}, "
          f"torch {meta['versions'].get('torch', '-')}, onnxruntime {meta['versions'].get('onnxruntime', '-')}, "
          f"{meta['date'][:10]}; milliseconds unless marked\n")
    print(case_table(run["cases"]))
    print()
    print(summary_table(run["summary"]))
    for precision in LOWP:
        table = lowp_table(run["cases"], precision)
        if table:
            rates = run.get("gemm_rates", {}).get(precision, {})
            print(f"\n{precision} (GEMM bound: " + ", ".join(f"{t} thr {v['label']} {v['gflops']:.0f} GFLOP/s"
                                                          for t, v in rates.items()) + ")\n")
            print(table)
    if targets_list(run["summary"]):
        print("\n" + targets_list(run["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
