"""Batches: random sentence batches and length-bucketed token batches cover every example once."""

from __future__ import annotations

import random

import pytest
import torch

from embtool.training.batching import make_batches


@pytest.mark.parametrize(("batch_size", "max_tokens"), [(4, 0), (64, 20), (3, 12)])
def test_batches_cover_every_example_once_within_limits(batch_size, max_tokens):
    lengths = [random.Random(i).randint(1, 10) for i in range(103)]
    batches = make_batches(lengths, batch_size, max_tokens, torch.Generator().manual_seed(0))
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(103))
    for b in batches:
        assert len(b) <= batch_size
        if max_tokens:
            assert len(b) * max(lengths[i] for i in b) <= max_tokens
    again = make_batches(lengths, batch_size, max_tokens, torch.Generator().manual_seed(0))
    assert again == batches


def test_max_tokens_buckets_by_length():
    rng = random.Random(0)
    lengths = [rng.randint(3, 40) for _ in range(2000)]
    batches = make_batches(lengths, 64, 64 * 40, torch.Generator().manual_seed(0))
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded < 1.1 * sum(lengths)


def test_sentence_batches_are_random():
    """Without --max-tokens a step is a random batch, as in the paper (bucketing slows early learning)."""
    batches = make_batches(list(range(100)), 16, 0, torch.Generator().manual_seed(0))
    order = torch.randperm(100, generator=torch.Generator().manual_seed(0)).tolist()
    assert batches == [order[i : i + 16] for i in range(0, 100, 16)]
