"""What a run will be, without training it: ``plan(cfg)`` for ``embtool train --dry-run``.

It resolves the settings (the Table 5 column, ``TrainConfig.resolved``), sizes the vocabularies
and builds the model on PyTorch's meta device (no memory for weights) to count its parameters
(``model.parameter_counts``: what config.json of a real run records). A side with a table is
sized from the table's rows plus the specials it lacks: a table made from the task's ``vocab``
output has exactly the run's vocabulary. A side without a table (Xavier) is sized from the
training data, as the run would build it.
"""

from __future__ import annotations

from typing import Any

from embtool.core.errors import BadInput
from embtool.model.transformer import ModelConfig, parameter_counts
from embtool.training.config import TrainConfig
from embtool.training.paper import column_of


def model_config(
    cfg: TrainConfig, src_vocab: int, tgt_vocab: int, n_classes: int, dims: set[int]
) -> ModelConfig:
    """The model of a resolved config for vocabularies of these sizes and tables of D ``dims``:
    ``training.building.model_config``'s, given the sizes instead of prepared data."""
    from types import SimpleNamespace

    import torch

    from embtool.training.building import model_config as build_config

    def side(n: int) -> SimpleNamespace | None:
        rows = torch.empty(0, next(iter(dims))) if dims else None  # only its D is read
        return SimpleNamespace(vocab=range(n), rows=rows) if n else None

    prep = SimpleNamespace(src=side(src_vocab), tgt=side(tgt_vocab), out=None, n_classes=n_classes)
    if len(dims) > 1:
        raise BadInput(f"the tables have different D {sorted(dims)}; both sides need one D")
    return build_config(cfg, prep)  # type: ignore[arg-type]


def count_parameters(mc: ModelConfig) -> dict[str, int]:
    """``parameter_counts`` of the model ``mc`` describes, built on the meta device (no weights)."""
    import torch

    from embtool.model.transformer import build

    with torch.device("meta"):
        return parameter_counts(build(mc))


def _table_vocab_size(path: str, specials: tuple[str, ...]) -> tuple[int, int]:
    """(vocabulary size, D) of a run whose vocabulary is the table's tokens plus missing specials."""
    import json

    from embtool.tables.table import KEY_TOKENS, read_metadata
    from embtool.training.paper import table_shape_source

    tokens = json.loads(read_metadata(path).get(KEY_TOKENS, "[]"))
    dim, _ = table_shape_source(path)
    have = set(tokens)
    return len(tokens) + sum(1 for s in specials if s not in have), dim


def plan(cfg: TrainConfig) -> dict[str, Any]:
    """The resolved settings, Table 5 column, vocabulary sizes, model and parameter counts of a run."""
    from embtool.training.setup import SPECIALS, source_specials

    choice = column_of(cfg)
    cfg = cfg.resolved()
    task = cfg.task_info
    translation = cfg.kind == "translation"
    src_path = cfg.src_emb or cfg.emb
    tgt_path = (cfg.tgt_emb or cfg.emb) if translation else None
    src_specials = source_specials(cfg)
    sizes: dict[str, int] = {}
    dims: set[int] = set()
    origin: dict[str, str] = {}
    for side, path, specials in (("src", src_path, src_specials), ("tgt", tgt_path, SPECIALS)):
        if path:
            sizes[side], dim = _table_vocab_size(path, specials)
            dims.add(dim)
            origin[side] = f"table {path}"
    need = ["src", "tgt"] if translation else ["src"]
    n_classes = task.n_classes
    if any(side not in sizes for side in need):
        prep = _prepare(cfg)
        n_classes = prep.n_classes
        for side in need:
            if side not in sizes:
                built = prep.src if side == "src" else prep.tgt
                assert built is not None
                sizes[side] = len(built.vocab)
                origin[side] = f"training data ({built.tokenizer}, min_freq {cfg.min_freq})"
    mc = model_config(cfg, sizes["src"], sizes.get("tgt", 0), n_classes, dims)
    return {
        "task": cfg.task,
        "paper": choice.as_dict(cfg.task, cfg.preset),
        "train": cfg.to_dict(),
        "vocab": {"src_size": sizes["src"], "tgt_size": sizes.get("tgt"), "from": origin},
        "model": mc.to_dict(),
        "parameters": count_parameters(mc),
    }


def _prepare(cfg: TrainConfig) -> Any:
    """The data as the run would prepare it (vocabularies from the training split)."""
    from embtool.tasks import load_files, load_splits
    from embtool.training.setup import prepare

    if cfg.task_info.local_only:
        assert cfg.src and cfg.tgt
        data = load_files(cfg.src, cfg.tgt, cfg.val_src, cfg.val_tgt, cfg.test_src, cfg.test_tgt)
    else:
        data = load_splits(cfg.task, cfg.data_dir)
    return prepare(cfg, data.cut(cfg.max_train_examples, cfg.max_eval_examples))
