"""Scores: BLEU is sacrebleu's (with its signature), accuracy in percent."""

from __future__ import annotations

import pytest

from embtool.training.metrics import accuracy, bleu


def test_bleu_is_sacrebleus_corpus_bleu() -> None:
    import sacrebleu

    hyps = ["a cat sat on the mat .", "the dog ran far away"]
    refs = ["a cat sat on a mat .", "the dog ran away"]
    score, signature = bleu(hyps, refs)
    assert score == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-12)
    assert signature.startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    assert bleu(refs, refs)[0] == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("pred", "gold", "acc"), [([1, 0, 1, 1], [1, 1, 1, 0], 50.0), ([2], [2], 100.0), ([], [], 0.0)]
)
def test_accuracy_in_percent(pred, gold, acc) -> None:
    assert accuracy(pred, gold) == acc


def test_accuracy_needs_one_prediction_per_example() -> None:
    with pytest.raises(ValueError):
        accuracy([1, 0], [1])
