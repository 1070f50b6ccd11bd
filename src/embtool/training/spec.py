"""What a run is, resolved once: ``RunSpec.of(cfg)``, before any data is read.

A TrainConfig is what the user gave; its RunSpec is the run that follows from it: every setting
left at 0 filled in (the Table 5 column's, the task's, the preset's: ``paper.filled``), the column
and why it was chosen (``paper.Choice``), what the tables' headers say (each read once:
``widths.read_heads``), the model's width D with every width and head count checked against the
tables (``widths.check_widths``), and the special tokens each vocabulary starts with. Given the
vocabularies' sizes it is the ModelConfig; given a device, the autocast and why
(``amp.choose_amp``). `train`, `train --dry-run` (``plan``) and `experiment`'s checks all start here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from embtool.core.errors import BadInput
from embtool.tasks.registry import CLASSIFICATION, TRANSLATION
from embtool.training.config import TrainConfig
from embtool.training.data import CLS, SEP, SPECIALS
from embtool.training.paper import Choice, column_of, filled
from embtool.training.widths import Heads, TableHead, check_widths, model_width, read_heads, readable

if TYPE_CHECKING:
    import torch

    from embtool.model.transformer import ModelConfig
    from embtool.training.amp import AmpChoice
    from embtool.training.setup import Prepared


@dataclass(frozen=True)
class RunSpec:
    """Everything a run is that its settings and its tables' headers decide (module docstring)."""

    cfg: TrainConfig  # every setting left at 0 filled in: config.json's "train"
    choice: Choice  # the Table 5 column and why: config.json's "paper"
    heads: Heads  # each table's header by option (emb, src_emb, tgt_emb, out_emb), or why it is unreadable
    d_model: int  # D: --d-model, else the input tables' D, else the column's (paper) or widths.FAST_D
    specials: dict[str, tuple[str, ...]]  # the first tokens of each vocabulary: "src", "tgt"

    @classmethod
    def of(cls, cfg: TrainConfig) -> RunSpec:
        """The run ``cfg`` describes (a resolved config resolves to itself); BadInput for a width
        that cannot fit its tables, or a first table whose header cannot be read."""
        heads = read_heads(cfg)
        choice = column_of(cfg, heads)
        cfg = TrainConfig(**filled(cfg, choice.column, asdict(cfg)))
        tables = readable(heads)
        check_widths(cfg, tables)  # a table that cannot be read is the loader's to name
        return cls(
            cfg, choice, heads, model_width(cfg, tables), {"src": source_specials(cfg), "tgt": SPECIALS}
        )

    @property
    def translation(self) -> bool:
        return self.cfg.kind == TRANSLATION

    @property
    def sides(self) -> tuple[str, ...]:
        """The vocabularies the model has."""
        return ("src", "tgt") if self.translation else ("src",)

    @property
    def paper(self) -> dict[str, Any]:
        """config.json's ``paper``: the preset, the Table 5 column and why."""
        return self.choice.as_dict(self.cfg.task, self.cfg.preset)

    def table(self, side: str) -> TableHead | None:
        """The header of the table a side's rows come from (None: Xavier); BadInput when it cannot be read."""
        cfg = self.cfg
        path_option = (
            ("src_emb" if cfg.src_emb else "emb") if side == "src" else ("tgt_emb" if cfg.tgt_emb else "emb")
        )
        if side not in self.sides or not getattr(cfg, path_option):
            return None
        head = self.heads[path_option]
        if isinstance(head, BadInput):
            raise head
        return head

    def model_config(self, src_vocab: int, tgt_vocab: int, n_classes: int) -> ModelConfig:
        """The model of this run for vocabularies of these sizes (0: no target side)."""
        from embtool.model.transformer import ModelConfig

        cfg, specials = self.cfg, self.specials["src"]
        return ModelConfig(
            kind=cfg.kind,
            src_vocab=src_vocab,
            tgt_vocab=tgt_vocab,
            n_classes=n_classes,
            d_model=self.d_model,
            n_heads=cfg.heads,
            n_layers=cfg.layers,
            enc_layers=cfg.enc_layers,
            dec_layers=cfg.dec_layers,
            norm=cfg.norm,
            input_dim=cfg.input_dim,
            output_dim=cfg.output_dim,
            output_head=cfg.output_head,
            d_ff=cfg.ff,
            dropout=cfg.dropout,
            ffn_dropout=cfg.ffn_dropout,
            attn_dropout=cfg.attn_dropout,
            max_len=cfg.max_len,
            posenc=cfg.posenc,
            freeze_emb=cfg.freeze_emb,
            tie_output=cfg.tie_output,
            pool=cfg.pool,
            segments=cfg.segments,
            sep_id=specials.index(SEP) if SEP in specials else -1,  # the vocabulary's specials come first
        )

    def model_for(self, prep: Prepared) -> ModelConfig:
        """The model of this run over its prepared vocabularies (``setup.prepare``)."""
        return self.model_config(len(prep.src.vocab), len(prep.tgt.vocab) if prep.tgt else 0, prep.n_classes)

    def amp(self, device: torch.device) -> AmpChoice:
        """The autocast ``--amp`` gives on ``device`` and why (``amp.choose_amp``): config.json's
        ``amp`` and ``amp_why``."""
        from embtool.training.amp import choose_amp

        return choose_amp(self.cfg.amp, device)


def source_specials(cfg: TrainConfig) -> tuple[str, ...]:
    """The encoder vocabulary's first tokens: SPECIALS, then ``<sep>`` for a pair task (MNLI:
    premise <sep> hypothesis) and ``<cls>`` for ``--pool first`` (put first in every source)."""
    pair = cfg.kind == CLASSIFICATION and len(cfg.task_info.fields) > 1
    first = cfg.kind == CLASSIFICATION and cfg.pool == "first"
    return SPECIALS + ((SEP,) if pair else ()) + ((CLS,) if first else ())
