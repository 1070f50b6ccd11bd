"""What a run will be, without training it: ``plan(cfg)`` for ``embtool train --dry-run``.

It resolves the run (``spec.RunSpec``: the settings with the Table 5 column's, the tables'
headers, the widths), sizes the vocabularies and builds the model on PyTorch's meta device (no
memory for weights) to count its parameters (``model.parameter_counts``: what config.json of a
real run records). A side with a table is sized from the table's rows plus the specials it lacks
(``TableHead.vocab_size``): a table made from the task's ``vocab`` output has exactly the run's
vocabulary. A side without a table (Xavier) is sized from the training data, prepared as the run
would prepare it.
"""

from __future__ import annotations

from typing import Any

from embtool.model.transformer import ModelConfig, parameter_counts
from embtool.training.config import TrainConfig
from embtool.training.spec import RunSpec


def count_parameters(mc: ModelConfig) -> dict[str, int]:
    """``parameter_counts`` of the model ``mc`` describes, built on the meta device (no weights)."""
    import torch

    from embtool.model.transformer import build

    with torch.device("meta"):
        return parameter_counts(build(mc))


def vocab_sizes(spec: RunSpec) -> tuple[dict[str, int], dict[str, str], int]:
    """Each side's vocabulary size and where it comes from, and the number of classes: from the
    tables' headers, else from the training data as ``setup.prepare`` builds the vocabularies."""
    sizes: dict[str, int] = {}
    origin: dict[str, str] = {}
    for side in spec.sides:
        head = spec.table(side)
        if head is not None:
            sizes[side] = head.vocab_size(spec.specials[side])
            origin[side] = f"table {head.path}"
    n_classes = spec.cfg.task_info.n_classes
    if len(sizes) < len(spec.sides):
        from embtool.training.setup import load_text, prepare

        prep = prepare(spec.cfg, load_text(spec.cfg))
        n_classes = prep.n_classes
        for side in spec.sides:
            built = prep.src if side == "src" else prep.tgt
            if side not in sizes and built is not None:
                sizes[side] = len(built.vocab)
                origin[side] = f"training data ({built.tokenizer}, min_freq {spec.cfg.min_freq})"
    return sizes, origin, n_classes


def plan(cfg: TrainConfig) -> dict[str, Any]:
    """The resolved settings, Table 5 column, vocabulary sizes, model and parameter counts of a run."""
    spec = RunSpec.of(cfg)
    sizes, origin, n_classes = vocab_sizes(spec)
    mc = spec.model_config(sizes["src"], sizes.get("tgt", 0), n_classes)
    return {
        "task": spec.cfg.task,
        "paper": spec.paper,
        "train": spec.cfg.to_dict(),
        "vocab": {"src_size": sizes["src"], "tgt_size": sizes.get("tgt"), "from": origin},
        "model": mc.to_dict(),
        "parameters": count_parameters(mc),
    }
