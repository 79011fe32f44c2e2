"""The benchmark run: sgemm rate, every case timed with its peers side by side, memory, reports."""

from __future__ import annotations

import os
import sys
import time

import numpy as np

import rnnkit
import cases as cs
import host
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


def set_threads(n: int, usable) -> None:
    rnnkit.set_num_threads(n)
    if "torch" in usable:
        peers.optional_import("torch").set_num_threads(n)


def run_case(case, data, usable, blas_limit, args) -> tuple:
    """(stats per peer, timing settings, check errors, background CPU share) of one case."""
    set_threads(case.threads, usable)
    with blas_limit(case.threads):
        cands = peers.build_all(case, data, usable)
        fns = {n: c.fn for n, c in cands.items()}
        primes = {n: c.prime for n, c in cands.items()} if args.prime else {}
        first, cost = timing.warm_up(fns, args.settle, primes)
        errs = check(case, cands, first)
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
    return {n: timing.summarize(s) for n, s in samples.items()}, settings, errs, background.stop()


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


def run(args) -> int:
    t_start, run_background = time.time(), host.Background().start()
    why = peers.availability()
    usable = [n for n in peers.PEER_ORDER if why[n] is None and n in args.peers]
    blas_limit, blas_note = timing.blas_threads()
    meta = report.metadata(args, blas_note)
    meta["peers_unavailable"] = {n: w for n, w in why.items() if w}
    print(f"rnnkit {meta['versions']['rnnkit']} isa={meta['isa']} ({', '.join(meta['available_isas'])}), "
          f"{meta['cpu_model']}, {meta['cores']} cores; peers: {', '.join(usable)}", flush=True)
    for n, w in meta["peers_unavailable"].items():
        print(f"  {peers.LABELS[n]} skipped: {w}")

    # The sgemm rate every GFLOP/s figure is compared with, once per thread count.
    sgemm = {t: timing.sgemm_rate(blas_limit, t) for t in args.threads}

    shapes = cs.parse_shapes(args.shapes) if args.shapes else (cs.QUICK_SHAPES if args.quick else cs.FULL_SHAPES)
    todo = cs.build_cases(shapes, args.cell, [m for m in args.mode if m != "step"], args.threads,
                          steps="step" in args.mode)
    bar, records, data_key, data = Progress(len(todo)), [], None, None
    for case in todo:
        bar.start(f"{case.cell} {case.mode} {case.shape} {case.threads} thr")
        # Data depends on cell and shape only: reuse it across modes and thread counts.
        key = (case.cell, case.T, case.B, case.I, case.H)
        if key != data_key:
            data_key, data = key, peers.make_data(*key)
        stats, settings, errs, background = run_case(case, data, usable, blas_limit, args)
        records.append(report.case_record(case, stats, sgemm[case.threads], errs, settings, background))
        bar.step()
    bar.close()

    mem = run_memory(args, shapes, usable)
    summary = report.summarize(records, mem)
    meta["elapsed_s"] = round(time.time() - t_start, 1)
    meta["background_cpu"] = run_background.stop()
    doc = {"meta": meta, "definitions": report.DEFINITIONS, "sgemm_gflops": {str(t): g for t, g in sgemm.items()},
           "cases": records, "memory": mem, "summary": summary}

    # Tables to stdout and beside the JSON.
    text = "\n\n".join(t for t in (report.case_table(records, step=False), report.case_table(records, step=True),
                                   report.summary_text(summary, sgemm), report.memory_text(mem)) if t)
    print("\n" + text)
    os.makedirs(args.out, exist_ok=True)
    report.write_json(os.path.join(args.out, "results.json"), doc)
    with open(os.path.join(args.out, "table.txt"), "w") as f:
        f.write(text + "\n")
    written = [] if args.no_plots else plots.draw(records, args.out, meta)
    print(f"\nwrote {os.path.join(args.out, 'results.json')}, table.txt" +
          "".join(f", {os.path.basename(p)}" for p in written) + f" in {meta['elapsed_s']:.0f} s")
    return 0
