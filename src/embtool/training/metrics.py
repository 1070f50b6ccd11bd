"""Scores: sacrebleu's corpus BLEU (with its signature) and classification accuracy."""

from __future__ import annotations

from collections.abc import Sequence


def bleu(hyps: Sequence[str], refs: Sequence[str]) -> tuple[float, str]:
    """Corpus BLEU of detokenized hypotheses against one reference each, and sacrebleu's signature."""
    from sacrebleu.metrics import BLEU

    metric = BLEU()
    score = metric.corpus_score(list(hyps), [list(refs)])
    return float(score.score), str(metric.get_signature())


def accuracy(predicted: Sequence[int], gold: Sequence[int]) -> float:
    """Share of ``predicted`` equal to ``gold``, in percent."""
    if not gold:
        return 0.0
    right = sum(int(p == g) for p, g in zip(predicted, gold, strict=True))
    return 100.0 * right / len(gold)
