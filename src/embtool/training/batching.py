"""Batches: which examples make a step, and how a step is cut so that it is mostly tokens.

Training with a sentence count (``--batch-size``, the paper's Table 5): each step is a random
batch, as in the paper and in a plain ``nn.Transformer`` loop, so the optimisation is theirs. The
step then runs, on a CPU, as micro-batches of similar lengths (``embtool.training.cpu``): their gradients add up to
the whole batch's, and padding drops from ~110% of the real tokens on Multi30k to ~10%.
Training with ``--max-tokens``: length-bucketed batches by padded-token count (fairseq's way):
shuffle, sort by length inside pools of ~100 batches, cut at the budget, shuffle the batch order.
(Bucketing every batch is faster still, but its batches of one length slow early learning: on
Multi30k the validation loss after 40 steps was 5.01 against 4.80 with random batches.)
Evaluation: one sort over the whole split, no shuffling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from embtool.training.data import BOS_ID, EOS_ID, PAD_ID

POOL_BATCHES = 100  # batches per sorting pool: enough to bucket well, few enough to stay random
# Compiled or on CUDA, lengths are padded to multiples of this: a few lengths, and padding masks
# aligned as the fused attention kernels want them (a CPU without --compile pads to the longest).
PAD_MULTIPLE = 8


def make_batches(
    lengths: Sequence[int],
    batch_size: int,
    max_tokens: int = 0,
    generator: torch.Generator | None = None,
    keys: Sequence[Any] | None = None,
) -> list[list[int]]:
    """Index lists, one per batch. ``lengths[i]`` is example i's padded length (max of its sides).

    With ``generator`` and no ``max_tokens``: random batches of ``batch_size`` (training).
    With ``max_tokens``: length-bucketed batches of at most ``batch_size`` examples and
    ``max_tokens`` padded tokens; ``keys[i]`` orders examples inside a pool (default: ``lengths``),
    random pools and batch order with ``generator``. Without either: one sorted pass (evaluation).
    """
    n = len(lengths)
    if n == 0:
        return []
    if generator is not None and not max_tokens:
        order = torch.randperm(n, generator=generator).tolist()
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    order_key = keys if keys is not None else lengths
    if generator is not None:
        order = torch.randperm(n, generator=generator).tolist()
        pool = batch_size * POOL_BATCHES
        pools = [order[i : i + pool] for i in range(0, n, pool)]
    else:
        pools = [list(range(n))]
    batches: list[list[int]] = []
    for p in pools:
        p.sort(key=lambda i: order_key[i])  # stable: equal keys keep their random order
        batch: list[int] = []
        longest = 0
        for i in p:
            new_longest = max(longest, lengths[i])
            full = len(batch) >= batch_size or (max_tokens and new_longest * (len(batch) + 1) > max_tokens)
            if batch and full:
                batches.append(batch)
                batch, new_longest = [], lengths[i]
            batch.append(i)
            longest = new_longest
        if batch:
            batches.append(batch)
    if generator is not None:
        perm = torch.randperm(len(batches), generator=generator).tolist()
        batches = [batches[i] for i in perm]
    return batches


def _width(lengths: Sequence[int], multiple: int = 1) -> int:
    """The padded length of sequences of ``lengths``: the longest (at least 1), rounded up to ``multiple``."""
    longest = max(max(lengths, default=1), 1)
    return -(-longest // multiple) * multiple


def pad(seqs: Sequence[Sequence[int]], pad_id: int = PAD_ID, multiple: int = 1) -> Tensor:
    """(B, T) int64 tensor of the sequences, right-padded to ``_width(…, multiple)``.

    One flat list and one array for the batch: a batch is collated beside a GPU's launch-bound main
    thread (``epoch.ahead``), and a tensor per row held the GIL ~7× as long (128 pairs: 3.4 ms, not 0.45).
    """
    T = _width([len(s) for s in seqs], multiple)
    flat: list[int] = []
    for s in seqs:
        flat += s
        flat += [pad_id] * (T - len(s))
    return torch.from_numpy(np.array(flat, dtype=np.int64).reshape(len(seqs), T))  # (B, T)


@dataclass
class Batch:
    src: Tensor  # (B, S) encoder input ids
    tgt_in: Tensor | None = None  # (B, T) decoder input: <bos> y
    tgt_out: Tensor | None = None  # (B, T) decoder target: y <eos>
    labels: Tensor | None = None  # (B,) classes
    n_tokens: int = 0  # real target tokens (translation) or source tokens (classification)
    rows: Tensor | None = None  # (n,) flat (B·T) positions of the real target tokens (translation)
    src_padded: bool = True  # whether any source row is padded (known here, asked nowhere else)

    @property
    def units(self) -> int:
        """What the loss is averaged over: target tokens (translation) or examples (classification)."""
        return self.n_tokens if self.labels is None else len(self.labels)

    def to(self, device: torch.device, non_blocking: bool = False) -> Batch:
        def move(t: Tensor | None) -> Tensor | None:
            if t is None:
                return None
            if non_blocking:
                t = t.pin_memory()
            return t.to(device, non_blocking=non_blocking)

        src = move(self.src)
        assert src is not None
        return Batch(
            src,
            move(self.tgt_in),
            move(self.tgt_out),
            move(self.labels),
            self.n_tokens,
            move(self.rows),
            self.src_padded,
        )


def _padded(seqs: Sequence[Sequence[int]], T: int) -> bool:
    return any(len(s) < T for s in seqs)


def translation_batch(src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]], multiple: int = 1) -> Batch:
    """Source, ``<bos> y`` and ``y <eos>``, each padded to ``_width(…, multiple)``; ``rows`` from the lengths."""
    lengths = np.array([len(t) + 1 for t in tgt], dtype=np.int64)  # (B,) y and <bos> (or <eos>)
    tgt_in = pad([[BOS_ID, *t] for t in tgt], multiple=multiple)  # (B, T)
    tgt_out = pad([[*t, EOS_ID] for t in tgt], multiple=multiple)  # (B, T)
    keep = np.arange(tgt_out.shape[1]) < lengths[:, None]  # (B, T) the real target tokens
    rows = torch.from_numpy(np.flatnonzero(keep).astype(np.int64))  # (n,) flat B·T positions
    src_ids = pad(src, multiple=multiple)  # (B, S)
    n = int(lengths.sum())
    return Batch(src_ids, tgt_in, tgt_out, n_tokens=n, rows=rows, src_padded=_padded(src, src_ids.shape[1]))


def classification_batch(src: Sequence[Sequence[int]], labels: Sequence[int], multiple: int = 1) -> Batch:
    src_ids = pad(src, multiple=multiple)  # (B, S)
    return Batch(
        src_ids,
        labels=torch.tensor(list(labels), dtype=torch.long),
        n_tokens=sum(len(s) for s in src),
        src_padded=_padded(src, src_ids.shape[1]),
    )
