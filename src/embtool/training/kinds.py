"""What differs between the two kinds of task, each in one object: ``TRANSLATION`` and
``CLASSIFICATION`` (``kind_of(cfg)`` looks one up from the task's registry record).

A kind owns how its examples (``(src ids, tgt ids)`` or ``(src ids, label)``) become batches
(their lengths, ``collate``, the units a loss is averaged over), the evaluation loss of a batch,
the validation line, the test result, the encoder vocabulary's special tokens and the model's
sizes that depend on it (a decoder and a target vocabulary, or classes). The trainer asks the kind
and never compares the kind's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from embtool.core.errors import BadInput
from embtool.model.transformer import Classifier, ModelConfig, Seq2Seq
from embtool.tasks import registry
from embtool.training.batching import Batch, classification_batch, make_batches, translation_batch
from embtool.training.metrics import accuracy, classification_result
from embtool.training.spec import source_specials

if TYPE_CHECKING:
    from embtool.training.config import TrainConfig
    from embtool.training.engine import Engine
    from embtool.training.loop import Run
    from embtool.training.setup import Prepared

Examples = list[tuple[list[int], Any]]  # (source ids, target ids or label) per example


class Kind:
    """The methods both kinds have (see the module docstring); ``name`` is the registry's kind."""

    name: str = ""
    decoder: bool = False  # an encoder-decoder with a target vocabulary (else encoder + classes)
    sides: tuple[str, ...] = ("src",)  # the vocabularies (and embedding tables) the model has

    def lengths(self, examples: Examples) -> tuple[list[int], list[Any]]:
        """Each example's padded length (the longer side) and its sort key inside a batching pool."""
        raise NotImplementedError

    def batches(
        self, examples: Examples, cfg: TrainConfig, generator: torch.Generator | None, batch_size: int = 0
    ) -> list[list[int]]:
        """Index lists, one per batch (``batching.make_batches``: random with ``generator``)."""
        lengths, keys = self.lengths(examples)
        return make_batches(lengths, batch_size or cfg.batch_size, cfg.max_tokens, generator, keys)

    def collate(self, examples: Examples, index: list[int], multiple: int = 1) -> Batch:
        """The examples at ``index`` as one batch, lengths padded to a multiple of ``multiple``."""
        raise NotImplementedError

    def units(self, examples: Examples, index: list[int]) -> tuple[int, int]:
        """(scored units, tokens) of a batch, counted on the host."""
        raise NotImplementedError

    def part_lengths(self, examples: Examples, index: list[int]) -> tuple[dict[int, int], dict[int, int]]:
        """Each example's padded source and target lengths, for cutting a batch into micro-batches."""
        raise NotImplementedError

    def layers(self, mc: ModelConfig) -> int:
        """The model's layers a pass runs through (``cpu.pass_overhead``)."""
        return mc.enc_layers + (mc.dec_layers if self.decoder else 0)

    def source_specials(self, cfg: TrainConfig) -> tuple[str, ...]:
        """The encoder vocabulary's first tokens (one fact: ``spec.source_specials``)."""
        return source_specials(cfg)

    def eval_batch(
        self, model: Seq2Seq | Classifier, batch: Batch
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A batch's summed loss (no label smoothing) and its predicted classes (None: translation)."""
        raise NotImplementedError

    def validate(
        self, model: Seq2Seq | Classifier, prep: Prepared, cfg: TrainConfig, engine: Engine
    ) -> dict[str, Any]:
        """The validation line's figures; every rank of ``engine`` calls this and gets the whole split's."""
        raise NotImplementedError

    def test_result(self, run: Run) -> dict[str, Any]:
        """test.json's result for ``run``; every rank calls this, and rank 0's is the run's."""
        raise NotImplementedError

    def val_labels(self, prep: Prepared) -> list[int] | None:
        """The validation split's gold classes (None: translation): how ``runfolder.stalled`` judges chance."""
        return None


class Translation(Kind):
    """Encoder-decoder on (source ids, target ids): token cross-entropy, BLEU, a decoded test split."""

    name, decoder, sides = registry.TRANSLATION, True, ("src", "tgt")

    def lengths(self, examples: Examples) -> tuple[list[int], list[Any]]:
        lengths = [max(len(s), len(t) + 1) for s, t in examples]
        return lengths, [(n, len(t), len(s)) for n, (s, t) in zip(lengths, examples, strict=True)]

    def collate(self, examples: Examples, index: list[int], multiple: int = 1) -> Batch:
        return translation_batch([examples[i][0] for i in index], [examples[i][1] for i in index], multiple)

    def units(self, examples: Examples, index: list[int]) -> tuple[int, int]:
        n = sum(len(examples[i][1]) + 1 for i in index)  # target tokens with <eos>
        return n, n

    def part_lengths(self, examples: Examples, index: list[int]) -> tuple[dict[int, int], dict[int, int]]:
        return {i: len(examples[i][0]) for i in index}, {i: len(examples[i][1]) + 1 for i in index}

    def eval_batch(
        self, model: Seq2Seq | Classifier, batch: Batch
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        assert isinstance(model, Seq2Seq)
        assert batch.tgt_in is not None and batch.tgt_out is not None and batch.rows is not None
        return model.loss_sum(batch.src, batch.tgt_in, batch.tgt_out, batch.rows, batch.src_padded), None

    def validate(
        self, model: Seq2Seq | Classifier, prep: Prepared, cfg: TrainConfig, engine: Engine
    ) -> dict[str, Any]:
        from embtool.training.evaluation import bleu_scores, eval_loss, translate

        assert isinstance(model, Seq2Seq) and prep.tgt is not None
        val_loss, _ = eval_loss(model, prep.val, self, cfg, engine)
        ids = translate(model, prep.val, cfg, engine)
        scores = bleu_scores(ids, prep.val_refs, prep.tgt.vocab, prep.tgt.tokenizer)
        return {"val_loss": val_loss, "val_bleu": scores["bleu"], "val_bleu_tok": scores["bleu_tok"]}

    def test_result(self, run: Run) -> dict[str, Any]:
        """The best checkpoint's decoded test split, scored; rank 0 writes the hypotheses."""
        from embtool.training import checkpoint as ckpt
        from embtool.training.evaluation import bleu_scores, detok_all, translate
        from embtool.training.runfolder import BEST

        model, prep, cfg, engine = run.model, run.prep, run.cfg, run.engine
        assert isinstance(model, Seq2Seq) and prep.tgt is not None
        ckpt.load_weights(model, run.folder.file(BEST))
        ids = translate(model, prep.test, cfg, engine, beam=cfg.beam)
        if engine.main:
            run.folder.write_hyps(detok_all(ids, prep.tgt.vocab, prep.tgt.tokenizer))
        return {
            **bleu_scores(ids, prep.test_refs, prep.tgt.vocab, prep.tgt.tokenizer),
            "best_epoch": run.best_epoch,
            "split": prep.test_name,
            "beam": cfg.beam,
        }


class Classification(Kind):
    """Encoder and a linear layer on (source ids, label): example cross-entropy, accuracy."""

    name = registry.CLASSIFICATION

    def lengths(self, examples: Examples) -> tuple[list[int], list[Any]]:
        lengths = [len(s) for s, _ in examples]
        return lengths, lengths

    def collate(self, examples: Examples, index: list[int], multiple: int = 1) -> Batch:
        return classification_batch(
            [examples[i][0] for i in index], [examples[i][1] for i in index], multiple
        )

    def units(self, examples: Examples, index: list[int]) -> tuple[int, int]:
        return len(index), sum(len(examples[i][0]) for i in index)  # examples, source tokens

    def part_lengths(self, examples: Examples, index: list[int]) -> tuple[dict[int, int], dict[int, int]]:
        return {i: len(examples[i][0]) for i in index}, dict.fromkeys(index, 0)

    def eval_batch(
        self, model: Seq2Seq | Classifier, batch: Batch
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        assert batch.labels is not None
        logits = model(batch.src, batch.src_padded)  # (B, C)
        return F.cross_entropy(logits.float(), batch.labels, reduction="sum"), logits.argmax(-1)  # (B,)

    def validate(
        self, model: Seq2Seq | Classifier, prep: Prepared, cfg: TrainConfig, engine: Engine
    ) -> dict[str, Any]:
        """The loss and accuracy, and each extra validation split's accuracy (MNLI: ``val_acc_mismatched``)."""
        from embtool.training.evaluation import eval_loss

        val_loss, preds = eval_loss(model, prep.val, self, cfg, engine)
        out: dict[str, Any] = {"val_loss": val_loss, "val_acc": accuracy(preds, _labels(prep.val))}
        for name, examples in prep.extra_val.items():
            _, p = eval_loss(model, examples, self, cfg, engine)
            out[f"val_acc_{name}"] = accuracy(p, _labels(examples))
        return out

    def test_result(self, run: Run) -> dict[str, Any]:
        """§5's selection from rank 0's metrics lines ({} on the other ranks)."""
        return classification_result(run.lines, run.best_epoch) if run.engine.main else {}

    def val_labels(self, prep: Prepared) -> list[int] | None:
        return _labels(prep.val)


def _labels(examples: Sequence[tuple[Any, Any]]) -> list[int]:
    return [int(y) for _, y in examples]


TRANSLATION, CLASSIFICATION = Translation(), Classification()
KINDS: dict[str, Kind] = {k.name: k for k in (TRANSLATION, CLASSIFICATION)}


def kind_of(cfg: TrainConfig | str) -> Kind:
    """The kind of ``cfg``'s task (its registry record's ``kind``), or of a kind's name."""
    name = cfg if isinstance(cfg, str) else cfg.kind
    try:
        return KINDS[name]
    except KeyError:
        raise BadInput(f"unknown task kind {name!r}; valid choices: {list(KINDS)}") from None
