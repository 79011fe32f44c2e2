"""rnnkit benchmark suite: python bench/run.py [--quick] [options]  (see bench/README.md)."""

from __future__ import annotations

import argparse
import os
import sys

# Sibling modules import each other by name whether run as a script or as `python -m bench`.
HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from cases import GATES, PRECISIONS  # noqa: E402
from peers import PEER_ORDER  # noqa: E402
from host import core_count  # noqa: E402

MODES = ("inference", "train", "step")


def _list(kind, allowed=None):
    """argparse type: comma-separated list, checked against `allowed` or parsed as ints."""
    def parse(text):
        items = [s.strip() for s in text.split(",") if s.strip()]
        if allowed is None:
            values = [int(s) for s in items]
            if not values or min(values) < 1:
                raise argparse.ArgumentTypeError(f"{kind}: positive integers expected")
            return sorted(set(values))
        bad = [s for s in items if s not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"{kind}: choose from {', '.join(allowed)}")
        return items
    return parse


def parse_args(argv=None):
    cores = core_count()
    p = argparse.ArgumentParser(description="rnnkit vs PyTorch, ONNX Runtime, the NumPy reference and the "
                                            "GEMM-only bound, in float32, bf16 and int8, in one process.")
    p.add_argument("--quick", action="store_true", help="smaller shape set and fewer repetitions (minutes)")
    p.add_argument("--threads", type=_list("threads"), default=sorted({1, cores}),
                   help=f"comma-separated thread counts (default 1,{cores})" if cores > 1 else "thread counts")
    p.add_argument("--cell", type=_list("cell", tuple(GATES)), default=list(GATES), help="lstm,gru")
    p.add_argument("--mode", type=_list("mode", MODES), default=list(MODES), help="inference,train,step")
    p.add_argument("--precision", type=_list("precision", PRECISIONS), default=list(PRECISIONS),
                   help="float32,bf16,int8: products' precisions (bf16: inference and train; int8: inference)")
    p.add_argument("--peers", type=_list("peers", PEER_ORDER), default=list(PEER_ORDER),
                   help="subset of " + ",".join(PEER_ORDER) + " (rnnkit always runs)")
    p.add_argument("--shapes", help="override the sequence shapes, e.g. 50x32x512x512,25x1x512x512 (TxBxIxH)")
    p.add_argument("--repeats", type=int, help="fixed repetitions per case (step cases: batches) instead of adaptive")
    p.add_argument("--settle", type=float, default=0.15, help="pause in seconds before each timed call (0.15)")
    p.add_argument("--prime", action=argparse.BooleanOptionalAction, default=True,
                   help="untimed one-step call of the same library after each settle pause (default on)")
    p.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True,
                   help="peak-RSS measurements in child processes (default on; --quick uses two shapes)")
    p.add_argument("--out", default=os.path.join(HERE, "results"), help="output directory (bench/results)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    args = p.parse_args(argv)
    if "rnnkit" not in args.peers:
        args.peers = ["rnnkit"] + args.peers
    if args.repeats is not None and args.repeats < 1:
        p.error("--repeats must be >= 1")
    return args


def main(argv=None) -> int:
    from suite import run
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
