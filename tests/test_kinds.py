"""The two kinds of task as objects: each one's batching facts on tiny inline examples, its
special tokens and sizes, and the lookup from the task's registry record."""

from __future__ import annotations

import pytest
import torch

from embtool.core.errors import BadInput
from embtool.model.transformer import ModelConfig
from embtool.training.config import TrainConfig
from embtool.training.data import BOS_ID, CLS, EOS_ID, SEP, SPECIALS
from embtool.training.kinds import CLASSIFICATION, KINDS, TRANSLATION, kind_of

PAIRS = [([5, 6, 7], [8, 9]), ([5], [8, 9, 10, 11]), ([4, 4], [])]  # (source ids, target ids)
LABELLED = [([5, 6, 7], 1), ([5], 0), ([4, 4], 1)]  # (source ids, label)

# kind, examples, (padded length per example), (scored units, tokens) of the whole set,
# (source lengths, target lengths) for micro-batches
CASES = {
    "translation: the longer side, the target with <eos>": (
        TRANSLATION, PAIRS, [3, 5, 2], (9, 9), ({0: 3, 1: 1, 2: 2}, {0: 3, 1: 5, 2: 1})),
    "classification: the source; examples and source tokens": (
        CLASSIFICATION, LABELLED, [3, 1, 2], (3, 6), ({0: 3, 1: 1, 2: 2}, {0: 0, 1: 0, 2: 0})),
}  # fmt: skip


@pytest.mark.parametrize(("kind", "examples", "lengths", "units", "parts"), CASES.values(), ids=CASES)
def test_a_kinds_batching_facts(kind, examples, lengths, units, parts) -> None:
    index = list(range(len(examples)))
    assert kind.lengths(examples)[0] == lengths
    assert kind.units(examples, index) == units
    assert kind.part_lengths(examples, index) == parts
    batch = kind.collate(examples, index, multiple=4)
    assert batch.src.shape == (3, 4) and batch.units == units[0]


def test_translation_collates_shifted_targets_and_classification_labels() -> None:
    batch = TRANSLATION.collate(PAIRS, [0])
    assert batch.tgt_in is not None and batch.tgt_out is not None and batch.labels is None
    assert batch.tgt_in.tolist() == [[BOS_ID, 8, 9]] and batch.tgt_out.tolist() == [[8, 9, EOS_ID]]
    batch = CLASSIFICATION.collate(LABELLED, [2, 0])
    assert batch.tgt_in is None and torch.equal(batch.labels, torch.tensor([1, 1]))


def test_evaluation_batches_are_one_sorted_pass() -> None:
    cfg = TrainConfig(task="multi30k", batch_size=2)
    assert TRANSLATION.batches(PAIRS, cfg, None) == [[2, 0], [1]]  # sorted by padded length
    assert CLASSIFICATION.batches(LABELLED, cfg, None, batch_size=1) == [[1], [2], [0]]


SPECIALS_CASES = {
    "translation": ("multi30k", "mean", SPECIALS),
    "one sentence": ("sst2", "mean", SPECIALS),
    "a pair: <sep>": ("mnli", "mean", (*SPECIALS, SEP)),
    "--pool first: <cls>": ("sst2", "first", (*SPECIALS, CLS)),
    "a pair, --pool first": ("mnli", "first", (*SPECIALS, SEP, CLS)),
}


@pytest.mark.parametrize(("task", "pool", "want"), SPECIALS_CASES.values(), ids=SPECIALS_CASES)
def test_source_specials(task, pool, want) -> None:
    cfg = TrainConfig(task=task, pool=pool)
    assert kind_of(cfg).source_specials(cfg) == want


def test_sizes_that_depend_on_the_kind() -> None:
    mc = ModelConfig(enc_layers=2, dec_layers=3)
    assert (TRANSLATION.layers(mc), CLASSIFICATION.layers(mc)) == (5, 2)
    assert (TRANSLATION.sides, CLASSIFICATION.sides) == (("src", "tgt"), ("src",))
    assert TRANSLATION.decoder and not CLASSIFICATION.decoder


def test_the_kind_is_looked_up_from_the_registry_record() -> None:
    assert kind_of(TrainConfig(task="multi30k")) is TRANSLATION
    assert kind_of(TrainConfig(task="mnli")) is CLASSIFICATION
    assert kind_of("classification") is CLASSIFICATION and set(KINDS) == {"translation", "classification"}
    with pytest.raises(
        BadInput, match=r"unknown task kind 'tagging'; valid choices: \['translation', 'classification'\]"
    ):
        kind_of("tagging")
