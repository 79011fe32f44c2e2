"""Figures per case, the run's metadata, the summary, the JSON file and the printed tables."""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys

import numpy as np

import rnnkit
from host import core_count, cpu_model
from peers import LABELS, PEER_ORDER, optional_import

# Share of the CPUs busy with other processes above which a case counts as disturbed.
DISTURBED = 0.1

# Peers rnnkit is compared against (the GEMM bound is a floor, not a competitor).
RIVALS = ("torch", "ort", "reference")

DEFINITIONS = {
    "forward_flops": "2*T*B*G*H*(I+H), G=4 LSTM, 3 GRU",
    "flops": "forward_flops for inference and step, 3*forward_flops for train",
    "median_s/min_s/max_s": "over interleaved repetitions (one call each, after a settle pause and, when "
                            "meta.primed, an untimed one-time-step call of the same peer); "
                            "for step cases seconds per call, averaged over a batch of back-to-back calls",
    "gflops": "flops / median_s / 1e9",
    "pct_sgemm": "gflops as % of sgemm_gflops at the case's thread count (float32 cases)",
    "pct_gemm_rate": "gflops as % of gemm_rates[precision] at the case's thread count (bf16 and int8 cases)",
    "rnnkit_speedup": "this peer's median / rnnkit's median (>1: rnnkit faster); in bf16 and int8 cases rnnkit "
                      "is rnnkit in that precision (absent, with `unsupported`, where this build lacks the mode)",
    "precision": "of the products: float32, bf16 (rnnkit bf16 vs PyTorch bf16 module and autocast) or int8 "
                 "(rnnkit int8 vs PyTorch quantize_dynamic qint8 and ONNX Runtime DynamicQuantizeLSTM)",
    "accuracy": "bf16 and int8 cases: max |candidate - float64 reference| per output on the warm-up call "
                "(max_abs_err), and the reference's largest magnitude per output (reference_max_abs)",
    "gemm_rates": "per precision and thread count: GFLOP/s of a 2048^3 product through each GEMM engine "
                  "(bounds.py), and the fastest one (pct_gemm_rate is relative to it)",
    "bound_engines_s": "bf16 and int8 cases: median seconds of the case's products through each GEMM engine of "
                       "the precision; peers.gemm (the bound) is the fastest of them",
    "rnnkit_over_bound": "rnnkit median / GEMM-only bound median (the bound in the case's precision)",
    "check": "max|peer - rnnkit| / max|rnnkit| per output on the warm-up call",
    "background_cpu": "share of all CPUs used by other processes (or stolen by the hypervisor) while the case "
                      "ran; above ~0.1 the case's timings are disturbed",
    "train": "rnnkit: pack + forward(training=True) + backward(dy=ones); torch: zero grads, forward with "
             "requires_grad input, backward(dy=ones); ONNX Runtime has no training",
    "bf16 candidates": "rnnkit: weights packed with bf16 products (float32 in and out; train re-packs the float32 "
                       "master weights each step); rnnkit_f32: rnnkit's float32 on the same case; torch_bf16: "
                       "module.to(torch.bfloat16) fed bf16 input (and bf16 dy); torch_autocast: the float32 module, "
                       "each call inside torch.autocast('cpu', dtype=torch.bfloat16); gemm: the layer's products "
                       "through torch.matmul on bf16 operands",
    "int8 candidates": "rnnkit: weights packed with int8 products (per-row weight scales, activations quantized "
                       "per step); rnnkit_f32 as for bf16; torch_int8: torch.ao.quantization.quantize_dynamic"
                       "(qint8) of the module; ort_int8 (LSTM only): ONNX Runtime quantize_dynamic(per_channel=True, "
                       "QInt8) of the float ONNX model, a com.microsoft DynamicQuantizeLSTM; gemm: the layer's "
                       "products as u8 x s8 / s8 x s8 -> int32, the faster of ORT MatMulInteger and torch._int_mm",
}


def metadata(args, blas_note: str) -> dict:
    versions = {"python": platform.python_version(), "rnnkit": rnnkit.__version__, "numpy": np.__version__}
    for mod in ("torch", "onnxruntime", "onnx"):
        m = optional_import(mod)
        versions[mod] = getattr(m, "__version__", None) if m else None
    tpc = optional_import("threadpoolctl")
    blas = [{k: i.get(k) for k in ("internal_api", "version", "architecture")}
            for i in tpc.threadpool_info() if i.get("user_api") == "blas"] if tpc else None
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "isa": rnnkit.isa(), "available_isas": rnnkit.available_isas(),
        "cpu_model": cpu_model(), "machine": platform.machine(), "system": platform.platform(),
        "cores": core_count(), "threads": args.threads, "quick": args.quick, "settle_s": args.settle,
        "primed": args.prime,
        "dtype": "float32", "precisions": args.precision, "versions": versions, "blas_threads": blas_note,
        "numpy_blas": blas,
    }


def case_record(case, stats: dict, rate: float, check: dict, timing: dict, background, extra=None) -> dict:
    """One case's figures for every peer, plus rnnkit's ratios.

    rate: GFLOP/s of the case precision's GEMM (sgemm for float32); extra: more fields
    (reduced precisions: accuracy, unsupported)."""
    base = stats["rnnkit"]["median_s"] if "rnnkit" in stats else None
    pct = "pct_sgemm" if case.precision == "float32" else "pct_gemm_rate"
    peers = {}
    for name, s in stats.items():
        gflops = case.flops / s["median_s"] / 1e9
        peers[name] = {**s, "gflops": gflops, pct: 100.0 * gflops / rate if rate else None,
                       "rnnkit_speedup": s["median_s"] / base if base else None}
    rec = {"precision": case.precision, "cell": case.cell, "mode": case.mode, "shape": case.shape, "T": case.T,
           "B": case.B, "I": case.I, "H": case.H, "threads": case.threads, "flops": case.flops, **timing,
           "background_cpu": background, "check": check, "peers": peers, **(extra or {})}
    if "gemm" in stats and base:
        rec["rnnkit_over_bound"] = base / stats["gemm"]["median_s"]
    return rec


def precision_of(record) -> str:
    return record.get("precision", "float32")


def geomean(values):
    return float(np.exp(np.mean(np.log(values)))) if values else None


def summarize(records, memory: dict) -> dict:
    """Float32 cases: geometric-mean speed-ups, shapes where rnnkit loses, thread scaling, step
    latencies, memory (lowp_report.summarize has the bf16 and int8 cases)."""
    records = [r for r in records if precision_of(r) == "float32"]
    seq = [r for r in records if r["mode"] != "step"]
    out = {"geomean_speedup": {}, "rnnkit_slower_than_fastest_peer": [], "thread_scaling": [],
           "step_latency_us": [], "memory": memory.get("summary")}
    # Geometric means per rival, mode and cell (and over both cells).
    for rival in RIVALS:
        for mode in ("inference", "train", "step"):
            for cell in ("lstm", "gru", "all"):
                v = [r["peers"][rival]["rnnkit_speedup"] for r in records
                     if r["mode"] == mode and rival in r["peers"] and cell in (r["cell"], "all")]
                if v:
                    out["geomean_speedup"][f"{rival}/{mode}/{cell}"] = {"geomean": geomean(v), "cases": len(v)}
    # Cases where some rival beats rnnkit.
    for r in records:
        rivals = {n: r["peers"][n]["median_s"] for n in RIVALS if n in r["peers"]}
        if rivals and min(rivals.values()) < r["peers"]["rnnkit"]["median_s"]:
            best = min(rivals, key=rivals.get)
            out["rnnkit_slower_than_fastest_peer"].append(
                {"cell": r["cell"], "mode": r["mode"], "shape": r["shape"], "threads": r["threads"], "fastest": best,
                 "rnnkit_speedup": r["peers"][best]["rnnkit_speedup"]})
    out["rnnkit_slower_count"] = len(out["rnnkit_slower_than_fastest_peer"])
    out["rnnkit_slower_by_5pct_count"] = sum(1 for s in out["rnnkit_slower_than_fastest_peer"]
                                             if s["rnnkit_speedup"] < 0.95)
    out["disturbed_cases"] = sum(1 for r in records if (r.get("background_cpu") or 0) > DISTURBED)
    out["cases_compared"] = sum(1 for r in records if any(n in r["peers"] for n in RIVALS))
    # Thread scaling on the two largest sequence shapes: time at fewest threads / time at most.
    threads = sorted({r["threads"] for r in seq})
    if len(threads) > 1:
        lo, hi = threads[0], threads[-1]
        by_key = {(r["cell"], r["mode"], r["shape"], r["threads"]): r for r in seq}
        for cell in ("lstm", "gru"):
            shapes = sorted({(r["flops"], r["shape"]) for r in seq if r["cell"] == cell and r["mode"] == "inference"})
            for _, shape in shapes[-2:]:
                for mode in ("inference", "train"):
                    a, b = by_key.get((cell, mode, shape, lo)), by_key.get((cell, mode, shape, hi))
                    if a and b:
                        out["thread_scaling"].append(
                            {"cell": cell, "mode": mode, "shape": shape, "threads": [lo, hi],
                             "speedup": {n: a["peers"][n]["median_s"] / b["peers"][n]["median_s"]
                                         for n in a["peers"] if n in b["peers"]}})
    for r in records:
        if r["mode"] == "step":
            out["step_latency_us"].append({"cell": r["cell"], "shape": r["shape"], "threads": r["threads"],
                                           **{n: p["median_s"] * 1e6 for n, p in r["peers"].items()}})
    return out


def write_json(path: str, doc: dict) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)


# ---- printed tables ---------------------------------------------------------------

def format_table(header, rows) -> str:
    """Plain aligned text: first column left-aligned, the rest right-aligned."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = []
    for i, row in enumerate([header] + rows):
        cells = [str(c).ljust(w) if j == 0 else str(c).rjust(w) for j, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _num(v, fmt):
    return "-" if v is None else format(v, fmt)


def _pct(share):
    return "-" if share is None else f"{100 * share:.0f}%"


def _time(r, name, scale, fmt) -> str:
    """A peer's median in the table's unit; "n/a" where this build lacks rnnkit's mode."""
    if name in r["peers"]:
        return format(r["peers"][name]["median_s"] * scale, fmt)
    return "n/a" if name in r.get("unsupported", {}) else "-"


def case_table(records, step: bool, precision: str = "float32", order=PEER_ORDER, rivals=RIVALS) -> str:
    """Times of each peer (ms, or us per call for steps), rnnkit's speed-up over each rival, rnnkit / bound,
    for the cases of one precision (`order`: its candidates, `rivals`: those given an "x vs" column)."""
    recs = [r for r in records if (r["mode"] == "step") == step and precision_of(r) == precision]
    if not recs:
        return ""
    present = [n for n in order if any(n in r["peers"] for r in recs)]
    rivals = [n for n in rivals if n in present]
    scale, unit = (1e6, "us") if step else (1e3, "ms")
    header = ["cell mode shape", "thr"] + [f"{LABELS[n]} {unit}" for n in present] + \
             [f"x vs {LABELS[n]}" for n in rivals] + (["rnnkit/bound"] if "gemm" in present else []) + ["other cpu"]
    rows = []
    for r in recs:
        p = r["peers"]
        rows.append([f"{r['cell']} {r['mode'][:5]} {r['shape']}", r["threads"]] +
                    [_time(r, n, scale, ".3f" if step else ".2f") for n in present] +
                    [_num(p[n]["rnnkit_speedup"] if n in p else None, ".2f") for n in rivals] +
                    ([_num(r.get("rnnkit_over_bound"), ".2f")] if "gemm" in present else []) +
                    [_pct(r.get("background_cpu"))])
    return format_table(header, rows)


def summary_text(summary: dict, sgemm: dict) -> str:
    lines = []
    if summary["disturbed_cases"]:
        lines.append(f"WARNING: other processes used more than {DISTURBED:.0%} of the CPUs during "
                     f"{summary['disturbed_cases']} cases ('other cpu' column): their timings are unreliable.")
    lines += ["Measured sgemm rate: " + ", ".join(f"{t} thr {g:.1f} GFLOP/s" for t, g in sgemm.items())]
    lines.append("Geometric-mean speed-up of rnnkit (x > 1: rnnkit faster):")
    for key, v in summary["geomean_speedup"].items():
        rival, mode, cell = key.split("/")
        lines.append(f"  vs {LABELS[rival]:12s} {mode:9s} {cell:4s} {v['geomean']:6.2f}x  over {v['cases']} cases")
    lines.append(f"Cases where rnnkit is slower than the fastest peer: {summary['rnnkit_slower_count']}"
                 f" of {summary['cases_compared']} ({summary['rnnkit_slower_by_5pct_count']} by more than 5%)")
    for s in summary["rnnkit_slower_than_fastest_peer"]:
        lines.append(f"  {s['cell']} {s['mode']} {s['shape']} {s['threads']} thr: {LABELS[s['fastest']]}"
                     f" faster ({s['rnnkit_speedup']:.2f}x)")
    for s in summary["thread_scaling"]:
        t = s["threads"]
        figs = ", ".join(f"{LABELS[n]} {v:.2f}x" for n, v in s["speedup"].items())
        lines.append(f"Scaling {t[0]}->{t[1]} thr, {s['cell']} {s['mode']} {s['shape']}: {figs}")
    for s in summary["step_latency_us"]:
        figs = ", ".join(f"{LABELS[n]} {s[n]:.2f}" for n in PEER_ORDER if n in s)
        lines.append(f"Step latency us, {s['cell']} {s['shape']} {s['threads']} thr: {figs}")
    return "\n".join(lines)


def memory_text(memory: dict) -> str:
    if not memory.get("available"):
        return f"Memory: skipped ({memory.get('note', 'not measured')})"
    mib = 1 / 2 ** 20
    rows = []
    for m in memory["cases"] + memory["t_scaling"]:
        if "error" in m:
            rows.append([f"{m['cell']} {m['mode'][:5]} {m['T']}x{m['B']}x{m['I']}x{m['H']}", LABELS[m["peer"]],
                         "error", m["error"][:60]])
        else:
            rows.append([f"{m['cell']} {m['mode'][:5]} {m['T']}x{m['B']}x{m['I']}x{m['H']}", LABELS[m["peer"]],
                         f"{m['peak_increase_bytes'] * mib:.2f}", f"{m['beyond_outputs_bytes'] * mib:.2f}"])
    text = f"Memory at {memory['threads']} thr (MiB):\n" + format_table(
        ["cell mode shape", "peer", "peak increase", "beyond outputs"], rows)
    for key, v in (memory.get("summary") or {}).items():
        text += f"\n  {key}: {v}"
    return text
