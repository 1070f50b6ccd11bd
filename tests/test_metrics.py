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


def test_lowercase_bleu_is_sacrebleus_own_case_insensitive_bleu_on_the_original_references() -> None:
    """A lower-cased model is scored by sacrebleu's lowercase=True against the references as written:
    its signature says case:lc (issue 25), where lower-casing the references first said case:mixed."""
    from sacrebleu.metrics import BLEU

    hyps = ["two dogs run in the park .", "a man in a red shirt"]
    refs = ["Two dogs run in the Park .", "A man in a red shirt sings"]
    score, signature = bleu(hyps, refs, lowercase=True)
    assert score == pytest.approx(BLEU(lowercase=True).corpus_score(hyps, [refs]).score, abs=1e-12)
    assert signature.startswith("nrefs:1|case:lc|eff:no|tok:13a|")
    assert bleu(hyps, refs)[0] < score  # cased, "Two" ≠ "two": the case counts


@pytest.mark.parametrize(
    ("pred", "gold", "acc"), [([1, 0, 1, 1], [1, 1, 1, 0], 50.0), ([2], [2], 100.0), ([], [], 0.0)]
)
def test_accuracy_in_percent(pred, gold, acc) -> None:
    assert accuracy(pred, gold) == acc


def test_accuracy_needs_one_prediction_per_example() -> None:
    with pytest.raises(ValueError):
        accuracy([1, 0], [1])


def test_tokenized_bleu_is_sacrebleus_with_no_tokenizer_lower_cased() -> None:
    from sacrebleu.metrics import BLEU

    from embtool.training.metrics import bleu_tokenized

    hyps, refs = ["a dog runs .", "Two men sit"], ["a dog runs .", "two men sit ."]
    score, sig = bleu_tokenized(hyps, refs)
    assert score == pytest.approx(BLEU(tokenize="none", lowercase=True).corpus_score(hyps, [refs]).score)
    assert "tok:none" in sig and "case:lc" in sig


# (epoch, val_loss, val_acc, val_acc_mismatched): the lowest loss at epoch 2, the best accuracies later
CURVE = [(1, 1.0, 60.0, 59.0), (2, 0.5, 70.0, 72.0), (3, 0.7, 75.0, 71.0), (4, 0.9, 74.0, 73.0)]


def test_classification_result_is_the_highest_accuracy_and_its_epoch() -> None:
    from embtool.training.metrics import classification_result

    lines = [{"epoch": e, "val_loss": v, "val_acc": a} for e, v, a, _ in CURVE]
    result = classification_result(lines, lowest_loss_epoch=2)
    assert (result["best_val_acc"], result["best_epoch"]) == (75.0, 3)  # §5: not the lowest-loss epoch
    assert result["at_lowest_val_loss"] == {"epoch": 2, "val_loss": 0.5, "val_acc": 70.0}
    assert "best_val_acc_mismatched" not in result


def test_mnli_matched_and_mismatched_each_at_their_own_best_epoch() -> None:
    from embtool.training.metrics import classification_result

    lines = [{"epoch": e, "val_loss": v, "val_acc": a, "val_acc_mismatched": m} for e, v, a, m in CURVE]
    result = classification_result(lines, lowest_loss_epoch=2)
    assert (result["best_val_acc"], result["best_epoch"]) == (75.0, 3)
    assert (result["best_val_acc_mismatched"], result["best_epoch_mismatched"]) == (73.0, 4)
    assert result["at_lowest_val_loss"]["val_acc_mismatched"] == 72.0


def test_tokenized_bleu_does_not_warn_about_tokenized_input(caplog) -> None:
    from embtool.training.metrics import bleu_tokenized

    with caplog.at_level("WARNING"):
        bleu_tokenized(["a dog runs ."] * 200, ["a dog runs ."] * 200)
    assert "detokenize" not in caplog.text
