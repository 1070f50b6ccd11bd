"""A run's evaluations: the loss and the decoded hypotheses of a split, validation each epoch (loss,
both BLEUs (``bleu_scores``) or accuracy) and the final test; ``test_result`` reads the run (``loop.Run``) it is given.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F

from embtool.model.transformer import Classifier, Seq2Seq
from embtool.training import checkpoint as ckpt
from embtool.training.batching import make_batches
from embtool.training.config import TrainConfig
from embtool.training.data import SPECIALS, detokenizer
from embtool.training.decoding import decode, max_output_len
from embtool.training.epoch import Examples, _autocast, batch_units, batches_of, collate
from embtool.training.metrics import accuracy, bleu, bleu_tokenized, classification_result
from embtool.training.parallel import World, all_gather, all_sum
from embtool.training.runfolder import BEST
from embtool.training.setup import Prepared, tokenize


def validate(
    model: Seq2Seq | Classifier,
    prep: Prepared,
    cfg: TrainConfig,
    device: torch.device,
    amp: str,
    world: World | None = None,
) -> dict[str, Any]:
    """The validation line's figures. With ``world``, every rank of it calls this and evaluates its
    share of the batches; each gets the whole split's figures."""
    if cfg.kind == "translation":
        assert isinstance(model, Seq2Seq) and prep.tgt is not None
        val_loss, _ = eval_loss(model, prep.val, "translation", cfg, device, amp, world)
        ids = translate(model, prep.val, cfg, device, amp, world=world)
        scores = bleu_scores(ids, prep.val_refs, prep.tgt.vocab, prep.tgt.tokenizer)
        return {"val_loss": val_loss, "val_bleu": scores["bleu"], "val_bleu_tok": scores["bleu_tok"]}
    val_loss, preds = eval_loss(model, prep.val, "classification", cfg, device, amp, world)
    out: dict[str, Any] = {"val_loss": val_loss, "val_acc": accuracy(preds, [int(y) for _, y in prep.val])}
    for name, examples in prep.extra_val.items():
        _, p = eval_loss(model, examples, "classification", cfg, device, amp, world)
        out[f"val_acc_{name}"] = accuracy(p, [int(y) for _, y in examples])
    return out


def bleu_scores(ids: list[list[int]], refs: list[str], vocab: list[str], spec: str) -> dict[str, Any]:
    """Both BLEUs of decoded target ``ids`` against the original reference sentences, with their
    signatures (test.json's keys):

    - ``bleu``: sacrebleu on the detokenized hypotheses (13a), comparable across papers; on a side
      tokenized lower-cased (``+lower``, Multi30k's default) sacrebleu's own ``lowercase=True``
      (``case:lc``), the references as written;
    - ``bleu_tok``: on the model's own target tokens against the references split by the same
      tokenizer (``tok:none``, lower-cased): closest to the paper's pipeline, and comparable only
      between runs of one tokenizer.
    """
    score, signature = bleu(detok_all(ids, vocab, spec), refs, lowercase=spec.endswith("+lower"))
    tok_hyps = [" ".join(t) for t in tokens_all(ids, vocab)]
    score_tok, signature_tok = bleu_tokenized(tok_hyps, list(_tokenized_refs(spec, tuple(refs))))
    return {"bleu": score, "signature": signature, "bleu_tok": score_tok, "signature_tok": signature_tok}


@functools.lru_cache(maxsize=4)
def _tokenized_refs(spec: str, refs: tuple[str, ...]) -> tuple[str, ...]:
    """The references split by the target side's tokenizer, space-joined: once per split, not per epoch."""
    return tuple(" ".join(t) for t in tokenize(spec, list(refs)))


def test_result(run: Any, world: World | None = None) -> dict[str, Any]:
    """Decode the test split with the best model (translation), or report the best validation accuracy.

    With ``world``, every rank of it calls this and decodes its share; rank 0 writes the hypotheses,
    and its result is the run's (a classifier's selection reads rank 0's metrics lines: {} elsewhere).
    """
    model, prep, cfg, lines, best_epoch = run.model, run.prep, run.cfg, run.lines, run.best_epoch
    device, amp, main = run.device, run.amp, world is None or world.main
    if cfg.kind == "classification":
        result: dict[str, Any] = classification_result(lines, best_epoch) if main else {}  # §5's selection
    else:
        assert isinstance(model, Seq2Seq) and prep.tgt is not None
        ckpt.load_weights(model, run.folder.file(BEST))
        ids = translate(model, prep.test, cfg, device, amp, beam=cfg.beam, world=world)
        hyps = detok_all(ids, prep.tgt.vocab, prep.tgt.tokenizer)
        if main:
            run.folder.write_hyps(hyps)
        result = {
            **bleu_scores(ids, prep.test_refs, prep.tgt.vocab, prep.tgt.tokenizer),
            "best_epoch": best_epoch,
            "split": prep.test_name,
            "beam": cfg.beam,
        }
    return result


@torch.no_grad()
def eval_loss(
    model: Seq2Seq | Classifier,
    examples: Examples,
    kind: str,
    cfg: TrainConfig,
    device: torch.device,
    amp: str,
    world: World | None = None,
) -> tuple[float, list[int]]:
    """Mean loss per scored unit; for classification also the predicted classes (in order).

    The loss is summed on the device and read once, at the end (the predictions once more), never
    a batch: the scored rows and the padding come from collation, as in training. With ``world``
    (every rank of it calls this) each rank takes every size-th batch and the figures are the group's.
    """
    model.eval()
    world = world or World()
    batches = batches_of(examples, kind, cfg, None)
    units, _ = batch_units(examples, list(range(len(examples))), kind)  # target tokens, or examples
    total = torch.zeros((), dtype=torch.float64, device=device)  # summed loss, on the device
    found: list[tuple[list[int], torch.Tensor]] = []  # classification: each batch's examples and classes
    for index in batches[world.rank :: world.size]:
        batch = collate(examples, index, kind).to(device, device.type == "cuda")
        with _autocast(device, amp):
            if isinstance(model, Seq2Seq):
                assert batch.tgt_in is not None and batch.tgt_out is not None and batch.rows is not None
                total += model.loss_sum(batch.src, batch.tgt_in, batch.tgt_out, batch.rows, batch.src_padded)
            else:
                assert batch.labels is not None
                logits = model(batch.src, batch.src_padded)  # (B, C)
                total += F.cross_entropy(logits.float(), batch.labels, reduction="sum")
                found.append((index, logits.argmax(-1)))  # (B,)
    (loss,) = all_sum(world, [float(total)], device)  # the one read of the loss
    preds = [0] * len(examples)
    classes = torch.cat([p for _, p in found]).tolist() if found else []  # one read of the classes
    mine = [i for index, _ in found for i in index]
    for rank_index, rank_classes in all_gather(world, (mine, classes)):
        for i, c in zip(rank_index, rank_classes, strict=True):
            preds[i] = c
    return loss / max(units, 1), preds


DECODE_TOKENS = 16384  # off the CPU: a decode batch's padded source tokens × beam …
DECODE_BEAMS = 2048  # … and its sentences × beam (each beam scores the vocabulary every step)


def decode_batches(lengths: list[int], beam: int, batch_size: int, device_type: str) -> list[list[int]]:
    """The sentences decoded together (index lists, sorted by source length ``lengths``).

    On a CPU ``min(batch_size, 256) // beam`` sentences a batch, the fastest there. On a GPU a step
    of so few beams is all launch overhead: as many sentences as fit ``DECODE_TOKENS`` padded source
    tokens × beam and ``DECODE_BEAMS`` beams (Multi30k's test set at beam 4: 4 batches, not 32 of 32).
    """
    beam = max(1, beam)
    if device_type == "cpu":
        return make_batches(lengths, max(1, min(batch_size, 256) // beam))
    return make_batches(lengths, max(1, DECODE_BEAMS // beam), max(1, DECODE_TOKENS // beam))


@torch.no_grad()
def translate(
    model: Seq2Seq,
    examples: Examples,
    cfg: TrainConfig,
    device: torch.device,
    amp: str,
    beam: int = 1,
    world: World | None = None,
) -> list[list[int]]:
    """Decoded target ids for every example, in the examples' order. With ``world`` (every rank of
    it calls this) each rank decodes every size-th batch, and every rank returns them all."""
    model.eval()
    world = world or World()
    out: list[list[int]] = [[] for _ in examples]
    batches = decode_batches([len(s) for s, _ in examples], beam, cfg.batch_size, device.type)
    mine: list[tuple[int, list[int]]] = []
    for index in batches[world.rank :: world.size]:
        batch = collate(examples, index, "translation")
        src = batch.src.to(device)  # (B, S); the targets stay behind
        # each sentence's own budget: its hypothesis is the same in any batch, on any device
        limits = [max_output_len(len(examples[i][0]), model.cfg.max_len) for i in index]
        with _autocast(device, amp):
            hyps = decode(model, src, limits, beam, padded=batch.src_padded)
        mine.extend(zip(index, hyps, strict=True))
    for part in all_gather(world, mine):
        for i, h in part:
            out[i] = h
    return out


def tokens_all(ids: list[list[int]], vocab: list[str]) -> list[list[str]]:
    """Each hypothesis's vocabulary tokens, specials left out."""
    specials = set(SPECIALS)
    return [[vocab[i] for i in h if vocab[i] not in specials] for h in ids]


def detok_all(ids: list[list[int]], vocab: list[str], spec: str) -> list[str]:
    detok = detokenizer(spec)
    return [detok(toks) for toks in tokens_all(ids, vocab)]
