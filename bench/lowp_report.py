"""Summary, issue targets and printed tables of the bf16 and int8 cases.

"PyTorch bf16" in a target is the faster of the bf16 module and autocast on each case; the
int8 peer the faster of PyTorch int8 and ONNX Runtime int8 (LSTM only: ORT quantizes no GRU).
A target with no case in the run, or whose rnnkit mode this build lacks, reads "n/a".
"""

from __future__ import annotations

from lowp_peers import NOT_SUPPORTED, ORDER, RIVALS
from peers import LABELS
from report import DISTURBED, case_table, format_table, geomean, precision_of

# Issue 18's targets.
GEOMEAN_TARGET = {"bf16": 1.3, "int8": 1.2}
BOUND_TARGET = {"bf16": 1.2, "int8": 1.3}     # rnnkit / GEMM bound at B >= BOUND_MIN_B
BOUND_MIN_B = 32
OWN_F32_TARGET = {"bf16": 1.6, "int8": 2.5}   # rnnkit float32 / rnnkit in the precision at B = 1, H >= 1024
OWN_F32_MIN_H = 1024
PEER_NAME = {"bf16": "PyTorch bf16 (faster of module and autocast)",
             "int8": "the faster of PyTorch int8 and ONNX Runtime int8"}
FASTEST_LABEL = {"bf16": "faster PyTorch bf16", "int8": "faster int8 peer"}


def _where(r) -> str:
    return f"{r['cell']} {r['mode']} {r['shape']} {r['threads']} thr"


def _fastest_rival(r, precision):
    """(name, median) of the fastest rival timed in the case, or None."""
    times = {n: r["peers"][n]["median_s"] for n in RIVALS[precision] if n in r["peers"]}
    return min(times.items(), key=lambda kv: kv[1]) if times else None


def _target(name: str, values, limit: float, higher_is_better: bool, missing: str = "") -> dict:
    """Pass/fail of `limit` over [(value, where)], with the worst case; n/a without values."""
    if not values:
        return {"target": name, "pass": None, "detail": missing or "no case in this run"}
    worst = min(values) if higher_is_better else max(values)
    ok = all((v >= limit) if higher_is_better else (v <= limit) for v, _ in values)
    return {"target": name, "pass": ok, "detail": f"worst {worst[0]:.2f}x ({worst[1]}) over {len(values)} cases"}


def _missing(recs) -> str:
    gone = sorted({r["mode"] for r in recs if "rnnkit" in r.get("unsupported", {})})
    return f"rnnkit {'/'.join(gone)}: {NOT_SUPPORTED}" if gone else ""


def _precision_summary(recs, precision: str) -> dict:
    out = {"geomean_speedup": {}, "rnnkit_slower_than_fastest_peer": [], "targets": [], "accuracy": {}}
    timed = [r for r in recs if "rnnkit" in r["peers"]]
    # Geometric means per rival (and the fastest rival per case), mode and cell.
    for mode in ("inference", "train"):
        for cell in ("lstm", "gru", "all"):
            sub = [r for r in timed if r["mode"] == mode and cell in (r["cell"], "all")]
            for rival in RIVALS[precision] + ("fastest", "rnnkit_f32"):
                if rival == "fastest":
                    v = [_fastest_rival(r, precision)[1] / r["peers"]["rnnkit"]["median_s"] for r in sub
                         if _fastest_rival(r, precision)]
                else:
                    v = [r["peers"][rival]["rnnkit_speedup"] for r in sub if rival in r["peers"]]
                if v:
                    out["geomean_speedup"][f"{rival}/{mode}/{cell}"] = {"geomean": geomean(v), "cases": len(v)}
    for r in timed:
        best = _fastest_rival(r, precision)
        if best and best[1] < r["peers"]["rnnkit"]["median_s"]:
            out["rnnkit_slower_than_fastest_peer"].append(
                {"cell": r["cell"], "mode": r["mode"], "shape": r["shape"], "threads": r["threads"],
                 "fastest": best[0], "rnnkit_speedup": best[1] / r["peers"]["rnnkit"]["median_s"]})
    out["cases_compared"] = sum(1 for r in timed if _fastest_rival(r, precision))
    out["disturbed_cases"] = sum(1 for r in recs if (r.get("background_cpu") or 0) > DISTURBED)

    # Targets: speed against the peers, per mode.
    for mode in [m for m in ("inference", "train") if any(r["mode"] == m for r in recs)]:
        sub = [r for r in recs if r["mode"] == mode]
        missing = _missing(sub)
        ratios = [(_fastest_rival(r, precision)[1] / r["peers"]["rnnkit"]["median_s"], _where(r))
                  for r in sub if "rnnkit" in r["peers"] and _fastest_rival(r, precision)]
        out["targets"].append(_target(f"{precision} {mode}: never slower than {PEER_NAME[precision]}",
                                      ratios, 1.0, True, missing))
        geo = geomean([v for v, _ in ratios])
        name = f"{precision} {mode}: geomean >= {GEOMEAN_TARGET[precision]}x over {PEER_NAME[precision]}"
        if geo is None:
            out["targets"].append({"target": name, "pass": None, "detail": missing or "no case in this run"})
        else:
            out["targets"].append({"target": name, "pass": geo >= GEOMEAN_TARGET[precision],
                                   "detail": f"{geo:.2f}x over {len(ratios)} cases"})
    # Targets against the bound (B >= 32) and against rnnkit's own float32 (B = 1, H >= 1024).
    big = [r for r in recs if r["B"] >= BOUND_MIN_B]
    out["targets"].append(_target(
        f"{precision}, B >= {BOUND_MIN_B}: within {BOUND_TARGET[precision]}x of the {precision} GEMM bound",
        [(r["rnnkit_over_bound"], _where(r)) for r in big if "rnnkit_over_bound" in r],
        BOUND_TARGET[precision], False, _missing(big)))
    small = [r for r in recs if r["B"] == 1 and r["H"] >= OWN_F32_MIN_H]
    out["targets"].append(_target(
        f"{precision}, B = 1, H >= {OWN_F32_MIN_H}: >= {OWN_F32_TARGET[precision]}x rnnkit's own float32",
        [(r["peers"]["rnnkit_f32"]["rnnkit_speedup"], _where(r)) for r in small
         if "rnnkit" in r["peers"] and "rnnkit_f32" in r["peers"]],
        OWN_F32_TARGET[precision], True, _missing(small)))
    out["accuracy"] = _accuracy(recs, precision)
    out["targets"].append(out["accuracy"]["target"])
    return out


def _accuracy(recs, precision: str) -> dict:
    """rnnkit's error vs each rival's, output by output, case by case (same weights, same inputs)."""
    worse, compared = [], 0
    for r in recs:
        errs = (r.get("accuracy") or {}).get("max_abs_err", {})
        if "rnnkit" not in errs:
            continue
        for rival in (n for n in RIVALS[precision] if n in errs):
            for out, e in errs["rnnkit"].items():
                if out in errs[rival]:
                    compared += 1
                    if e > errs[rival][out]:
                        worse.append({"case": _where(r), "rival": rival, "output": out, "rnnkit": e,
                                      "rival_err": errs[rival][out]})
    rivals = " and ".join(LABELS[n] for n in RIVALS[precision])
    name = f"{precision} accuracy: rnnkit's max abs error <= {rivals}'s on every case and output"
    if not compared:
        target = {"target": name, "pass": None, "detail": _missing(recs) or "no case in this run"}
    else:
        missing = _missing(recs)
        target = {"target": name, "pass": not worse,
                  "detail": f"larger in {len(worse)} of {compared} comparisons" + (f"; {missing}" if missing else "")}
    return {"compared": compared, "rnnkit_larger": worse, "target": target}


def summarize(records, rates: dict) -> dict:
    """Per reduced precision present: geomeans, cases rnnkit loses, targets, accuracy; plus the GEMM rates."""
    out = {"gemm_rates": rates}
    for precision in ORDER:
        recs = [r for r in records if precision_of(r) == precision]
        if recs:
            out[precision] = _precision_summary(recs, precision)
    return out


# ---- printed ------------------------------------------------------------------------

def _err_table(recs, precision: str, grads: bool) -> str:
    """Per case and candidate: max |y - y64| (grads: the largest of dx, dW, db relative to its max |ref|)."""
    names = [n for n in ORDER[precision] if any(n in (r.get("accuracy") or {}).get("max_abs_err", {}) for r in recs)]
    rows = []
    for r in recs:
        acc = r.get("accuracy") or {}
        errs, scale = acc.get("max_abs_err", {}), acc.get("reference_max_abs", {})
        row = [f"{r['cell']} {r['mode'][:5]} {r['shape']}", r["threads"]]
        for n in names:
            e = errs.get(n)
            if e is None:
                row.append("-")
            elif grads:
                rel = [v / max(scale[k], 1e-30) for k, v in e.items() if k != "y"]
                row.append(f"{max(rel):.2e}" if rel else "-")
            else:
                row.append(f"{e['y']:.2e}")
        rows.append(row)
    return format_table(["cell mode shape", "thr"] + [LABELS[n] for n in names], rows)


def text(records, summary: dict) -> str:
    """Tables of times, of errors, the GEMM rates, geomeans, losses and target lines."""
    parts = []
    for precision in ORDER:
        recs = [r for r in records if precision_of(r) == precision]
        if not recs:
            continue
        s = summary[precision]
        parts.append(f"{precision}: times (rnnkit = rnnkit {precision}; 'x vs rnnkit f32' = rnnkit's own float32 "
                     f"over rnnkit {precision}; GEMM bound in {precision})\n" +
                     case_table(recs, False, precision, ORDER[precision], RIVALS[precision] + ("rnnkit_f32",)))
        for mode in ("inference", "train"):
            sub = [r for r in recs if r["mode"] == mode]
            if sub:
                parts.append(f"{precision} {mode}: max |y - y_float64| on the same weights and inputs\n" +
                             _err_table(sub, precision, grads=False))
            if sub and mode == "train":
                parts.append(f"{precision} train: gradients, max over dx, dW_ih, dW_hh, db of "
                             "max |g - g_float64| / max |g_float64|\n" + _err_table(sub, precision, grads=True))
        lines = []
        if _missing(recs):
            lines.append(_missing(recs))
        rates = summary["gemm_rates"].get(precision, {})
        if rates:
            lines.append(f"{precision} GEMM rate (2048^3): " + "; ".join(
                f"{t} thr {v['gflops']:.0f} GFLOP/s via {v['label']}" +
                (" (" + ", ".join(f"{k} {g:.0f}" for k, g in v["candidates"].items()) + ")"
                 if len(v["candidates"]) > 1 else "") for t, v in rates.items()))
        wins = {}
        for r in recs:
            engines = r.get("bound_engines_s") or {}
            if engines:
                best = min(engines, key=engines.get)
                wins[best] = wins.get(best, 0) + 1
        if wins:
            lines.append(f"{precision} GEMM bound per case, fastest engine: " +
                         ", ".join(f"{k} in {n} cases" for k, n in sorted(wins.items())))
        lines.append(f"{precision}: geometric-mean speed-up of rnnkit {precision} (x > 1: rnnkit faster):")
        for key, v in s["geomean_speedup"].items():
            rival, mode, cell = key.split("/")
            who = FASTEST_LABEL[precision] if rival == "fastest" else LABELS[rival]
            lines.append(f"  vs {who:19s} {mode:9s} {cell:4s} {v['geomean']:6.2f}x  over {v['cases']} cases")
        lines.append(f"{precision}: cases where rnnkit is slower than the fastest peer: "
                     f"{len(s['rnnkit_slower_than_fastest_peer'])} of {s['cases_compared']}")
        for c in s["rnnkit_slower_than_fastest_peer"]:
            lines.append(f"  {c['cell']} {c['mode']} {c['shape']} {c['threads']} thr: {LABELS[c['fastest']]}"
                         f" faster ({c['rnnkit_speedup']:.2f}x)")
        for c in s["accuracy"]["rnnkit_larger"]:
            lines.append(f"  error: rnnkit {c['output']} {c['rnnkit']:.2e} > {LABELS[c['rival']]} "
                         f"{c['rival_err']:.2e} on {c['case']}")
        if s["disturbed_cases"]:
            lines.append(f"WARNING: {s['disturbed_cases']} {precision} cases disturbed by other processes")
        lines.append(f"{precision}: issue targets")
        for t in s["targets"]:
            verdict = {True: "PASS", False: "FAIL", None: "n/a "}[t["pass"]]
            lines.append(f"  {verdict}  {t['target']}: {t['detail']}")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)
