"""The benchmark run: GEMM rates, every case timed with its peers side by side (float32, then
bf16 and int8 beside each shape's float32 cases), memory, reports."""

from __future__ import annotations

import os
import sys
import time

import numpy as np

import rnnkit
import accuracy
import bounds
import cases as cs
import host
import lowp_peers
import lowp_report
import memory
import peers
import plots
import report
import timing

# Repetition budgets: seconds per case (settle pauses included), then [min, max] repetitions.
BUDGET = {"quick": (3.0, 5, 11), "full": (10.0, 5, 25)}
# Single steps: batches of back-to-back calls; the median is over batches.
STEP_BATCHES = {"quick": 9, "full": 21}
STEP_CALLS = 200
# The forward output must agree this closely with rnnkit's; gradients (longer sums) a little less.
FORWARD_TOL, GRAD_TOL = 1e-4, 1e-3


class Progress:
    """tqdm when installed, else one printed line per item."""

    def __init__(self, total: int):
        tqdm = peers.optional_import("tqdm")
        self.bar = tqdm.tqdm(total=total, unit="case", file=sys.stderr, dynamic_ncols=True) if tqdm else None
        self.total, self.done = total, 0

    def start(self, text: str):
        if self.bar:
            self.bar.set_description(text)
        else:
            print(f"[{self.done + 1}/{self.total}] {text}", file=sys.stderr, flush=True)

    def step(self):
        self.done += 1
        if self.bar:
            self.bar.update(1)

    def close(self):
        if self.bar:
            self.bar.close()


def rel_err(got, ref) -> float:
    """Largest difference relative to the largest magnitude; inf when the shapes differ."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        return float("inf")
    return float(np.max(np.abs(got - ref)) / max(float(np.max(np.abs(ref))), 1e-30))


def check(case, cands: dict, first: dict) -> dict:
    """Each peer's outputs vs rnnkit's on the warm-up call; exits loudly on disagreement."""
    base = cands["rnnkit"].extract(first["rnnkit"])
    errs = {}
    for name, cand in cands.items():
        if name == "rnnkit" or cand.extract is None:
            continue
        got = cand.extract(first[name])
        errs[name] = {k: rel_err(got[k], base[k]) for k in got}
        tol = {k: FORWARD_TOL if k in ("y", "h", "c") else GRAD_TOL for k in got}
        # `not e <= tol` also catches NaN.
        bad = {k: e for k, e in errs[name].items() if not e <= tol[k]}
        if bad:
            sys.exit(f"CHECK FAILED: {name} disagrees with rnnkit on {case}: relative errors {bad} "
                     f"(tolerance {FORWARD_TOL} forward, {GRAD_TOL} gradients); its timings would be meaningless")
    return errs


def set_threads(n: int) -> None:
    rnnkit.set_num_threads(n)
    # torch's pool also runs the bf16 and int8 GEMM bounds, whatever --peers says.
    torch = peers.optional_import("torch")
    if torch is not None:
        torch.set_num_threads(n)


def run_case(case, data, usable, blas_limit, args) -> tuple:
    """(stats per peer, timing settings, check errors, background CPU share, extra record fields) of one case.

    float32 cases are checked against rnnkit; bf16 and int8 cases against the float64
    reference, whose errors they record, and keep the fastest GEMM engine's time as their bound."""
    set_threads(case.threads)
    extra = {}
    # The float64 reference (once per cell, shape and mode) at BLAS's own thread count: it is not timed.
    ref = accuracy.reference_outputs(case, data) if case.precision != "float32" else None
    with blas_limit(case.threads):
        if case.precision == "float32":
            cands = peers.build_all(case, data, usable)
        else:
            cands = lowp_peers.build_all(case, data, usable)
            gone = lowp_peers.rnnkit_missing(case.precision, case.mode, case.cell)
            extra["unsupported"] = {"rnnkit": gone} if gone else {}
        fns = {n: c.fn for n, c in cands.items()}
        primes = {n: c.prime for n, c in cands.items()} if args.prime else {}
        first, cost = timing.warm_up(fns, args.settle, primes)
        if case.precision == "float32":
            errs = check(case, cands, first)
        else:
            errs = {}
            extra["accuracy"] = accuracy.measure(case, cands, first, ref)
        del first
        level = "quick" if args.quick else "full"
        background = host.Background().start()
        if case.mode == "step":
            batches = args.repeats or STEP_BATCHES[level]
            samples = timing.interleaved_batches(fns, batches, STEP_CALLS, args.settle, primes)
            settings = {"batches": batches, "calls_per_batch": STEP_CALLS}
        else:
            budget, lo, hi = BUDGET[level]
            reps = args.repeats or timing.choose_repeats(cost, args.settle, budget, lo, hi)
            samples = timing.interleaved(fns, reps, args.settle, primes)
            settings = {"repeats": reps}
    stats = {n: timing.summarize(s) for n, s in samples.items()}
    if case.precision != "float32":
        stats, extra["bound_engines_s"] = bounds.fold_bound(stats)
    return stats, settings, errs, background.stop(), extra


def run_memory(args, shapes, usable) -> dict:
    """Peak RSS per (peer, cell, mode, shape) and the T-scaling check, each in a child process."""
    if not args.memory:
        return {"available": False, "note": "disabled by --no-memory"}
    if not memory.proc_available():
        return {"available": False, "note": "/proc/self/clear_refs or VmHWM unavailable (Linux only)"}
    threads = max(args.threads)
    if args.quick:
        quick = [s for s in shapes if s[0] in cs.QUICK_MEMORY_SHAPES]
        shapes = quick or shapes[:2]
    usable_mem = [p for p in ("rnnkit", "torch", "ort") if p in usable]
    specs = memory.specs_for(shapes, args.cell, args.mode, usable_mem, threads)
    scaling = memory.t_scaling_specs(cs.T_SCALING, args.cell, threads) if "inference" in args.mode else []
    bar = Progress(len(specs) + len(scaling))
    results = []
    for spec in specs + scaling:
        shape = "x".join(str(spec[k]) for k in "TBIH")
        bar.start(f"memory {spec['peer']} {spec['cell']} {spec['mode']} {shape}")
        results.append(memory.measure(spec))
        bar.step()
    bar.close()
    cases_, t_scaling = results[:len(specs)], results[len(specs):]
    return {"available": True, "threads": threads, "definition": memory.DEFINITION, "cases": cases_,
            "t_scaling": t_scaling, "summary": memory.summarize(cases_, t_scaling)}


def _shapes(args, precision: str):
    if args.shapes:
        return cs.parse_shapes(args.shapes)
    if precision == "float32":
        return cs.QUICK_SHAPES if args.quick else cs.FULL_SHAPES
    return cs.QUICK_LOWP_SHAPES if args.quick else cs.LOWP_SHAPES


def _cases(args) -> list:
    """Every precision's cases, grouped by cell and shape (each shape's data and float64
    reference are built once), float32 first within a group; single steps last."""
    seq_modes = [m for m in args.mode if m != "step"]
    todo = []
    for precision in args.precision:
        # --quick times reduced precisions at the largest thread count only (CI runs --quick).
        threads = [max(args.threads)] if args.quick and precision != "float32" else args.threads
        todo += cs.build_cases(_shapes(args, precision), args.cell, seq_modes, threads, steps=False,
                               precision=precision)
    first = {}
    for c in todo:
        first.setdefault((c.cell, c.T, c.B, c.I, c.H), len(first))
    todo.sort(key=lambda c: first[(c.cell, c.T, c.B, c.I, c.H)])
    if "step" in args.mode and "float32" in args.precision:
        todo += cs.build_cases([], args.cell, [], args.threads, steps=True)
    return todo


def run(args) -> int:
    t_start, run_background = time.time(), host.Background().start()
    why = peers.availability()
    usable = [n for n in peers.PEER_ORDER if why[n] is None and n in args.peers]
    blas_limit, blas_note = timing.blas_threads()
    meta = report.metadata(args, blas_note)
    meta["peers_unavailable"] = {n: w for n, w in why.items() if w}
    if any(p != "float32" for p in args.precision):
        meta["peers_unavailable"].update(lowp_peers.availability())
    print(f"rnnkit {meta['versions']['rnnkit']} isa={meta['isa']} ({', '.join(meta['available_isas'])}), "
          f"{meta['cpu_model']}, {meta['cores']} cores; peers: {', '.join(usable)}", flush=True)
    for n, w in meta["peers_unavailable"].items():
        print(f"  {peers.LABELS[n]} skipped: {w}")

    # The GEMM rates every GFLOP/s figure is compared with, once per thread count: float32
    # through NumPy (sgemm), bf16 and int8 through the fastest of the engines each has here.
    lowp = [p for p in args.precision if p != "float32"]
    sgemm, rates = {}, {p: {} for p in lowp}
    for t in args.threads:
        set_threads(t)
        with blas_limit(t):
            sgemm[t] = bounds.engine_rate(bounds.BY_KEY["numpy_f32"], t)
            for p, v in bounds.measure_rates(lowp, t).items():
                rates[p][t] = v

    todo = _cases(args)
    bar, records, data_key, data = Progress(len(todo)), [], None, None
    for case in todo:
        bar.start(f"{case.cell} {case.mode} {case.shape} {case.threads} thr" +
                  ("" if case.precision == "float32" else f" {case.precision}"))
        # Data depends on cell and shape only: reuse it across modes, precisions and thread counts.
        key = (case.cell, case.T, case.B, case.I, case.H)
        if key != data_key:
            data_key, data = key, peers.make_data(*key)
        stats, settings, errs, background, extra = run_case(case, data, usable, blas_limit, args)
        if case.precision == "float32":
            rate = sgemm[case.threads]
        else:
            rate = rates.get(case.precision, {}).get(case.threads, {}).get("gflops")
        records.append(report.case_record(case, stats, rate, errs, settings, background, extra))
        bar.step()
    bar.close()

    shapes = _shapes(args, "float32")
    mem = run_memory(args, shapes, usable) if "float32" in args.precision else \
        {"available": False, "note": "float32 not in --precision"}
    summary = report.summarize(records, mem)
    if lowp:
        rates_json = {p: {str(t): v for t, v in r.items()} for p, r in rates.items()}
        summary["lowp"] = lowp_report.summarize(records, rates_json)
    meta["elapsed_s"] = round(time.time() - t_start, 1)
    meta["background_cpu"] = run_background.stop()
    doc = {"meta": meta, "definitions": report.DEFINITIONS, "sgemm_gflops": {str(t): g for t, g in sgemm.items()},
           "gemm_rates": summary.get("lowp", {}).get("gemm_rates", {}), "cases": records, "memory": mem,
           "summary": summary}

    # Tables to stdout and beside the JSON.
    text = "\n\n".join(t for t in (report.case_table(records, step=False), report.case_table(records, step=True),
                                   report.summary_text(summary, sgemm), report.memory_text(mem),
                                   lowp_report.text(records, summary["lowp"]) if lowp else "") if t)
    print("\n" + text)
    os.makedirs(args.out, exist_ok=True)
    report.write_json(os.path.join(args.out, "results.json"), doc)
    with open(os.path.join(args.out, "table.txt"), "w") as f:
        f.write(text + "\n")
    written = [] if args.no_plots else plots.draw(records, args.out, meta)
    print(f"\nwrote {os.path.join(args.out, 'results.json')}, table.txt" +
          "".join(f", {os.path.basename(p)}" for p in written) + f" in {meta['elapsed_s']:.0f} s")
    return 0
