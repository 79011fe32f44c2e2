"""Peak resident memory of one call, each measured in a fresh child process (Linux /proc).

Driver: ``measure(specs)`` runs ``python bench/memory.py '<json spec>'`` per spec.
Child: builds inputs, weights and the peer's callable, warms the runtime up on
a tiny shape, resets the peak (clear_refs 5), reads VmRSS, runs the call once
and reads VmHWM.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import subprocess
import sys

DEFINITION = (
    "peak_increase_bytes = VmHWM after one call - VmRSS just before it, in a fresh process whose "
    "inputs, weights (packed for rnnkit inference), module or session were built, whose runtime was "
    "warmed up on a tiny shape beforehand, and whose free heap pages were released (malloc_trim). "
    "beyond_outputs_bytes = peak_increase_bytes minus the bytes of the call's results: inference "
    "y, h_n[, c_n]; train y, h_n[, c_n], dx, dW_ih, dW_hh, db_ih, db_hh "
    "(train figures include rnnkit's per-step weight re-pack, into the memory of the previous one "
    "(PackedWeights.update), and the transposed packs its backward pass makes, about weights_bytes; "
    "autograd's saved tensors for torch). weights_bytes = 4*G*H*(I+H)."
)


def proc_available() -> bool:
    """True where /proc lets a process reset and read its peak RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return "VmHWM" in open("/proc/self/status").read()
    except OSError:
        return False


def output_bytes(cell: str, mode: str, T: int, B: int, I: int, H: int) -> int:
    """float32 bytes of what the call returns (see DEFINITION)."""
    G = 4 if cell == "lstm" else 3
    states = 2 if cell == "lstm" else 1
    n = T * B * H + states * B * H
    if mode == "train":
        n += T * B * I + G * H * (I + H) + 2 * G * H
    return 4 * n


# ---- child -------------------------------------------------------------------------

def _status_kib(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


def _malloc_trim() -> None:
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to trim with


def _child(spec: dict) -> dict:
    import rnnkit
    import peers
    from cases import Case

    rnnkit.set_num_threads(spec["threads"])
    if spec["peer"] == "torch":
        peers.optional_import("torch").set_num_threads(spec["threads"])
    build = peers.BUILDERS[spec["peer"]]
    dims = (spec["T"], spec["B"], spec["I"], spec["H"])

    # Initialise the runtime (thread pools, lazy tables) on a tiny shape first.
    tiny = Case(spec["cell"], spec["mode"], 2, 1, 8, 8, spec["threads"])
    cand = build(tiny, peers.make_data(spec["cell"], *(2, 1, 8, 8)))
    cand.fn()
    cand.fn()

    case = Case(spec["cell"], spec["mode"], *dims, spec["threads"])
    cand = build(case, peers.make_data(spec["cell"], *dims))
    gc.collect()
    # Hand freed heap pages back to the OS, so the call's allocations show in RSS
    # instead of silently reusing memory left resident by the set-up.
    _malloc_trim()

    # Reset the high-water mark to the current RSS, then run once.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kib("VmRSS")
    result = cand.fn()
    peak = _status_kib("VmHWM")
    del result
    increase = (peak - before) * 1024
    return {"peak_increase_bytes": increase,
            "beyond_outputs_bytes": increase - output_bytes(spec["cell"], spec["mode"], *dims),
            "rss_before_bytes": before * 1024, "weights_bytes": 4 * case.gates * case.H * (case.I + case.H)}


# ---- driver ---------------------------------------------------------------------------

def measure(spec: dict, timeout: float = 600.0) -> dict:
    """Run one child; returns spec + figures, or spec + error."""
    cmd = [sys.executable, os.path.abspath(__file__), json.dumps(spec)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return {**spec, "error": f"exit {done.returncode}: {tail[0]}"}
    return {**spec, **json.loads(done.stdout.strip().splitlines()[-1])}


def specs_for(shapes, cells, modes, usable, threads: int):
    """One spec per (peer, cell, mode, shape): rnnkit and torch, ORT for inference."""
    out = []
    for dims, shape_cells in shapes:
        for cell in (c for c in cells if c in shape_cells):
            for mode in (m for m in modes if m != "step"):
                for peer in ("rnnkit", "torch", "ort"):
                    if peer in usable and not (peer == "ort" and mode == "train"):
                        out.append(dict(zip("TBIH", dims), peer=peer, cell=cell, mode=mode, threads=threads))
    return out


def t_scaling_specs(t_scaling: dict, cells, threads: int):
    """rnnkit inference at fixed B, I, H and growing T."""
    return [dict(T=T, B=t_scaling["B"], I=t_scaling["I"], H=t_scaling["H"], peer="rnnkit", cell=cell,
                 mode="inference", threads=threads) for cell in cells for T in t_scaling["T"]]


def summarize(cases, t_scaling) -> dict:
    """rnnkit vs torch peak per case, and whether rnnkit's inference workspace grows with T."""
    out = {}
    ok = [m for m in cases if "error" not in m]
    same = ("cell", "mode", "T", "B", "I", "H")
    for m in ok:
        if m["peer"] != "rnnkit":
            continue
        twin = next((t for t in ok if t["peer"] == "torch" and all(t[k] == m[k] for k in same)), None)
        if twin and twin["peak_increase_bytes"] > 0:
            key = f"{m['cell']} {m['mode']} {m['T']}x{m['B']}x{m['I']}x{m['H']} rnnkit/torch peak"
            out[key] = round(m["peak_increase_bytes"] / twin["peak_increase_bytes"], 3)
    # Growth per time step of what is kept beyond the outputs; per-step storage of even
    # half a hidden state (B*H*2 bytes) would show as a slope of that size or more.
    for cell in sorted({m["cell"] for m in t_scaling}):
        pts = sorted((m["T"], m["beyond_outputs_bytes"], m["B"] * m["H"]) for m in t_scaling
                     if m["cell"] == cell and "error" not in m)
        if len(pts) >= 2:
            slope = (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0])
            out[f"{cell} inference beyond-outputs bytes per extra step (rnnkit)"] = round(slope, 1)
            out[f"{cell} inference workspace grows with T (rnnkit)"] = bool(slope >= pts[0][2] * 2)
    return out


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
