"""A run's evaluations: a split's loss (and a classifier's predicted classes), its decoded
hypotheses, and both BLEUs of them (``bleu_scores``). What each kind of task validates and tests
with them is the kind's (``kinds.Translation``, ``kinds.Classification``).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import torch

from embtool.model.transformer import Classifier, Seq2Seq
from embtool.training.batching import make_batches, translation_batch
from embtool.training.config import TrainConfig
from embtool.training.data import SPECIALS, detokenizer
from embtool.training.decoding import decode, max_output_len
from embtool.training.engine import Engine
from embtool.training.metrics import bleu, bleu_tokenized
from embtool.training.setup import tokenize

if TYPE_CHECKING:
    from embtool.training.kinds import Examples, Kind


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


@torch.no_grad()
def eval_loss(
    model: Seq2Seq | Classifier, examples: Examples, kind: Kind, cfg: TrainConfig, engine: Engine
) -> tuple[float, list[int]]:
    """Mean loss per scored unit; for classification also the predicted classes (in order).

    The loss is summed on the device and read once, at the end (the predictions once more), never
    a batch: the scored rows and the padding come from collation, as in training. Every rank of
    ``engine.world`` calls this and takes every size-th batch; the figures are the group's.
    """
    model.eval()
    world, device = engine.world, engine.device
    batches = kind.batches(examples, cfg, None)
    units, _ = kind.units(examples, list(range(len(examples))))  # target tokens, or examples
    total = torch.zeros((), dtype=torch.float64, device=device)  # summed loss, on the device
    found: list[tuple[list[int], torch.Tensor]] = []  # classification: each batch's examples and classes
    for index in batches[world.rank :: world.size]:
        batch = kind.collate(examples, index).to(device, engine.pinned)
        with engine.precision.autocast():
            loss_sum, classes = kind.eval_batch(model, batch)
            total += loss_sum
        if classes is not None:
            found.append((index, classes))  # (B,)
    (loss,) = engine.sum([float(total)])  # the one read of the loss
    preds = [0] * len(examples)
    classes_all = torch.cat([p for _, p in found]).tolist() if found else []  # one read of the classes
    mine = [i for index, _ in found for i in index]
    for rank_index, rank_classes in engine.gather((mine, classes_all)):
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
    model: Seq2Seq, examples: Examples, cfg: TrainConfig, engine: Engine, beam: int = 1
) -> list[list[int]]:
    """Decoded target ids for every example, in the examples' order. Every rank of ``engine.world``
    calls this and decodes every size-th batch, and every rank returns them all."""
    model.eval()
    world, device = engine.world, engine.device
    out: list[list[int]] = [[] for _ in examples]
    batches = decode_batches([len(s) for s, _ in examples], beam, cfg.batch_size, device.type)
    mine: list[tuple[int, list[int]]] = []
    for index in batches[world.rank :: world.size]:
        batch = translation_batch([examples[i][0] for i in index], [examples[i][1] for i in index])
        src = batch.src.to(device)  # (B, S); the targets stay behind
        # each sentence's own budget: its hypothesis is the same in any batch, on any device
        limits = [max_output_len(len(examples[i][0]), model.cfg.max_len) for i in index]
        with engine.precision.autocast():
            hyps = decode(model, src, limits, beam, padded=batch.src_padded)
        mine.extend(zip(index, hyps, strict=True))
    for part in engine.gather(mine):
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
