"""PNG figures: per precision and mode, rnnkit's speed-up over each peer and every peer's time over
the GEMM bound (float32: inference.png, train.png, step.png; bf16_inference.png, bf16_train.png,
int8_inference.png)."""

from __future__ import annotations

import os

import lowp_peers
from peers import LABELS, PEER_ORDER
from report import RIVALS, precision_of

COLORS = {"rnnkit": "#1b9e77", "torch": "#d95f02", "ort": "#7570b3", "reference": "#999999", "gemm": "#333333",
          "rnnkit_f32": "#66c2a5", "torch_bf16": "#d95f02", "torch_autocast": "#fdae61", "torch_int8": "#d95f02",
          "ort_int8": "#7570b3"}
# Candidates and rivals per precision; reduced precisions also compare with rnnkit's own float32.
ORDER = {"float32": PEER_ORDER, **lowp_peers.ORDER}
SPEEDUP_OVER = {"float32": RIVALS, **{p: r + ("rnnkit_f32",) for p, r in lowp_peers.RIVALS.items()}}


def _grouped_bars(ax, groups, series, values, ref_line=1.0):
    """Bars per group (x) and series (colour), log scale, growing up or down from ref_line."""
    width = 0.8 / max(len(series), 1)
    for k, name in enumerate(series):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(groups))]
        # Missing values get no bar: height 0 at the reference line.
        ys = [values.get((g, name), ref_line) for g in groups]
        ax.bar(xs, [y - ref_line for y in ys], width, bottom=ref_line, label=LABELS[name], color=COLORS[name])
    ax.axhline(ref_line, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=40, ha="right", fontsize=7)


def draw(records, out_dir: str, meta: dict):
    """One PNG per mode; returns the paths written (none if matplotlib is missing)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("warning: matplotlib not importable, no plots")
        return []
    paths = []
    for precision, mode in [(p, m) for p in ORDER for m in ("inference", "train", "step")]:
        recs = [r for r in records if r["mode"] == mode and precision_of(r) == precision]
        if not recs:
            continue
        threads = sorted({r["threads"] for r in recs})
        present = [n for n in ORDER[precision] if any(n in r["peers"] for r in recs)]
        rivals = [n for n in SPEEDUP_OVER[precision] if n in present]
        tag = "" if precision == "float32" else f"{precision} "
        fig, axes = plt.subplots(2, len(threads), figsize=(5.5 * len(threads), 8), squeeze=False)
        for col, n_thr in enumerate(threads):
            sub = [r for r in recs if r["threads"] == n_thr]
            groups = [f"{r['cell']} {r['shape']}" for r in sub]
            # Top: how many times faster rnnkit is than each peer (above 1: rnnkit wins).
            speed = {(f"{r['cell']} {r['shape']}", n): r["peers"][n]["rnnkit_speedup"] for r in sub
                     for n in rivals if n in r["peers"] and r["peers"][n]["rnnkit_speedup"]}
            ax = axes[0][col]
            _grouped_bars(ax, groups, rivals, speed)
            ax.set_title(f"{tag}{mode}, {n_thr} thread(s): rnnkit {tag}speed-up over peer")
            ax.set_ylabel("peer time / rnnkit time (above 1: rnnkit faster)")
            ax.legend(fontsize=7)
            # Bottom: every library's time in units of the GEMM-only bound (1 = as fast as the bare GEMMs).
            ax = axes[1][col]
            libs = [n for n in present if n != "gemm"]
            norm = {(f"{r['cell']} {r['shape']}", n): r["peers"][n]["median_s"] / r["peers"]["gemm"]["median_s"]
                    for r in sub if "gemm" in r["peers"] for n in libs if n in r["peers"]}
            _grouped_bars(ax, groups, libs, norm)
            ax.set_title(f"{tag}{mode}, {n_thr} thread(s): time / {tag}GEMM-only bound")
            ax.set_ylabel("time / GEMM bound (lower is better)")
            ax.legend(fontsize=7)
        fig.suptitle(f"rnnkit {meta['versions']['rnnkit']} ({meta['isa']}), {meta['cpu_model']}, {precision}",
                     fontsize=9)
        fig.tight_layout()
        path = os.path.join(out_dir, f"{mode}.png" if precision == "float32" else f"{precision}_{mode}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
