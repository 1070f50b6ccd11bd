"""The trainer: ``train(TrainConfig) -> RunResult`` (DESIGN §4), used by `embtool train` and `experiment`.

Names load lazily: `TrainConfig` and the run-folder module need no torch (`embtool --help`,
`report` and `experiment --dry-run` stay fast); `train` imports it.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainConfig": "embtool.training.config",
    "RunResult": "embtool.training.runfolder",
    "RunFolder": "embtool.training.runfolder",
    "resume_config": "embtool.training.runfolder",
    "ModelConfig": "embtool.model.transformer",
    "train": "embtool.training.loop",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'embtool.training' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
