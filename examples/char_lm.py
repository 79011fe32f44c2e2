"""Character-level language model, trained with rnnkit.torch and with torch.nn side by side.

The text is the source of a standard-library module (``argparse`` by
default), so the example runs wherever Python does. Both runs start from the
same weights and see the same batches and the same dropout masks; only the
recurrent layer differs (``rnnkit.torch.convert`` swaps it). The script
prints both loss curves, their largest difference and the time per epoch of
each run, then a short sample from the rnnkit model.

    python examples/char_lm.py                      # under a minute on two cores
    python examples/char_lm.py --epochs 20 --hidden 256 --cell gru
"""

from __future__ import annotations

import argparse
import copy
import importlib
import time

import torch
from torch import nn

import rnnkit
import rnnkit.torch


def load_text(module_name: str, max_chars: int) -> str:
    """The source text of a standard-library module."""
    module = importlib.import_module(module_name)
    path = getattr(module, "__file__", None) or ""
    if not path.endswith(".py"):
        raise SystemExit(f"--text-module {module_name}: no Python source file ({path or 'built in'}); "
                         "pick a pure-Python module such as argparse or textwrap")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return text[:max_chars] if max_chars else text


class CharLM(nn.Module):
    """Embedding -> stacked LSTM/GRU -> linear decoder over the vocabulary."""

    def __init__(self, vocab: int, embed: int, hidden: int, layers: int, dropout: float, cell: str):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        rnn_cls = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn_cls(embed, hidden, num_layers=layers, dropout=dropout, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, ids, state=None):
        out, state = self.rnn(self.embed(ids), state)
        return self.head(out), state


class Run:
    """One model with its optimizer and its own stream of random numbers (dropout),
    so epochs of the two runs can alternate without sharing torch's RNG."""

    def __init__(self, name: str, model: nn.Module, lr: float, seed: int):
        self.name, self.model = name, model
        self.opt = torch.optim.Adam(model.parameters(), lr=lr)
        self.rng_state = torch.Generator().manual_seed(seed).get_state()
        self.train_loss, self.val_loss, self.seconds = [], [], []

    def epoch(self, batches, val_x, val_y):
        saved = torch.get_rng_state()
        torch.set_rng_state(self.rng_state)
        self.model.train()
        start, total = time.perf_counter(), 0.0
        for x, y in batches:
            logits, _ = self.model(x)
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            total += loss.item()
        self.seconds.append(time.perf_counter() - start)
        self.train_loss.append(total / len(batches))
        # Held-out loss: the inference path (no autograd, packed weights reused).
        self.model.eval()
        with torch.no_grad():
            logits, _ = self.model(val_x)
            self.val_loss.append(nn.functional.cross_entropy(logits.flatten(0, 1), val_y.flatten()).item())
        self.rng_state = torch.get_rng_state()
        torch.set_rng_state(saved)


def make_batches(data: torch.Tensor, seq_len: int, batch: int, gen: torch.Generator):
    """Random windows of seq_len + 1 characters, cut into (input, next-character target) batches."""
    n_windows = (data.numel() - 1) // seq_len
    starts = torch.randperm(n_windows, generator=gen)[: (n_windows // batch) * batch] * seq_len
    windows = torch.stack([data[s:s + seq_len + 1] for s in starts.tolist()])
    return [(w[:, :-1], w[:, 1:]) for w in windows.split(batch)]


def sample(model: CharLM, chars, stoi, prompt: str, length: int, gen: torch.Generator) -> str:
    """Characters drawn one step at a time, carrying the recurrent state."""
    model.eval()
    out = prompt
    with torch.no_grad():
        logits, state = model(torch.tensor([[stoi[c] for c in prompt]]))
        for _ in range(length):
            probs = torch.softmax(logits[0, -1].double() / 0.8, dim=-1)
            nxt = int(torch.multinomial(probs, 1, generator=gen))
            out += chars[nxt]
            logits, state = model(torch.tensor([[nxt]]), state)
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--text-module", default="argparse", help="stdlib module whose source is the text")
    p.add_argument("--max-chars", type=int, default=100000, help="use the first N characters (0: all)")
    p.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--embed", type=int, default=32)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample", type=int, default=200, help="characters to generate at the end (0: none)")
    p.add_argument("--quiet", action="store_true", help="print nothing (for tests)")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    say = (lambda *a: None) if args.quiet else print
    text = load_text(args.text_module, args.max_chars)
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text])
    # The last tenth is held out for the validation loss.
    split = int(0.9 * data.numel())
    train, val = data[:split], data[split:]
    if val.numel() <= args.seq_len or train.numel() <= args.seq_len * args.batch:
        raise SystemExit(f"{len(text)} characters are too few for --seq-len {args.seq_len} "
                         f"and --batch {args.batch}")
    # Consecutive windows of the held-out text, all in one batch.
    val_windows = torch.stack([val[s:s + args.seq_len + 1]
                               for s in range(0, val.numel() - args.seq_len, args.seq_len)])
    val_x, val_y = val_windows[:, :-1], val_windows[:, 1:]

    # torch's first optimizer step imports its compiler stack (seconds): not part of either timing.
    warm = torch.zeros(1, requires_grad=True)
    warm.grad = torch.zeros(1)
    torch.optim.Adam([warm]).step()

    # One initialisation, two copies: torch.nn as built, and the same weights converted.
    torch.manual_seed(args.seed)
    base = CharLM(len(chars), args.embed, args.hidden, args.layers, args.dropout, args.cell)
    base = base.to(getattr(torch, args.dtype))
    runs = [Run("torch.nn", copy.deepcopy(base), args.lr, args.seed),
            Run("rnnkit.torch", rnnkit.torch.convert(copy.deepcopy(base)), args.lr, args.seed)]

    say(f"text: {args.text_module} source, {len(text)} chars, vocabulary {len(chars)}; model: "
        f"{args.cell.upper()} {args.layers}x{args.hidden}, {args.dtype}; torch threads "
        f"{torch.get_num_threads()}, rnnkit threads {rnnkit.get_num_threads()} ({rnnkit.isa()})")
    say(f"{'epoch':>5} | {'train loss':^25} | {'val loss':^25} | {'seconds per epoch':^21}")
    say(f"{'':>5} | {'torch.nn':>12} {'rnnkit':>12} | {'torch.nn':>12} {'rnnkit':>12} | "
        f"{'torch.nn':>10} {'rnnkit':>10}")
    for epoch in range(args.epochs):
        batches = make_batches(train, args.seq_len, args.batch,
                               torch.Generator().manual_seed(args.seed * 1000 + epoch))
        # Alternate the runs each epoch so both meet the same machine load.
        for run in (runs if epoch % 2 == 0 else runs[::-1]):
            run.epoch(batches, val_x, val_y)
        a, b = runs
        say(f"{epoch + 1:>5} | {a.train_loss[-1]:>12.6f} {b.train_loss[-1]:>12.6f} | "
            f"{a.val_loss[-1]:>12.6f} {b.val_loss[-1]:>12.6f} | {a.seconds[-1]:>10.2f} {b.seconds[-1]:>10.2f}")

    a, b = runs
    diff = max(abs(x - y) / abs(x) for x, y in zip(a.train_loss + a.val_loss, b.train_loss + b.val_loss))
    say(f"largest relative difference between the loss curves: {diff:.2e}"
        + (" (float32 rounds differently in the two runs and training amplifies it; "
           "--dtype float64 agrees to ~1e-15)" if args.dtype == "float32" else ""))
    say(f"median seconds per epoch: torch.nn {sorted(a.seconds)[len(a.seconds) // 2]:.2f}, "
        f"rnnkit {sorted(b.seconds)[len(b.seconds) // 2]:.2f}")
    if args.sample:
        prompt = text[:1] if text[0] in stoi else chars[0]
        say("sample from the rnnkit model:\n" + sample(b.model, chars, stoi, prompt, args.sample,
                                                       torch.Generator().manual_seed(args.seed)))
    return {run.name: {"train_loss": run.train_loss, "val_loss": run.val_loss, "seconds": run.seconds,
                       "rnn": type(run.model.rnn)} for run in runs}


if __name__ == "__main__":
    main()
