"""From the prepared data to the model's first state: its embeddings' first rows and, for Admin,
its profiled ω (``embtool.training.admin``). Its ModelConfig is the run's: ``RunSpec.model_for``."""

from __future__ import annotations

from typing import Any

import torch

from embtool.core.errors import BadInput
from embtool.model.transformer import Classifier, ModelConfig, Seq2Seq, set_embedding
from embtool.training.config import TrainConfig
from embtool.training.engine import Progress
from embtool.training.kinds import kind_of
from embtool.training.setup import Prepared


def init_embeddings(
    model: Seq2Seq | Classifier, prep: Prepared, mc: ModelConfig, cfg: TrainConfig, progress: Progress
) -> dict[str, Any]:
    """Table rows where a table was given, else Xavier-uniform (the paper's baseline); then
    ``--standardize`` (Eq. 1 / Eq. 4 on the model's rows, ``embtool.training.initrows``). Returns,
    per side, the rows' σ against Xavier's for the model (a warning past ``WARN_FACTOR``) and what
    was standardized: config.json's ``init``."""
    from embtool.tables.transforms import xavier
    from embtool.training.initrows import check_rows, standardize_rows, warning

    info: dict[str, Any] = {}
    for offset, side in enumerate((prep.src, prep.tgt)):
        if side is None:
            continue
        emb = model.embeddings()[side.name]
        rows = (
            side.rows
            if side.rows is not None
            else xavier(side.vocab, mc.emb_dim, seed=cfg.seed + offset).tensor()
        )
        entry: dict[str, Any] = {}
        if cfg.standardize != "off":
            rows, entry["standardize"] = standardize_rows(rows, cfg.standardize)
        entry.update(check_rows(rows))
        if entry["off"] and side.rows is not None and cfg.standardize in ("off", "xavier"):
            progress("log", {"message": warning(side.name, entry)})
        set_embedding(emb, rows)
        info[side.name] = entry
    if prep.out is not None and prep.out.rows is not None:
        assert isinstance(model, Seq2Seq)
        out = model.out_embedding()
        if tuple(prep.out.rows.shape) != tuple(out.weight.shape):
            raise BadInput(f"--out-emb rows {tuple(prep.out.rows.shape)} do not fit the output layer")
        with torch.no_grad():
            out.weight.copy_(prep.out.rows.to(out.weight.dtype))
    return info


def profile_admin(
    model: Seq2Seq | Classifier, prep: Prepared, cfg: TrainConfig, device: torch.device, progress: Progress
) -> dict[str, Any]:
    """Admin's ω from one pass over the first training batches (``embtool.training.admin``)."""
    from embtool.training.admin import PROFILE_BATCHES, profile

    kind = kind_of(cfg)
    order = kind.batches(prep.train, cfg, torch.Generator().manual_seed(cfg.seed))
    index = [i for b in order[:PROFILE_BATCHES] for i in b]
    figures = profile(model, kind.collate(prep.train, index).to(device))
    shown = "; ".join(f"{k} ω {', '.join(f'{w:.2f}' for w in v)}" for k, v in figures["omega"].items())
    progress("log", {"message": f"Admin profiling over {len(index)} examples: {shown}"})
    return figures
