"""Greedy and beam decoding: beam 1 equals greedy, on a trained model."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from embtool.training.decoding import beam_search, greedy


def test_beam_one_equals_greedy_and_beam_runs(reverse_run):
    from embtool.model.transformer import ModelConfig, Seq2Seq
    from embtool.training.checkpoint import load_weights, read_weights_meta

    meta = read_weights_meta(reverse_run / "best.safetensors")
    model = Seq2Seq(ModelConfig.from_dict(meta["model"]))
    load_weights(model, reverse_run / "best.safetensors")
    model.eval()
    src = torch.tensor([[5, 6, 7, 8, 3], [9, 10, 3, 0, 0]])
    g = greedy(model, src, 12)
    assert beam_search(model, src, 12, k=1) == g
    b = beam_search(model, src, 12, k=4)
    assert len(b) == 2 and all(isinstance(t, int) for h in b for t in h)


# ----------------------------------------------------------------------------- the reference beam search
# The Python-loop beam search the vectorised one replaced (embtool before issue 13), kept to check
# that the outputs are the same.

from embtool.model.transformer import Cache, Seq2Seq  # noqa: E402
from embtool.training.data import BOS_ID, EOS_ID  # noqa: E402


def _reorder_all(caches: list[Cache], index: Tensor) -> None:
    for cache in caches:
        for part in cache.values():
            for key in part:
                part[key] = part[key].index_select(0, index)


@torch.no_grad()
def reference_beam_search(
    model: Seq2Seq, src: Tensor, max_len: int, k: int, alpha: float = 1.0
) -> list[list[int]]:
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
        _reorder_all(caches, index)
        tokens = torch.cat([tokens.index_select(0, index), new_word.view(-1, 1)], dim=1)
        scores = new_scores
    out = []
    for b in range(B):
        if finished[b]:
            out.append(max(finished[b], key=lambda x: x[0])[1])
        else:
            out.append(tokens[b * k, 1:].tolist())
    return out


@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("max_len", [3, 12])
def test_vectorised_beam_search_gives_the_reference_outputs(reverse_run, k, max_len):
    from embtool.model.transformer import ModelConfig
    from embtool.training.checkpoint import load_weights, read_weights_meta

    meta = read_weights_meta(reverse_run / "best.safetensors")
    trained = Seq2Seq(ModelConfig.from_dict(meta["model"]))
    load_weights(trained, reverse_run / "best.safetensors")
    torch.manual_seed(1)
    untrained = Seq2Seq(ModelConfig.from_dict(meta["model"]))  # flat distributions: many close scores
    g = torch.Generator().manual_seed(k * 100 + max_len)
    for model in (trained, untrained):
        model.eval()
        lengths = torch.randint(1, 9, (16,), generator=g)
        src = torch.zeros(16, 9, dtype=torch.long)
        for i, n in enumerate(lengths.tolist()):
            src[i, :n] = torch.randint(4, 14, (n,), generator=g)
            src[i, n - 1] = EOS_ID
        assert beam_search(model, src, max_len, k) == reference_beam_search(model, src, max_len, k)


# ----------------------------------------------------------------------------- budgets per row, and the device


def _untrained(d_model: int = 16, heads: int = 2) -> Seq2Seq:
    from embtool.model.transformer import ModelConfig

    torch.manual_seed(0)
    cfg = ModelConfig(src_vocab=20, tgt_vocab=20, d_model=d_model, n_heads=heads, n_layers=1, d_ff=32)
    return Seq2Seq(cfg).eval()


@pytest.mark.parametrize("beam", [1, 3])
def test_a_row_budget_decodes_the_row_as_if_alone(beam):
    """One budget per row: each row's hypothesis is the one it gets alone, whatever its batch."""
    from embtool.training.decoding import decode

    model = _untrained()
    g = torch.Generator().manual_seed(0)
    lengths, budgets = [6, 2, 4, 1, 6], [7, 2, 12, 1, 5]
    src = torch.zeros(5, 6, dtype=torch.long)  # (B, S), padded
    for i, n in enumerate(lengths):
        src[i, :n] = torch.randint(4, 20, (n,), generator=g)
    got = decode(model, src, budgets, beam, padded=True)
    alone = [decode(model, src[i : i + 1, :n], budgets[i], beam)[0] for i, n in enumerate(lengths)]
    assert got == alone
    assert all(len(h) <= n for h, n in zip(got, budgets, strict=True))
    assert decode(model, src, 7, beam) != got  # one budget for all: the 2s and 12 are cut or kept at 7


@pytest.mark.parametrize("beam", [1, 4])
def test_decoding_stays_on_the_device_and_reads_once_a_step(beam):
    """On meta (a GPU's stand-in; D = 300 over 10 heads, padded to 32): nothing is made on the CPU
    beside the model's tensors, and the host reads the device once a step, then the results."""
    from conftest import meta_only
    from embtool.training.decoding import decode

    model = _untrained(d_model=300, heads=10).to("meta")
    src = torch.randint(4, 20, (3, 5), device="meta")
    with meta_only() as mode:
        hyps = decode(model, src, [4, 6, 5], beam, padded=True)
    assert len(hyps) == 3
    steps = mode.reads.count("item")  # meta reads as "not finished": every step runs
    assert steps == 6 and set(mode.reads) == {"item", "to_cpu"}
