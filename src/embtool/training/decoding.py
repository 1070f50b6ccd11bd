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
    B = src.shape[0]
    V = model.cfg.tgt_vocab
    dev = src.device
    L, budget = _budgets(max_len, B, dev)  # L steps at most; (B,) each row's
    memory, mask = model.encode(src, padded)  # (B, S, D)
    rep = torch.arange(B, device=dev).repeat_interleave(k)  # (B·k,) row of each beam
    memory = memory.index_select(0, rep)  # (B·k, S, D)
    mask = mask.index_select(0, rep) if mask is not None else None
    caches = model.new_caches()
    scores = torch.full((B, k), float("-inf"), device=dev)  # (B, k) summed log-probs
    scores[:, 0] = 0.0  # all beams start equal: keep one so the first step does not repeat
    tokens = torch.full((B * k, 1), BOS_ID, dtype=torch.long, device=dev)  # (B·k, t+1)
    rows = torch.arange(B, device=dev)
    best = torch.full((B,), float("-inf"), dtype=torch.float64, device=dev)  # best finished, normalised
    best_tokens = torch.zeros(B, L, dtype=torch.long, device=dev)
    best_len = torch.zeros(B, dtype=torch.long, device=dev)
    n_finished = torch.zeros(B, dtype=torch.long, device=dev)
    alive = torch.ones(B, dtype=torch.bool, device=dev)
    for t in range(L):
        logp = model.step(tokens[:, -1:], t, memory, mask, caches).view(B, k, V)  # (B, k, V)
        cand = (scores.unsqueeze(-1) + logp).view(B, k * V)  # (B, k·V)
        top, idx = cand.topk(2 * k, dim=-1)  # (B, 2k), best first: room for beams that end here
        beam, word = idx // V, idx % V  # (B, 2k)
        valid = top > float("-inf")
        ends = (word == EOS_ID) | (budget[:, None] == t + 1)  # a row's last step ends every candidate
        live = valid & ~ends
        live_upto = live.long().cumsum(-1)  # live candidates up to and including each
        taken = live & (live_upto <= k)  # the first k live candidates fill the beams
        # a candidate is looked at while fewer than k beams are filled before it
        ending = valid & ends & (live_upto - live.long() < k)

        # finished hypotheses: each row's best this step (the first of equals), kept if it beats
        # the best so far (strictly: an earlier one wins a tie)
        length = t + (word != EOS_ID).long()  # hypothesis tokens, without <eos>
        norm = top.double() / (length + 1).double().clamp(min=1) ** alpha
        norm = norm.masked_fill(~ending, float("-inf"))
        pick = norm.argmax(-1)  # (B,): the first of the maxima
        step_best = norm.gather(1, pick[:, None]).squeeze(1)
        better = step_best > best
        parent = rows * k + beam.gather(1, pick[:, None]).squeeze(1)  # (B,)
        hyp = torch.cat([tokens.index_select(0, parent)[:, 1:], word.gather(1, pick[:, None])], dim=1)
        best_tokens[:, : t + 1] = torch.where(better[:, None], hyp, best_tokens[:, : t + 1])
        best_len = torch.where(better, length.gather(1, pick[:, None]).squeeze(1), best_len)
        best = torch.where(better, step_best, best)
        n_finished += ending.long().sum(-1)

        # the next beams: taken candidates in order; empty slots score -inf and say <eos>
        slot = torch.where(taken, live_upto - 1, torch.full_like(live_upto, k))  # k: not a slot
        new_scores = torch.full((B, k + 1), float("-inf"), device=dev).scatter(1, slot, top)[:, :k]
        new_src = torch.zeros(B, k + 1, dtype=torch.long, device=dev).scatter(1, slot, beam)[:, :k]
        new_word = torch.full((B, k + 1), EOS_ID, dtype=torch.long, device=dev).scatter(1, slot, word)[:, :k]
        # a row is done when it has k finished hypotheses
        alive &= n_finished < k
        new_scores = new_scores.masked_fill(~alive[:, None], float("-inf"))
        if bool(torch.isinf(new_scores).all()):
            break
        index = (rows[:, None] * k + new_src).reshape(-1)  # (B·k,)
        _reorder(caches, index)
        tokens = torch.cat([tokens.index_select(0, index), new_word.reshape(-1, 1)], dim=1)
        scores = new_scores
    first_beam = tokens.view(B, k, -1)[:, 0, 1:].tolist()
    found = (n_finished > 0).tolist()
    kept, lengths = best_tokens.tolist(), best_len.tolist()
    return [kept[b][: lengths[b]] if found[b] else first_beam[b] for b in range(B)]


def decode(
    model: Seq2Seq, src: Tensor, max_len: int | Sequence[int], beam: int = 1, padded: bool | None = None
) -> list[list[int]]:
    """src (B, S) → each row's hypothesis: greedy for ``beam`` 1, else beam search."""
    if beam <= 1:
        return greedy(model, src, max_len, padded)
    return beam_search(model, src, max_len, beam, padded=padded)
