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


@pytest.mark.parametrize(
    ("multiple", "S", "T"), [(1, 3, 3), (8, 8, 8)], ids=["to-the-longest", "to-multiples-of-8"]
)
def test_translation_batch_pads_and_finds_the_real_tokens(multiple, S, T):
    from embtool.training.batching import translation_batch
    from embtool.training.data import BOS_ID, EOS_ID, PAD_ID

    b = translation_batch([[5, 6, 7], [8]], [[9, 10], []], multiple)
    P, B, E = PAD_ID, BOS_ID, EOS_ID
    assert b.src.tolist() == [[5, 6, 7] + [P] * (S - 3), [8] + [P] * (S - 1)]
    assert b.tgt_in.tolist() == [[B, 9, 10] + [P] * (T - 3), [B] + [P] * (T - 1)]
    assert b.tgt_out.tolist() == [[9, 10, E] + [P] * (T - 3), [E] + [P] * (T - 1)]
    assert b.rows.tolist() == [0, 1, 2, T] and b.n_tokens == 4 and b.src_padded
    assert b.src.dtype == b.tgt_in.dtype == b.rows.dtype == torch.long


@pytest.mark.parametrize(("multiple", "padded"), [(1, False), (8, True)])
def test_equal_lengths_are_padded_only_to_a_multiple(multiple, padded):
    from embtool.training.batching import classification_batch, pad

    b = classification_batch([[4, 5], [6, 7]], [0, 1], multiple)
    assert b.src.shape == (2, 2 if multiple == 1 else 8) and b.src_padded is padded
    assert pad([], multiple=multiple).shape == (0, multiple) and pad([[]]).tolist() == [[0]]


def test_collation_makes_its_tensors_once_per_batch_not_per_row():
    """Issue 20.11: a batch is collated beside a GPU's launch-bound main thread; one tensor per row
    (and a Python loop for ``rows``) held the GIL. The torch calls a batch makes do not grow with its rows."""
    from torch.overrides import TorchFunctionMode

    from embtool.training.batching import translation_batch

    class Calls(TorchFunctionMode):
        n = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            Calls.n += 1
            return func(*args, **(kwargs or {}))

    counts = []
    for rows in (4, 256):
        src = [[5] * (i % 9 + 1) for i in range(rows)]
        tgt = [[6] * (i % 7 + 1) for i in range(rows)]
        Calls.n = 0
        with Calls():
            translation_batch(src, tgt, 8)
        counts.append(Calls.n)
    assert counts[0] == counts[1] <= 8
