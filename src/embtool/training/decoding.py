"""Greedy and beam-search decoding with cached keys and values (one position per step)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from embtool.model.transformer import Cache, Seq2Seq
from embtool.training.data import BOS_ID, EOS_ID


def max_output_len(src_len: int, limit: int) -> int:
    """Output budget for a source of ``src_len`` tokens: 1.5·S + 10, within the model's positions."""
    return max(1, min(int(src_len * 1.5) + 10, limit - 1))


def _budgets(max_len: int | Sequence[int], B: int, device: torch.device) -> tuple[int, Tensor]:
    """The steps to run (the longest budget) and each row's budget (B,): one for every row, or a
    row's own, so that a hypothesis never depends on the other sentences of its batch."""
    if isinstance(max_len, int):
        return max_len, torch.full((B,), max_len, dtype=torch.long, device=device)
    assert len(max_len) == B
    return max(max_len), torch.tensor(list(max_len), dtype=torch.long, device=device)


@torch.no_grad()
def greedy(
    model: Seq2Seq, src: Tensor, max_len: int | Sequence[int], padded: bool | None = None
) -> list[list[int]]:
    """src (B, S) → the argmax token ids of each row, up to ``max_len`` tokens (or a row's own
    budget, ``max_len[b]``), without <eos>. ``padded``: whether a row of ``src`` is padded, known on
    the host (None: asked of the device)."""
    B = src.shape[0]
    L, budget = _budgets(max_len, B, src.device)  # L steps at most; (B,)
    memory, mask = model.encode(src, padded)  # (B, S, D)
    caches = model.new_caches()
    tok = torch.full((B, 1), BOS_ID, dtype=torch.long, device=src.device)  # (B, 1)
    out = torch.zeros(B, L, dtype=torch.long, device=src.device)  # (B, L)
    done = torch.zeros(B, dtype=torch.bool, device=src.device)  # (B,)
    steps = 0
    for t in range(L):
        logp = model.step(tok, t, memory, mask, caches)  # (B, V)
        nxt = logp.argmax(-1)  # (B,)
        # a finished row, or one whose budget is spent, says <eos> (its hypothesis ends before it)
        nxt = torch.where(done | (budget <= t), torch.full_like(nxt, EOS_ID), nxt)
        out[:, t] = nxt
        steps = t + 1
        done |= nxt == EOS_ID
        if bool(done.all()):
            break
        tok = nxt.unsqueeze(1)
    return [_until_eos(row) for row in out[:, :steps].tolist()]


def _until_eos(ids: list[int]) -> list[int]:
    return ids[: ids.index(EOS_ID)] if EOS_ID in ids else ids


def _reorder(caches: list[Cache], index: Tensor) -> None:
    """Beams follow their parents: the self-attention caches are reordered. The cross-attention
    keys and values are the source's, the same for every beam of a row, and ``index`` never leaves
    a row: they stay as they are (no copy per step)."""
    for cache in caches:
        part = cache["self"]
        for key in part:
            part[key] = part[key].index_select(0, index)


class _Finished:
    """Each row's best finished hypothesis so far (its normalised score, tokens and length) and how
    many hypotheses the row has finished."""

    def __init__(self, B: int, L: int, dev: torch.device) -> None:
        self.score = torch.full((B,), float("-inf"), dtype=torch.float64, device=dev)  # (B,) normalised
        self.tokens = torch.zeros(B, L, dtype=torch.long, device=dev)  # (B, L)
        self.length = torch.zeros(B, dtype=torch.long, device=dev)  # (B,)
        self.count = torch.zeros(B, dtype=torch.long, device=dev)  # (B,)

    def add(self, t: int, cand: _Candidates, tokens: Tensor, first_beam: Tensor, alpha: float) -> None:
        """Step ``t``'s ending candidates: each row's best (the first of equals) is kept if it beats
        the best so far (strictly: an earlier one wins a tie). ``first_beam`` (B,): row b's beam 0."""
        length = t + (cand.word != EOS_ID).long()  # hypothesis tokens, without <eos>
        norm = cand.top.double() / (length + 1).double().clamp(min=1) ** alpha
        norm = norm.masked_fill(~cand.ending, float("-inf"))
        pick = norm.argmax(-1)[:, None]  # (B, 1): the first of the maxima
        step_best = norm.gather(1, pick).squeeze(1)
        better = step_best > self.score
        parent = first_beam + cand.beam.gather(1, pick).squeeze(1)  # (B,)
        hyp = torch.cat([tokens.index_select(0, parent)[:, 1:], cand.word.gather(1, pick)], dim=1)
        self.tokens[:, : t + 1] = torch.where(better[:, None], hyp, self.tokens[:, : t + 1])
        self.length = torch.where(better, length.gather(1, pick).squeeze(1), self.length)
        self.score = torch.where(better, step_best, self.score)
        self.count += cand.ending.long().sum(-1)


class _Candidates:
    """A step's 2k best continuations of each row (B, 2k), best first: room for beams that end here.
    A candidate that ends (<eos>, or the row's last step) is a finished hypothesis while fewer than
    k beams are filled before it; the first k live ones fill the next beams (``taken``)."""

    def __init__(self, cand: Tensor, k: int, V: int, last: Tensor) -> None:
        self.top, idx = cand.topk(2 * k, dim=-1)  # (B, 2k)
        self.beam, self.word = idx // V, idx % V  # (B, 2k)
        valid = self.top > float("-inf")
        ends = (self.word == EOS_ID) | last[:, None]  # a row's last step ends every candidate
        live = valid & ~ends
        self.live_upto = live.long().cumsum(-1)  # live candidates up to and including each
        self.taken = live & (self.live_upto <= k)
        self.ending = valid & ends & (self.live_upto - live.long() < k)

    def next_beams(self, k: int) -> tuple[Tensor, Tensor, Tensor]:
        """(scores, parent beam, word), each (B, k): the taken candidates in order; empty slots
        score -inf and say <eos>."""
        B, dev = self.top.shape[0], self.top.device
        slot = torch.where(self.taken, self.live_upto - 1, torch.full_like(self.live_upto, k))  # k: none
        scores = torch.full((B, k + 1), float("-inf"), device=dev).scatter(1, slot, self.top)[:, :k]
        parent = torch.zeros(B, k + 1, dtype=torch.long, device=dev).scatter(1, slot, self.beam)[:, :k]
        word = torch.full((B, k + 1), EOS_ID, dtype=torch.long, device=dev).scatter(1, slot, self.word)[:, :k]
        return scores, parent, word


@torch.no_grad()
def beam_search(
    model: Seq2Seq,
    src: Tensor,
    max_len: int | Sequence[int],
    k: int,
    alpha: float = 1.0,
    padded: bool | None = None,
) -> list[list[int]]:
    """src (B, S) → the best of ``k`` beams per row; scores are log-probability / length^alpha.

    Each step takes a row's 2k best candidates in order: one that ends (<eos>, or the last step)
    is a finished hypothesis, the others fill the k beams until they are full. A row stops when
    it has k finished hypotheses; its result is the first finished one with the best normalised
    score (or its first beam, if none finished). All on the device: one host sync a step
    (``max_len`` and ``padded`` as in ``greedy``).
    """
    B, V, dev = src.shape[0], model.cfg.tgt_vocab, src.device
    L, budget = _budgets(max_len, B, dev)  # L steps at most; (B,) each row's
    memory, mask = model.encode(src, padded)  # (B, S, D)
    rep = torch.arange(B, device=dev).repeat_interleave(k)  # (B·k,) row of each beam
    memory = memory.index_select(0, rep)  # (B·k, S, D)
    mask = mask.index_select(0, rep) if mask is not None else None
    caches = model.new_caches()
    scores = torch.full((B, k), float("-inf"), device=dev)  # (B, k) summed log-probs
    scores[:, 0] = 0.0  # all beams start equal: keep one so the first step does not repeat
    tokens = torch.full((B * k, 1), BOS_ID, dtype=torch.long, device=dev)  # (B·k, t+1)
    first_beam = torch.arange(B, device=dev) * k  # (B,)
    finished = _Finished(B, L, dev)
    alive = torch.ones(B, dtype=torch.bool, device=dev)
    for t in range(L):
        logp = model.step(tokens[:, -1:], t, memory, mask, caches).view(B, k, V)  # (B, k, V)
        cand = _Candidates((scores.unsqueeze(-1) + logp).view(B, k * V), k, V, budget == t + 1)
        finished.add(t, cand, tokens, first_beam, alpha)
        new_scores, parent, word = cand.next_beams(k)  # (B, k) each
        alive &= finished.count < k  # a row is done when it has k finished hypotheses
        new_scores = new_scores.masked_fill(~alive[:, None], float("-inf"))
        if bool(torch.isinf(new_scores).all()):
            break
        index = (first_beam[:, None] + parent).reshape(-1)  # (B·k,)
        _reorder(caches, index)
        tokens = torch.cat([tokens.index_select(0, index), word.reshape(-1, 1)], dim=1)
        scores = new_scores
    beams = tokens.view(B, k, -1)[:, 0, 1:].tolist()
    found = (finished.count > 0).tolist()
    kept, lengths = finished.tokens.tolist(), finished.length.tolist()
    return [kept[b][: lengths[b]] if found[b] else beams[b] for b in range(B)]


def decode(
    model: Seq2Seq, src: Tensor, max_len: int | Sequence[int], beam: int = 1, padded: bool | None = None
) -> list[list[int]]:
    """src (B, S) → each row's hypothesis: greedy for ``beam`` 1, else beam search."""
    if beam <= 1:
        return greedy(model, src, max_len, padded)
    return beam_search(model, src, max_len, beam, padded=padded)
