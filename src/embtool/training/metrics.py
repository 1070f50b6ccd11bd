"""Scores: sacrebleu's corpus BLEU (with its signature) and classification accuracy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def bleu(hyps: Sequence[str], refs: Sequence[str], lowercase: bool = False) -> tuple[float, str]:
    """Corpus BLEU of detokenized hypotheses against one original reference each (sacrebleu's 13a
    tokenizer), and sacrebleu's signature. ``lowercase``: sacrebleu's own case-insensitive BLEU
    (``case:lc``), for a model trained on lower-cased text: the references stay as written."""
    from sacrebleu.metrics import BLEU

    metric = BLEU(lowercase=lowercase)
    score = metric.corpus_score(list(hyps), [list(refs)])
    return float(score.score), str(metric.get_signature())


def accuracy(predicted: Sequence[int], gold: Sequence[int]) -> float:
    """Share of ``predicted`` equal to ``gold``, in percent."""
    if not gold:
        return 0.0
    right = sum(int(p == g) for p, g in zip(predicted, gold, strict=True))
    return 100.0 * right / len(gold)


def bleu_tokenized(hyps: Sequence[str], refs: Sequence[str]) -> tuple[float, str]:
    """Corpus BLEU of space-joined vocabulary tokens, lower-cased, with no further tokenization
    (sacrebleu ``tokenize='none'``, ``lowercase=True``): the tokenized BLEU of the tutorial
    pipelines the paper built on (torchtext's ``bleu_score`` on spaCy tokens). Its signature."""
    from sacrebleu.metrics import BLEU

    metric = BLEU(tokenize="none", lowercase=True, force=True)  # tokenized on purpose: no warning
    score = metric.corpus_score(list(hyps), [list(refs)])
    return float(score.score), str(metric.get_signature())


def _best(lines: Sequence[dict[str, Any]], key: str) -> dict[str, Any]:
    """The first epoch's line with the highest ``key``."""
    return max(lines, key=lambda x: (float(x[key]), -int(x["epoch"])))


def classification_result(lines: Sequence[dict[str, Any]], lowest_loss_epoch: int) -> dict[str, Any]:
    """§5's selection: the highest validation accuracy and its epoch (MNLI: matched and mismatched,
    each at its own best epoch); the accuracy at the lowest-validation-loss epoch beside it."""
    best = _best(lines, "val_acc")
    result: dict[str, Any] = {
        "selection": "highest validation accuracy (§5)",
        "best_val_acc": best["val_acc"],
        "best_epoch": best["epoch"],
    }
    if "val_acc_mismatched" in best:
        other = _best(lines, "val_acc_mismatched")
        result.update(
            best_val_acc_mismatched=other["val_acc_mismatched"], best_epoch_mismatched=other["epoch"]
        )
    at = next(x for x in lines if x["epoch"] == lowest_loss_epoch)
    result["at_lowest_val_loss"] = {
        "epoch": lowest_loss_epoch,
        "val_loss": at["val_loss"],
        **{k: at[k] for k in ("val_acc", "val_acc_mismatched") if k in at},
    }
    return result
