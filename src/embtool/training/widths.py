"""The tables a run starts from, as their headers describe them, and every width check of a run.

Only a table's header is read (a few kB: ``core.tablefile.read_shape``), so `train`, `--dry-run`
and `experiment` (every run of its grid at once) check widths before a folder or grid is written.
``check_widths`` is the one place a run's widths and head count are checked: the options among
themselves (``TrainConfig`` checks them on construction), and against the tables' D once their
headers are read (``RunSpec.of``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embtool.core.errors import BadInput
from embtool.tasks.registry import CLASSIFICATION
from embtool.training.checks import option_name

TABLE_OPTIONS = ("emb", "src_emb", "tgt_emb", "out_emb")  # the TrainConfig fields that name a table
FAST_D = 512  # the model's width D where nothing else gives one: no table, no Table 5 column, or E → D


@dataclass(frozen=True)
class TableHead:
    """What a table file's header says: (N, D) and its metadata (source, tokens)."""

    option: str  # the TrainConfig field that names it: emb, src_emb, tgt_emb or out_emb
    path: str
    n: int
    dim: int
    meta: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def label(self) -> str:
        """How messages name it: ``--emb glove.safetensors``."""
        return f"{option_name(self.option)} {self.path}"

    @property
    def source(self) -> str:
        from embtool.tables.table import KEY_SOURCE

        return self.meta.get(KEY_SOURCE, "")

    def vocab_size(self, specials: tuple[str, ...]) -> int:
        """The vocabulary of a run built from this table: its tokens plus the specials it lacks (a
        table made from the task's ``vocab`` output has exactly the run's vocabulary)."""
        from embtool.tables.table import KEY_TOKENS

        tokens = json.loads(self.meta.get(KEY_TOKENS, "[]"))
        have = set(tokens)
        return len(tokens) + sum(1 for s in specials if s not in have)


def read_head(option: str, path: str) -> TableHead:
    """A table file's header; BadInput naming the file when it is missing, unreadable or no table."""
    from embtool.core import tablefile
    from embtool.tables.table import TENSOR_NAME

    if not Path(path).is_file():
        raise BadInput(f"{path}: no such file")
    try:
        shape, meta = tablefile.read_shape(Path(path), TENSOR_NAME)
    except (tablefile.Unreadable, OSError) as e:
        raise BadInput(f"{path}: not a readable safetensors file ({e})") from None
    if shape is None or len(shape) != 2:
        raise BadInput(f"{path}: no (N, D) embeddings tensor; is it an embtool table?")
    return TableHead(option, path, int(shape[0]), int(shape[1]), meta)


Heads = dict[str, "TableHead | BadInput"]  # option → its header, or why it could not be read


def read_heads(cfg: Any) -> Heads:
    """The header of every table TrainConfig ``cfg`` names (each file read once), or the BadInput
    saying why it could not be read: the width checks leave such a table to the loader."""
    heads: Heads = {}
    read: dict[str, TableHead | BadInput] = {}
    for option in TABLE_OPTIONS:
        path = getattr(cfg, option, None)
        if not path:
            continue
        if path not in read:
            try:
                read[path] = read_head(option, path)
            except BadInput as e:
                read[path] = e
        got = read[path]
        heads[option] = (
            TableHead(option, got.path, got.n, got.dim, got.meta) if isinstance(got, TableHead) else got
        )
    return heads


def readable(heads: Heads) -> dict[str, TableHead]:
    return {k: h for k, h in heads.items() if isinstance(h, TableHead)}


def input_tables(cfg: Any, heads: dict[str, TableHead]) -> list[TableHead]:
    """The tables the model's input embeddings come from (the target side's for translation only)."""
    sides = (
        ("emb", "src_emb", "tgt_emb") if getattr(cfg, "kind", None) != CLASSIFICATION else ("emb", "src_emb")
    )
    return [heads[k] for k in sides if k in heads]


def model_width(cfg: Any, heads: dict[str, TableHead]) -> int:
    """D: ``--d-model``; else, without ``--input-dim``, the input tables' D; else ``FAST_D`` (a
    resolved paper-preset run without a table has the column's D as its ``--d-model`` already)."""
    tables = input_tables(cfg, heads)
    if cfg.d_model:
        return int(cfg.d_model)
    return tables[0].dim if tables and not cfg.input_dim else FAST_D


def check_widths(cfg: Any, heads: dict[str, TableHead] | None = None) -> None:
    """BadInput naming the options for widths no model can have: ``--heads`` dividing ``--d-model``,
    one width for a tied output layer; with the tables' ``heads``, ``--input-dim`` (or, without
    it, ``--d-model``) equal to their D, ``--heads`` dividing it, the input tables of one D, and
    ``--out-emb`` as wide as the output embedding."""
    if cfg.d_model and cfg.heads and cfg.d_model % cfg.heads:
        raise BadInput(f"--heads {cfg.heads} must divide --d-model {cfg.d_model}")
    width = cfg.input_dim or cfg.d_model  # the input embedding's, where known before the table
    if cfg.tie_output and cfg.output_dim and width and width != cfg.output_dim:
        raise BadInput(
            f"--tie-output needs one width for the input and output embeddings, got {width} "
            f"(--input-dim/--d-model) and {cfg.output_dim} (--output-dim); untie them or match them"
        )
    if heads:
        _check_tables(cfg, heads)


def _check_tables(cfg: Any, heads: dict[str, TableHead]) -> None:
    tables = [heads[k] for k in ("emb", "src_emb", "tgt_emb") if k in heads]
    if len({t.dim for t in tables}) > 1:
        raise BadInput(f"the tables differ in D: {', '.join(f'{t.label} has D {t.dim}' for t in tables)}")
    projected = cfg.input_dim  # --input-dim: the table is projected to D (the model's width)
    option, width = ("--input-dim", projected) if projected else ("--d-model", cfg.d_model)
    for t in tables:
        if width and width != t.dim:
            hint = ", or give --input-dim D to project the table" if not projected else ""
            raise BadInput(
                f"{option} {width} differs from the table's D {t.dim} ({t.label}); leave it out or match it{hint}"
            )
        if cfg.heads and not projected and not cfg.d_model and t.dim % cfg.heads:
            raise BadInput(f"--heads {cfg.heads} must divide the table's D {t.dim} ({t.label})")
    out = heads.get("out_emb") if getattr(cfg, "kind", None) != CLASSIFICATION else None
    wide = cfg.output_dim or model_width(cfg, heads)  # the output embedding: E_out, else D
    if out is not None and out.dim != wide:
        raise BadInput(
            f"--out-emb {out.path} has D={out.dim} but the output embedding is {wide} wide; "
            f"give --output-dim {out.dim}"
        )
