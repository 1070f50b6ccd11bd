"""Greedy and beam-search decoding with cached keys and values (one position per step)."""

from __future__ import annotations

import torch
from torch import Tensor

from embtool.model import Cache, Seq2Seq
from embtool.training.data import BOS_ID, EOS_ID


def max_output_len(src_len: int, limit: int) -> int:
    """Output budget for a source of ``src_len`` tokens: 1.5·S + 10, within the model's positions."""
    return max(1, min(int(src_len * 1.5) + 10, limit - 1))


@torch.no_grad()
def greedy(model: Seq2Seq, src: Tensor, max_len: int) -> list[list[int]]:
    """src (B, S) → the argmax token ids of each row, up to ``max_len`` tokens, without <eos>."""
    B = src.shape[0]
    memory, mask = model.encode(src)  # (B, S, D)
    caches = model.new_caches()
    tok = torch.full((B, 1), BOS_ID, dtype=torch.long, device=src.device)  # (B, 1)
    out = torch.zeros(B, max_len, dtype=torch.long, device=src.device)  # (B, L)
    done = torch.zeros(B, dtype=torch.bool, device=src.device)  # (B,)
    steps = 0
    for t in range(max_len):
        logp = model.step(tok, t, memory, mask, caches)  # (B, V)
        nxt = logp.argmax(-1)  # (B,)
        nxt = torch.where(done, torch.full_like(nxt, EOS_ID), nxt)
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
    for cache in caches:
        for part in cache.values():
            for key in part:
                part[key] = part[key].index_select(0, index)


@torch.no_grad()
def beam_search(model: Seq2Seq, src: Tensor, max_len: int, k: int, alpha: float = 1.0) -> list[list[int]]:
    """src (B, S) → the best of ``k`` beams per row; scores are log-probability / length^alpha."""
    B = src.shape[0]
    V = model.cfg.tgt_vocab
    dev = src.device
    memory, mask = model.encode(src)  # (B, S, D)
    rep = torch.arange(B, device=dev).repeat_interleave(k)  # (B·k,) row of each beam
    memory = memory.index_select(0, rep)  # (B·k, S, D)
    mask = mask.index_select(0, rep) if mask is not None else None
    caches = model.new_caches()
    scores = torch.full((B, k), float("-inf"), device=dev)  # (B, k) summed log-probs
    scores[:, 0] = 0.0  # all beams start equal: keep one so the first step does not repeat
    tokens = torch.full((B * k, 1), BOS_ID, dtype=torch.long, device=dev)  # (B·k, t+1)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
    alive = torch.ones(B, k, dtype=torch.bool, device=dev)
    for t in range(max_len):
        logp = model.step(tokens[:, -1:], t, memory, mask, caches).view(B, k, V)  # (B, k, V)
        cand = (scores.unsqueeze(-1) + logp).view(B, k * V)  # (B, k·V)
        top, idx = cand.topk(2 * k, dim=-1)  # (B, 2k): room for beams that end here
        beam, word = idx // V, idx % V  # (B, 2k)
        new_scores = torch.full((B, k), float("-inf"), device=dev)
        new_src = torch.zeros(B, k, dtype=torch.long, device=dev)
        new_word = torch.full((B, k), EOS_ID, dtype=torch.long, device=dev)
        top_l, beam_l, word_l = top.tolist(), beam.tolist(), word.tolist()
        for b in range(B):
            j = 0
            for s, bm, w in zip(top_l[b], beam_l[b], word_l[b], strict=True):
                if s == float("-inf") or j == k:
                    break
                if w == EOS_ID or t == max_len - 1:
                    hyp = tokens[b * k + bm, 1:].tolist() + ([] if w == EOS_ID else [w])
                    finished[b].append((s / max(1, len(hyp) + 1) ** alpha, hyp))
                    continue
                new_scores[b, j], new_src[b, j], new_word[b, j] = s, bm, w
                j += 1
        # a row is done when its best finished hypothesis beats what its beams could still reach
        for b in range(B):
            if finished[b] and len(finished[b]) >= k:
                alive[b] = False
        new_scores[~alive] = float("-inf")
        if bool(torch.isinf(new_scores).all()):
            break
        index = (torch.arange(B, device=dev).unsqueeze(1) * k + new_src).view(-1)  # (B·k,)
        _reorder(caches, index)
        tokens = torch.cat([tokens.index_select(0, index), new_word.view(-1, 1)], dim=1)
        scores = new_scores
    out = []
    for b in range(B):
        if finished[b]:
            out.append(max(finished[b], key=lambda x: x[0])[1])
        else:
            out.append(tokens[b * k, 1:].tolist())
    return out


def decode(model: Seq2Seq, src: Tensor, max_len: int, beam: int = 1) -> list[list[int]]:
    if beam <= 1:
        return greedy(model, src, max_len)
    return beam_search(model, src, max_len, beam)
