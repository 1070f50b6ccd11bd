"""The paper's settings for a run: which Table 5 column it belongs to, and what that column fills in.

Table 5 has one column per task and embedding family (GloVe, BERT/mBERT, T5/mT5); A.2 gives what
the columns share (Adam β 0.9/0.98, ε 1e-9, dropout 0.1, 8 heads, 10 for GloVe, 3+3 layers, lr
2e-4 translation / 1e-4 classification, D = 300 GloVe, 512 T5, 768 BERT/mBERT/mT5). The paper does
not state the feed-forward width, but all twelve of Table 5's parameter counts fit 512 (and none
fits 4·D): ``PAPER_FFN``.

A run's column is chosen, in this order, by ``--family``; by the family its table's
``embtool.source`` names (``hf:google/mt5-base`` → mt5; on a task without that family, its
monolingual or multilingual twin: the paper uses mBERT/mT5 for translation, BERT/T5 otherwise);
by the table's D (300 → glove, 512 → t5, 768 → the task's first 768 column); otherwise (no table:
the Xavier baseline, or a D no column has) the task's first column.

Presets: ``paper`` (the default) fills every setting the user left at 0 from the column (epochs,
batch size, FFN 512; a Xavier-only run's D is the column's); ``fast`` keeps embtool's earlier
choices where they differ (FFN 4·D, one epoch count and batch size per task, D = 512 without a
table), which older run folders were trained with. ``clinic`` is ``paper`` plus Liu et al.'s IWSLT'14
recipe (``CLINIC``: RAdam, lr 7e-4, inverse-sqrt after 6,000 warm-up steps, dropout 0.3, attention
dropout 0.1, FFN (relu) dropout 0.1, weight decay 1e-4, label smoothing 0.1, a tied output layer,
4,096-token batches) for every one of those settings left at its default, so a user can rerun their
Post-LN/Pre-LN/Admin comparison with ``--norm``. Where it differs from Transformer-Clinic's
commands: they share one embedding matrix between the encoder, the decoder and the output layer
(``--share-all-embeddings`` over a joint BPE dictionary); embtool's two sides have vocabularies
of their own, so only the decoder's input and output are tied. Their model is fairseq's
``transformer_iwslt_de_en`` (6+6 layers, FFN 1024, 4 heads), trained 100k updates from a warm-up
starting at lr 1e-7 in fp16; clinic keeps the paper's column (3+3 layers, FFN 512, 8 heads), its
epochs, a warm-up from 0, and ``--amp``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from embtool.core.errors import BadInput
from embtool.tasks.registry import CLASSIFICATION, FAMILIES, PaperColumn, Task
from embtool.training.widths import Heads, TableHead, read_head

PAPER_FFN = 512  # the FFN width every Table 5 parameter count fits (see the module docstring)
# Liu et al. 2020's IWSLT'14 recipe for Post-LN, Pre-LN and Admin (Transformer-Clinic): what
# ``--preset clinic`` sets where a setting is left at its default (on the paper's Table 5 column)
CLINIC: dict[str, Any] = {
    "optimizer": "radam", "lr": 7e-4, "lr_schedule": "inverse-sqrt", "warmup": 6000,
    "dropout": 0.3, "attn_dropout": 0.1, "ffn_dropout": 0.1, "weight_decay": 1e-4, "label_smoothing": 0.1,
    "adam_beta1": 0.9, "adam_beta2": 0.98, "tie_output": True, "max_tokens": 4096,
}  # fmt: skip
_TWIN = {"bert": "mbert", "mbert": "bert", "t5": "mt5", "mt5": "t5"}


@dataclass(frozen=True)
class Choice:
    """A run's Table 5 column (None: the task has none) and why it was chosen."""

    column: PaperColumn | None
    reason: str

    def as_dict(self, task: str, preset: str) -> dict[str, Any]:
        """What config.json records under ``paper``."""
        c = self.column
        out: dict[str, Any] = {"preset": preset, "task": task, "reason": self.reason}
        if c is not None:
            out.update(
                family=c.family,
                dim=c.dim,
                params=c.params,
                epochs=c.epochs,
                batch_size=c.batch_size,
                heads=c.heads,
                ff=PAPER_FFN,
            )
        return out


def source_family(source: str | None) -> str | None:
    """The embedding family a table's source names (``hf:bert-base-uncased`` → bert), if any."""
    from embtool.tables.naming import source_name

    name = source_name(source).lower()
    return name if name in FAMILIES else None


def choose_column(task: Task, dim: int | None, source: str | None, family: str | None) -> Choice:
    """Table 5's column for a run of ``task`` from a table of D ``dim`` and ``source`` (module docstring)."""
    if family is not None and family not in FAMILIES:
        raise BadInput(f"invalid --family {family!r}; valid choices: {list(FAMILIES)}")
    if not task.table5:
        return Choice(None, f"task {task.name} has no Table 5 column")
    if family:
        return Choice(task.column(family), f"--family {family}")
    have = {c.family: c for c in task.table5}
    named = source_family(source)
    if named:
        for fam in (named, _TWIN.get(named)):
            if fam in have:
                return Choice(have[fam], f"the table's source {source} is {named}")
    if dim is not None:
        same = [c for c in task.table5 if c.dim == dim]
        if same:
            return Choice(same[0], f"the table's D = {dim}")
        return Choice(task.table5[0], f"no column has the table's D = {dim}: the task's first")
    return Choice(task.table5[0], "no table (Xavier): the task's first column")


def table_shape_source(path: str) -> tuple[int, str]:
    """D and ``embtool.source`` of a table file, from its header alone (``widths.read_head``)."""
    head = read_head("emb", path)
    return head.dim, head.source


def column_of(cfg: Any, heads: Heads | None = None) -> Choice:
    """A TrainConfig's Table 5 column: ``choose_column`` from its first table's header (``heads``:
    the headers already read, ``widths.read_heads``); BadInput when that table cannot be read."""
    task = cfg.task_info
    first = next((o for o in ("emb", "src_emb", "tgt_emb") if getattr(cfg, o)), None)
    if first is None or not task.table5:
        return choose_column(task, None, None, cfg.family)
    head = (heads or {}).get(first) or read_head(first, getattr(cfg, first))
    if not isinstance(head, TableHead):
        raise head  # the BadInput that says why it could not be read
    return choose_column(task, head.dim, head.source, cfg.family)


def clinic_settings(cfg: Any) -> dict[str, Any]:
    """``CLINIC``'s values for the settings ``cfg`` left at their defaults (a value the user gave
    stays); a tied output layer only where the run has no separate output table or width."""
    from dataclasses import fields

    defaults = {f.name: f.default for f in fields(cfg)}
    out = {k: v for k, v in CLINIC.items() if getattr(cfg, k) == defaults[k]}
    if cfg.out_emb or cfg.output_dim or cfg.kind == CLASSIFICATION:
        out.pop("tie_output", None)
    if cfg.kind == CLASSIFICATION or cfg.max_len > CLINIC["max_tokens"]:
        out.pop("max_tokens", None)
    return out


def filled(cfg: Any, column: PaperColumn | None, d: dict[str, Any]) -> dict[str, Any]:
    """A TrainConfig's fields ``d`` with every setting left at 0 filled in: with ``preset`` paper
    from the run's Table 5 ``column`` (FFN 512; a Xavier-only run takes its D), with fast from the
    task's record (FFN 0: 4·D); clinic is paper, then ``clinic_settings``."""
    t, paper = cfg.task_info, cfg.preset in ("paper", "clinic")
    col = column if paper else None
    d = d | dict(
        epochs=cfg.epochs or (col.epochs if col else t.epochs),
        batch_size=cfg.batch_size or (col.batch_size if col else t.batch_size),
        lr=cfg.lr or t.lr,
        min_freq=cfg.min_freq or t.min_freq,
        ff=cfg.ff or (PAPER_FFN if paper else 0),
    )
    if col is not None and not (cfg.emb or cfg.src_emb or cfg.tgt_emb):  # Xavier: the column's D
        d.update(d_model=cfg.d_model or col.dim)
    if cfg.preset == "clinic":
        d.update(clinic_settings(cfg))
    return d
