"""Bit-for-bit comparison of two builds of rnnkit's compiled core.

Runs a broad set of layer calls (LSTM, GRU in both forms, float32/float64,
every ISA the host has, inference and training forward + backward, reverse,
packed lengths, given or zero initial states, T = 1, B = 1, large B, 1 and
2 threads, shapes that chunk the input projection and pick each time-loop
schedule, the single-step cells) once per build, each in its own process,
and compares every output byte for byte (so NaNs compare equal to
themselves and -0.0 differs from 0.0).

    python tools/bitwise_check.py OLD_PYTHONPATH NEW_PYTHONPATH

Each path is a directory holding the `rnnkit` package to import.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

# (name, cell, lbr, dtype, T, B, I, H, threads, extra) -- extra keys:
# reverse, lengths (per-sequence, sorted descending), h0, nan.
F32, F64 = "float32", "float64"


def configs():
    out = []
    cells = [("lstm", True), ("gru", True), ("gru", False)]
    for cell, lbr in cells:
        for dt in (F32, F64):
            tag = f"{cell}{'' if lbr else '_nolbr'}_{dt}"
            # Small, odd shapes; both directions; states given or not.
            for rev in (False, True):
                for h0 in (False, True):
                    out.append((f"{tag}_small_rev{rev}_h0{h0}", cell, lbr, dt, 7, 3, 5, 13, 1,
                                dict(reverse=rev, h0=h0)))
            out.append((f"{tag}_T1", cell, lbr, dt, 1, 4, 6, 9, 1, dict(h0=True)))
            out.append((f"{tag}_T1_2thr", cell, lbr, dt, 1, 4, 6, 96, 2, dict(h0=True)))
            # B = 1, one thread: the fused-projection schedule (where the ISA has tiles).
            out.append((f"{tag}_B1_fused", cell, lbr, dt, 40, 1, 64, 128, 1, dict(h0=True)))
            out.append((f"{tag}_B1_fused_rev", cell, lbr, dt, 37, 1, 33, 96, 1, dict(reverse=True)))
            out.append((f"{tag}_B1_2thr", cell, lbr, dt, 40, 1, 64, 128, 2, {}))
            out.append((f"{tag}_B1_bigI", cell, lbr, dt, 20, 1, 1100, 64, 1, {}))
            # Two threads, short steps, several chunks: the overlapped schedule.
            out.append((f"{tag}_overlap", cell, lbr, dt, 30, 8, 256, 256, 2, dict(h0=True)))
            out.append((f"{tag}_overlap_rev_len", cell, lbr, dt, 30, 8, 256, 256, 2,
                        dict(reverse=True, lengths=[30, 30, 27, 20, 20, 9, 3, 1], h0=True)))
            # Large batch; with lengths; threads 1 and 2.
            for thr in (1, 2):
                out.append((f"{tag}_bigB_{thr}thr", cell, lbr, dt, 6, 64, 40, 64, thr, dict(h0=True)))
                out.append((f"{tag}_len_{thr}thr", cell, lbr, dt, 9, 5, 7, 70, thr,
                            dict(lengths=[9, 7, 7, 2, 1], h0=True)))
                out.append((f"{tag}_len_rev_{thr}thr", cell, lbr, dt, 9, 5, 7, 70, thr,
                            dict(reverse=True, lengths=[9, 9, 4, 2, 1])))
            # Projection chunking: large W_hh (chunks of few steps), weights
            # beyond the cached size (chunks of >= 256 rows).
            out.append((f"{tag}_chunked", cell, lbr, dt, 12, 16, 300, 512, 2, dict(h0=True)))
            out.append((f"{tag}_chunked_big_wih", cell, lbr, dt, 6, 4, 1500, 512, 1,
                        dict(reverse=True, lengths=[6, 5, 5, 2])))
            # The weight gradients' operand packed in parts (more rows than a part).
            out.append((f"{tag}_operand_parts", cell, lbr, dt, 40, 32, 600, 16, 2, dict(h0=True)))
            out.append((f"{tag}_nan", cell, lbr, dt, 5, 2, 4, 8, 1, dict(nan=True)))
    return out


def run_config(core, name, cell, lbr, dt, T, B, I, H, threads, extra):
    rng = np.random.default_rng([ord(ch) for ch in name])
    G = 4 if cell == "lstm" else 3
    d = np.dtype(dt)
    w_ih = rng.standard_normal((G * H, I)).astype(d) * d.type(0.3)
    w_hh = rng.standard_normal((G * H, H)).astype(d) * d.type(0.3)
    b_ih = rng.standard_normal(G * H).astype(d)
    b_hh = rng.standard_normal(G * H).astype(d)
    core.set_num_threads(threads)
    w = core.pack(cell, w_ih, w_hh, b_ih, b_hh, linear_before_reset=lbr)
    lengths = extra.get("lengths")
    if lengths is not None:
        bs = np.array([sum(1 for L in lengths if L > t) for t in range(T)], dtype=np.int64)
        x = rng.standard_normal((int(bs.sum()), I)).astype(d)
    else:
        bs = None
        x = rng.standard_normal((T, B, I)).astype(d)
    if extra.get("nan"):
        x.reshape(-1)[3] = np.nan
    h0 = rng.standard_normal((B, H)).astype(d) if extra.get("h0") else None
    c0 = rng.standard_normal((B, H)).astype(d) if extra.get("h0") else None
    rev = extra.get("reverse", False)
    fwd = core.lstm_forward if cell == "lstm" else core.gru_forward
    bwd = core.lstm_backward if cell == "lstm" else core.gru_backward
    state = dict(h0=h0, c0=c0) if cell == "lstm" else dict(h0=h0)
    outs = {}
    inf = fwd(x, w, reverse=rev, training=False, batch_sizes=bs, **state)
    for k, a in enumerate(inf):
        outs[f"inf{k}"] = a
    tr = fwd(x, w, reverse=rev, training=True, batch_sizes=bs, **state)
    for k, a in enumerate(tr[:-1]):
        outs[f"train{k}"] = a
    dy = rng.standard_normal(tr[0].shape).astype(d)
    dh = rng.standard_normal((B, H)).astype(d)
    dc = rng.standard_normal((B, H)).astype(d)
    grads = bwd(tr[-1], dy, dh, dc) if cell == "lstm" else bwd(tr[-1], dy, dh)
    for k, a in enumerate(grads):
        outs[f"grad{k}"] = a
    tr2 = fwd(x, w, reverse=rev, training=True, batch_sizes=bs, **state)
    for k, a in enumerate(bwd(tr2[-1])):          # no dy, dh_n, dc_n
        outs[f"grad_none{k}"] = a
    # The single-step cell on the first step's rows.
    cfn = core.lstm_cell if cell == "lstm" else core.gru_cell
    cbwd = core.lstm_cell_backward if cell == "lstm" else core.gru_cell_backward
    x0 = x[:B] if bs is not None else x[0]
    cst = dict(h=h0, c=c0) if cell == "lstm" else dict(h=h0)
    ctr = cfn(x0, w, training=True, **cst)
    for k, a in enumerate(ctr[:-1] if isinstance(ctr, tuple) else []):
        outs[f"cell{k}"] = a
    cg = cbwd(ctr[-1], dh, dc) if cell == "lstm" else cbwd(ctr[-1], dh)
    for k, a in enumerate(cg):
        outs[f"cellgrad{k}"] = a
    return outs


def dump(path):
    import rnnkit._core as core
    arrays = {}
    for cfg in configs():
        for k, a in run_config(core, *cfg).items():
            arrays[f"{cfg[0]}/{k}"] = np.ascontiguousarray(a)
    np.savez(path, **arrays)
    return core.isa()


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--dump":
        isa = dump(sys.argv[2])
        print("dumped", isa)
        return 0
    old, new = sys.argv[1], sys.argv[2]
    code = "import rnnkit._core as c; print(' '.join(c.available_isas()))"
    isas = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=new),
                          capture_output=True, text=True, check=True).stdout.split()
    failures = compared = 0
    with tempfile.TemporaryDirectory() as tmp:
        for isa in isas:
            files = []
            for tag, pp in (("old", old), ("new", new)):
                f = os.path.join(tmp, f"{tag}_{isa}.npz")
                env = dict(os.environ, PYTHONPATH=pp, RNNKIT_ISA=isa)
                subprocess.run([sys.executable, os.path.abspath(__file__), "--dump", f], env=env, check=True)
                files.append(np.load(f))
            a, b = files
            if sorted(a.files) != sorted(b.files):
                print(f"[{isa}] different output sets")
                failures += 1
            for k in a.files:
                compared += 1
                x, y = a[k], b[k]
                if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
                    failures += 1
                    print(f"[{isa}] DIFFERS: {k}")
            print(f"[{isa}] {len(a.files)} arrays compared")
    print(f"{len(configs())} configurations x {len(isas)} ISAs, {compared} arrays, {failures} differences")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
