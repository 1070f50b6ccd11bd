"""A run's evaluations: the loss and the decoded hypotheses of a split, validation each epoch (loss,
BLEU or accuracy) and the final test; ``test_result`` reads the run (``loop.Run``) it is given.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from embtool.model import Classifier, Seq2Seq
from embtool.training import checkpoint as ckpt
from embtool.training.batching import make_batches
from embtool.training.config import TrainConfig
from embtool.training.data import SPECIALS, detokenizer
from embtool.training.decoding import decode, max_output_len
from embtool.training.epoch import Examples, _autocast, _loss, batches_of, collate
from embtool.training.metrics import accuracy, bleu, bleu_tokenized, classification_result
from embtool.training.runfolder import BEST
from embtool.training.setup import Prepared, tokenize


def validate(
    model: Seq2Seq | Classifier, prep: Prepared, cfg: TrainConfig, device: torch.device, amp: str
) -> dict[str, Any]:
    if cfg.kind == "translation":
        assert isinstance(model, Seq2Seq) and prep.tgt is not None
        val_loss, _ = eval_loss(model, prep.val, "translation", cfg, device, amp)
        hyps = detok_all(translate(model, prep.val, cfg, device, amp), prep.tgt.vocab, prep.tgt.tokenizer)
        score, _ = bleu(hyps, _refs(prep.val_refs, prep.tgt.lower))
        return {"val_loss": val_loss, "val_bleu": score}
    val_loss, preds = eval_loss(model, prep.val, "classification", cfg, device, amp)
    out: dict[str, Any] = {"val_loss": val_loss, "val_acc": accuracy(preds, [int(y) for _, y in prep.val])}
    for name, examples in prep.extra_val.items():
        _, p = eval_loss(model, examples, "classification", cfg, device, amp)
        out[f"val_acc_{name}"] = accuracy(p, [int(y) for _, y in examples])
    return out


def _refs(refs: list[str], lower: bool) -> list[str]:
    return [r.lower() for r in refs] if lower else refs


def test_result(run: Any) -> dict[str, Any]:
    """Decode the test split with the best model (translation), or report the best validation accuracy."""
    model, prep, cfg, lines, best_epoch = run.model, run.prep, run.cfg, run.lines, run.best_epoch
    device, amp = run.device, run.amp
    if cfg.kind == "classification":
        result: dict[str, Any] = classification_result(lines, best_epoch)  # §5's selection
    else:
        assert isinstance(model, Seq2Seq) and prep.tgt is not None
        ckpt.load_weights(model, run.folder.file(BEST))
        ids = translate(model, prep.test, cfg, device, amp, beam=cfg.beam)
        hyps = detok_all(ids, prep.tgt.vocab, prep.tgt.tokenizer)
        run.folder.write_hyps(hyps)
        score, signature = bleu(hyps, _refs(prep.test_refs, prep.tgt.lower))
        # the tokenized, lower-cased BLEU on the vocabulary's tokens (tutorial pipelines' convention)
        tok_hyps = [" ".join(t) for t in tokens_all(ids, prep.tgt.vocab)]
        tok_refs = [" ".join(t) for t in tokenize(prep.tgt.tokenizer, prep.test_refs)]
        score_tok, signature_tok = bleu_tokenized(tok_hyps, tok_refs)
        result = {
            "bleu": score,
            "signature": signature,
            "bleu_tok": score_tok,
            "signature_tok": signature_tok,
            "best_epoch": best_epoch,
            "split": prep.test_name,
            "beam": cfg.beam,
        }
    return result


@torch.no_grad()
def eval_loss(
    model: torch.nn.Module, examples: Examples, kind: str, cfg: TrainConfig, device: torch.device, amp: str
) -> tuple[float, list[int]]:
    """Mean loss per scored unit; for classification also the predicted classes (in order)."""
    model.eval()
    total, units = 0.0, 0
    preds = [0] * len(examples)
    for index in batches_of(examples, kind, cfg, None):
        batch = collate(examples, index, kind).to(device)
        with _autocast(device, amp):
            if kind == "translation":
                loss_sum, n = _loss(model, batch, kind)
            else:
                logits = model(batch.src)
                assert batch.labels is not None
                loss_sum = F.cross_entropy(logits.float(), batch.labels, reduction="sum")
                n = len(index)
                for i, p in zip(index, logits.argmax(-1).tolist(), strict=True):
                    preds[i] = p
        total += float(loss_sum)
        units += n
    return total / max(units, 1), preds


@torch.no_grad()
def translate(
    model: Seq2Seq, examples: Examples, cfg: TrainConfig, device: torch.device, amp: str, beam: int = 1
) -> list[list[int]]:
    """Decoded target ids for every example, in the examples' order."""
    model.eval()
    out: list[list[int]] = [[] for _ in examples]
    size = max(1, min(cfg.batch_size, 256) // max(1, beam))
    for index in make_batches([len(examples[i][0]) for i in range(len(examples))], size):
        batch = collate(examples, index, "translation").to(device)
        limit = max_output_len(batch.src.shape[1], model.cfg.max_len)
        with _autocast(device, amp):
            hyps = decode(model, batch.src, limit, beam)
        for i, h in zip(index, hyps, strict=True):
            out[i] = h
    return out


def tokens_all(ids: list[list[int]], vocab: list[str]) -> list[list[str]]:
    """Each hypothesis's vocabulary tokens, specials left out."""
    specials = set(SPECIALS)
    return [[vocab[i] for i in h if vocab[i] not in specials] for h in ids]


def detok_all(ids: list[list[int]], vocab: list[str], spec: str) -> list[str]:
    detok = detokenizer(spec)
    return [detok(toks) for toks in tokens_all(ids, vocab)]
