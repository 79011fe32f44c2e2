"""rnnkit.torch under torch.nn.parallel.DistributedDataParallel: two processes
(gloo, loopback) train a few steps on halves of a batch; their parameters
must stay identical and equal a single-process run on the whole batch.

The parent hosts the rendezvous store on a port the OS picks (no race for a
free port) and runs this file as a script for each rank, with time limits on
everything so a broken collective fails the test instead of hanging it.
"""

import datetime
import os
import subprocess
import sys

import numpy as np

from helpers import assert_close, require_optional

WORLD, STEPS, LR = 2, 3, 0.2
T, B, I, H = 6, 3, 4, 5          # B rows per rank
TIMEOUT_S = 120                  # for a whole worker; collectives time out sooner


def build_model(torch):
    """LSTM -> GRU -> linear head on rnnkit.torch; the same weights on every call."""
    import rnnkit.torch

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = rnnkit.torch.LSTM(I, H, num_layers=2, bidirectional=True, batch_first=True)
            self.gru = rnnkit.torch.GRU(2 * H, H, batch_first=True)
            self.head = torch.nn.Linear(H, 1)

        def forward(self, x):
            return self.head(self.gru(self.lstm(x)[0])[0])

    torch.manual_seed(0)
    return Model().double()


def data(torch):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(WORLD * B, T, I, dtype=torch.float64, generator=g)
    return x, x.sum(-1, keepdim=True).cumsum(1).tanh()


def train(torch, model, x, y):
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    for _ in range(STEPS):
        loss = (model(x) - y).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def worker(rank, port, out_path):
    import torch
    import torch.distributed as dist
    limit = datetime.timedelta(seconds=60)
    store = dist.TCPStore("127.0.0.1", port, world_size=WORLD, is_master=False, timeout=limit)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=WORLD, timeout=limit)
    try:
        model = build_model(torch)
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        x, y = data(torch)
        rows = slice(rank * B, (rank + 1) * B)
        train(torch, ddp, x[rows], y[rows])
        torch.save({n: p.detach().clone() for n, p in model.named_parameters()}, out_path)
    finally:
        dist.destroy_process_group()


def test_ddp_two_processes_match_single_process(tmp_path):
    torch = require_optional("torch")
    import torch.distributed as dist
    if not dist.is_available() or not dist.is_gloo_available():
        raise AssertionError("this torch build has no gloo backend for the DDP test")
    store = dist.TCPStore("127.0.0.1", 0, world_size=WORLD, is_master=True, wait_for_workers=False,
                          timeout=datetime.timedelta(seconds=60))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1")
    outs = [tmp_path / f"rank{r}.pt" for r in range(WORLD)]
    procs = [subprocess.Popen([sys.executable, __file__, str(r), str(store.port), str(outs[r])],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(WORLD)]

    # Meanwhile, the single-process run on the whole batch: DDP averages the
    # two halves' gradients, which is the gradient of the whole batch's mean.
    model = build_model(torch)
    train(torch, model, *data(torch))
    want = {n: p.detach() for n, p in model.named_parameters()}

    logs = []
    for p in procs:
        try:
            logs.append(p.communicate(timeout=TIMEOUT_S)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError(f"a DDP worker did not finish in {TIMEOUT_S} s")
    for r, p in enumerate(procs):
        assert p.returncode == 0, f"rank {r} failed:\n{logs[r]}"

    ranks = [torch.load(o) for o in outs]
    assert set(ranks[0]) == set(want)
    for name in want:
        assert torch.equal(ranks[0][name], ranks[1][name]), f"{name}: ranks disagree"
        # float64 bound over the steps; gradients sum T * B rows per rank.
        assert_close(ranks[0][name].numpy(), want[name].numpy(), np.float64, T * WORLD * B,
                     STEPS * 3 * T, name=name)
    assert any(not torch.equal(want[n], build_model(torch).state_dict()[n]) for n in want), "nothing trained"


if __name__ == "__main__":
    worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
