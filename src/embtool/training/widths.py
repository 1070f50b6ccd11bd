"""The tables a run starts from, checked from their headers before a folder or grid is written.

Only the header is read (a few kB), so `experiment` can check every run of its grid at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from embtool.core.errors import BadInput
from embtool.training.checks import option_name


def check_tables(cfg: Any) -> None:
    """The model width of TrainConfig ``cfg`` against its tables' D: ``--input-dim`` (or, without it,
    ``--d-model``) equal to D, ``--heads`` dividing it, the tables of both sides of one D. A table that cannot be read is left
    to the loader, whose message names it."""
    from embtool.core.tablefile import Unreadable, read_file_header
    from embtool.tables.table import TENSOR_NAME

    def width_of(path: str | None) -> int | None:
        try:
            shape = read_file_header(Path(path)).tensors[TENSOR_NAME]["shape"] if path else None
        except (Unreadable, OSError, KeyError, TypeError):
            return None
        return int(shape[1]) if isinstance(shape, list) and len(shape) == 2 else None

    dims: dict[str, int] = {}
    for name in ("emb", "src_emb", "tgt_emb"):
        if (dim := width_of(getattr(cfg, name))) is not None:
            dims[f"{option_name(name)} {getattr(cfg, name)}"] = dim
    if len(set(dims.values())) > 1:
        raise BadInput(f"the tables differ in D: {', '.join(f'{k} has D {d}' for k, d in dims.items())}")
    projected = getattr(cfg, "input_dim", 0)  # --input-dim: the table is projected to D (the model's width)
    option, width = ("--input-dim", projected) if projected else ("--d-model", cfg.d_model)
    for table, dim in dims.items():
        if width and width != dim:
            raise BadInput(
                f"{option} {width} differs from the table's D {dim} ({table}); leave it out or match it"
            )
        if cfg.heads and not projected and not cfg.d_model and dim % cfg.heads:
            raise BadInput(f"--heads {cfg.heads} must divide the table's D {dim} ({table})")
    out_dim = (
        width_of(getattr(cfg, "out_emb", None)) if getattr(cfg, "kind", None) != "classification" else None
    )
    # the output embedding is --output-dim wide, else D: --d-model, else the input tables' D
    wide = (
        getattr(cfg, "output_dim", 0)
        or cfg.d_model
        or (next(iter(dims.values())) if dims and not projected else 0)
    )
    if out_dim is not None and wide and out_dim != wide:
        raise BadInput(
            f"--out-emb {cfg.out_emb} has D={out_dim} but the output embedding is {wide} wide; "
            f"give --output-dim {out_dim}"
        )
