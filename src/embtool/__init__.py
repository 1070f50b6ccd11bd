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
    "EmbeddingTable": "embtool.table",
    "load": "embtool.table",
    "loads": "embtool.table",
    "save": "embtool.table",
    "dumps": "embtool.table",
    "Vocabulary": "embtool.text.vocabfile",
    "read_vocab": "embtool.text.vocabfile",
    "write_vocab": "embtool.text.vocabfile",
    "xavier": "embtool.transforms",
    "standardize": "embtool.transforms",
    "shuffle": "embtool.transforms",
    "scale": "embtool.transforms",
    "posenc": "embtool.transforms",
    "sinusoidal": "embtool.positional",
    "table_stats": "embtool.stats",
    "moments": "embtool.stats",
    "evaluate_analogies": "embtool.eval.analogy",
    "evaluate_similarity": "embtool.eval.similarity",
    "extract": "embtool.sources",
    "align": "embtool.alignment",
    "diagnose": "embtool.doctor",
    "load_task": "embtool.tasks",
    "TASKS": "embtool.tasks",
    "load_tokenizer": "embtool.text.tokenizer",
    "build_vocab": "embtool.text.vocab",
    "train": "embtool.training.loop",
    "TrainConfig": "embtool.training.config",
    "RunResult": "embtool.training.runfolder",
    "run_experiment": "embtool.experiment",
    "build_report": "embtool.report.cells",
    "EmbtoolError": "embtool.errors",
    "BadInput": "embtool.errors",
    "UsageError": "embtool.errors",
    "WorkFailure": "embtool.errors",
}

__all__ = ["__version__", "experiment", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name == "experiment":  # the module: plan, run_grid, run_experiment, …
        return importlib.import_module("embtool.experiment")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'embtool' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
