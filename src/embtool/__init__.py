"""embtool: start a transformer's embedding layer from pretrained vectors.

The library API; the names load lazily so that ``embtool --help`` does not import torch::

    from embtool import load, save, standardize
    table = standardize(load("glove.safetensors"), to="xavier")
"""

from __future__ import annotations

import importlib
from typing import Any

from embtool._version import __version__

_EXPORTS = {
    "EmbeddingTable": "embtool.tables.table",
    "load": "embtool.tables.table",
    "loads": "embtool.tables.table",
    "save": "embtool.tables.table",
    "dumps": "embtool.tables.table",
    "Vocabulary": "embtool.text.vocabfile",
    "read_vocab": "embtool.text.vocabfile",
    "write_vocab": "embtool.text.vocabfile",
    "xavier": "embtool.tables.transforms",
    "standardize": "embtool.tables.transforms",
    "shuffle": "embtool.tables.transforms",
    "scale": "embtool.tables.transforms",
    "posenc": "embtool.tables.transforms",
    "sinusoidal": "embtool.tables.positional",
    "table_stats": "embtool.tables.stats",
    "moments": "embtool.tables.stats",
    "evaluate_analogies": "embtool.eval.analogy",
    "evaluate_similarity": "embtool.eval.similarity",
    "extract": "embtool.formats.sources",
    "align": "embtool.formats.alignment",
    "diagnose": "embtool.tables.doctor",
    "load_task": "embtool.tasks",
    "TASKS": "embtool.tasks",
    "load_tokenizer": "embtool.text.tokenizer",
    "build_vocab": "embtool.text.vocab",
    "train": "embtool.training.loop",
    "TrainConfig": "embtool.training.config",
    "RunResult": "embtool.training.runfolder",
    "run_experiment": "embtool.experiment.runner",
    "build_report": "embtool.experiment.report.cells",
    "EmbtoolError": "embtool.core.errors",
    "BadInput": "embtool.core.errors",
    "UsageError": "embtool.core.errors",
    "WorkFailure": "embtool.core.errors",
}

__all__ = ["__version__", "experiment", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name == "experiment":  # the package: plan, run_grid, run_experiment, … (lazily)
        return importlib.import_module("embtool.experiment")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'embtool' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
