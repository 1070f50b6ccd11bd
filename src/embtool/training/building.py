"""From the prepared data to the model: its ModelConfig, its embeddings' first rows and, for
Admin, its profiled ω (``embtool.training.admin``)."""

from __future__ import annotations

from typing import Any

import torch

from embtool.core.errors import BadInput
from embtool.model.transformer import Classifier, ModelConfig, Seq2Seq, set_embedding
from embtool.training.config import TrainConfig
from embtool.training.data import SEP
from embtool.training.engine import Progress
from embtool.training.kinds import kind_of
from embtool.training.setup import Prepared


def model_config(cfg: TrainConfig, prep: Prepared) -> ModelConfig:
    specials = kind_of(cfg).source_specials(cfg)
    dims = {s.rows.shape[1] for s in (prep.src, prep.tgt) if s is not None and s.rows is not None}
    if cfg.input_dim:  # the table feeds a learned E → D projection: D is free
        if dims and cfg.input_dim not in dims:
            raise BadInput(
                f"--input-dim {cfg.input_dim} differs from the table's D {sorted(dims)[0]}; match it"
            )
        d_model = cfg.d_model or 512
    else:
        d_model = cfg.d_model or (dims.pop() if dims else 512)
        if dims and d_model not in dims:
            raise BadInput(
                f"--d-model {d_model} differs from the table's D {sorted(dims)[0]}; leave it out or match it, "
                "or give --input-dim D to project the table"
            )
    out_dim = cfg.output_dim or d_model
    if prep.out is not None and prep.out.rows is not None and prep.out.rows.shape[1] != out_dim:
        raise BadInput(
            f"--out-emb has D={prep.out.rows.shape[1]} but the output embedding is {out_dim} wide; "
            f"give --output-dim {prep.out.rows.shape[1]}"
        )
    return ModelConfig(
        kind=cfg.kind,
        src_vocab=len(prep.src.vocab),
        tgt_vocab=len(prep.tgt.vocab) if prep.tgt else 0,
        n_classes=prep.n_classes,
        d_model=d_model,
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
