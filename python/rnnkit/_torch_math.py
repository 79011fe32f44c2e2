"""Stacked (bi)directional LSTM/GRU written in plain torch operations.

rnnkit.torch runs this where its kernels cannot be used but a result is
still owed: the second derivative (a backward asked to build a graph of
the gradient recomputes the forward here and lets autograd differentiate
it), and ``GRU(linear_before_reset=False)`` wherever torch has to see the
operations (tracing, export, torch.func transforms, fake tensors, other
devices and dtypes) since torch.nn has no such GRU to run instead.

Conventions are rnnkit.layers.rnn_forward's: x is (T, B, I) time-major, or
the (N, I) rows of a PackedSequence with ``batch_sizes``; states are
(num_layers * D, B, H) in the packed (sorted) order; weights are torch's
``_flat_weights`` order (w_ih, w_hh[, b_ih, b_hh] per layer and direction).
Importing this module imports torch.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import torch
import torch.nn.functional as F


def _lstm_step(gi, h, c, w_hh, b_hh, lbr):
    i, f, g, o = (gi + F.linear(h, w_hh, b_hh)).chunk(4, 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _gru_step(gi, h, c, w_hh, b_hh, lbr):
    gi_r, gi_z, gi_n = gi.chunk(3, 1)
    if lbr:
        gh_r, gh_z, gh_n = F.linear(h, w_hh, b_hh).chunk(3, 1)
        r, z = torch.sigmoid(gi_r + gh_r), torch.sigmoid(gi_z + gh_z)
        n = torch.tanh(gi_n + r * gh_n)
    else:
        # Cho et al. 2014: the reset gate scales h before its product with W_hn.
        H = h.shape[-1]
        b_rz, b_n = (None, None) if b_hh is None else (b_hh[:2 * H], b_hh[2 * H:])
        gh_r, gh_z = F.linear(h, w_hh[:2 * H], b_rz).chunk(2, 1)
        r, z = torch.sigmoid(gi_r + gh_r), torch.sigmoid(gi_z + gh_z)
        n = torch.tanh(gi_n + F.linear(r * h, w_hh[2 * H:], b_n))
    return (1 - z) * n + z * h, c


def _direction(step, x_rows, batch_sizes: Sequence[int], h0, c0, w, lbr: bool, reverse: bool):
    """One layer, one direction over packed rows; returns (rows, h_n, c_n)."""
    w_ih, w_hh = w[0], w[1]
    b_ih, b_hh = (w[2], w[3]) if len(w) == 4 else (None, None)
    gi_all = F.linear(x_rows, w_ih, b_ih)
    starts = [0]
    for b in batch_sizes[:-1]:
        starts.append(starts[-1] + b)
    steps = range(len(batch_sizes) - 1, -1, -1) if reverse else range(len(batch_sizes))
    outs = [None] * len(batch_sizes)
    if reverse:
        # Each sequence starts at its own last step: rows join as t goes down.
        h, c, rows = h0[:0], (None if c0 is None else c0[:0]), 0
        for t in steps:
            b = batch_sizes[t]
            if b > rows:
                h = torch.cat([h, h0[rows:b]])
                c = None if c0 is None else torch.cat([c, c0[rows:b]])
                rows = b
            h, c = step(gi_all[starts[t]:starts[t] + b], h, c, w_hh, b_hh, lbr)
            outs[t] = h
        return torch.cat(outs), h, c
    # Forward: a sequence that ends leaves its final state behind.
    h, c, done_h, done_c = h0, c0, [], []
    for t in steps:
        b = batch_sizes[t]
        if b < h.shape[0]:
            done_h.append(h[b:])
            h = h[:b]
            if c is not None:
                done_c.append(c[b:])
                c = c[:b]
        h, c = step(gi_all[starts[t]:starts[t] + b], h, c, w_hh, b_hh, lbr)
        outs[t] = h
    h_n = torch.cat([h] + done_h[::-1])
    c_n = None if c is None else torch.cat([c] + done_c[::-1])
    return torch.cat(outs), h_n, c_n


def rnn(mode: str, x, batch_sizes: Optional[Sequence[int]], h0, c0, weights: Sequence[torch.Tensor], *,
        num_layers: int, bidirectional: bool, hidden_size: int, linear_before_reset: bool = True,
        dropout: Callable[[int, torch.Tensor], torch.Tensor] = lambda layer, t: t):
    """(y, h_n, c_n) of a stacked LSTM/GRU; c_n is None for the GRU.

    h0/c0 None means zeros. ``dropout(layer, output)`` is applied to the
    output of every layer but the last (the identity by default).
    """
    dirs = 2 if bidirectional else 1
    dense = batch_sizes is None
    T, B = (x.shape[0], x.shape[1]) if dense else (len(batch_sizes), int(batch_sizes[0]))
    sizes = [B] * T if dense else [int(b) for b in batch_sizes]
    rows = x.reshape(-1, x.shape[-1]) if dense else x
    zeros = x.new_zeros(num_layers * dirs, B, hidden_size)
    h0 = zeros if h0 is None else h0
    if mode == "LSTM":
        c0, step = (zeros if c0 is None else c0), _lstm_step
    else:
        c0, step = None, _gru_step
    per = len(weights) // (num_layers * dirs)
    h_n: List[torch.Tensor] = []
    c_n: List[torch.Tensor] = []
    for layer in range(num_layers):
        outs = []
        for d in range(dirs):
            k = layer * dirs + d
            out, h, c = _direction(step, rows, sizes, h0[k], None if c0 is None else c0[k],
                                   weights[k * per:(k + 1) * per], linear_before_reset, reverse=bool(d))
            outs.append(out)
            h_n.append(h)
            if c is not None:
                c_n.append(c)
        rows = outs[0] if dirs == 1 else torch.cat(outs, dim=-1)
        if layer < num_layers - 1:
            rows = dropout(layer, rows)
    y = rows.reshape(T, B, -1) if dense else rows
    return y, torch.stack(h_n), (torch.stack(c_n) if c_n else None)
