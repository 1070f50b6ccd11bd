"""Grids of runs and their reports: the layer above training.

``runner`` plans a grid (variants × seeds × grid axes), builds its tables and runs it;
``gridaxes`` names a grid point, ``gridjobs`` and ``gridresources`` run points side by side
on a machine's devices, ``variants`` are the paper's embedding variants, and ``report`` turns
run folders into the paper's tables and figures. The runner's names load lazily, so that
``embtool --help`` imports none of this::

    from embtool.experiment import run_experiment
"""

from __future__ import annotations

import importlib
from typing import Any

_RUNNER = (
    "EXECUTORS",
    "GRID_FIELDS",
    "RANDOM_VARIANTS",
    "VARIANTS",
    "Grid",
    "PlannedRun",
    "Resources",
    "build_tables",
    "check",
    "parse_grid",
    "paper_seeds",
    "parse_seeds",
    "parse_variants",
    "plan",
    "run_experiment",
    "run_grid",
    "variant_table",
    "write_report",
)  # runner's __all__, fmt: skip

__all__ = list(_RUNNER)


def __getattr__(name: str) -> Any:
    if name in _RUNNER:
        return getattr(importlib.import_module("embtool.experiment.runner"), name)
    raise AttributeError(f"module 'embtool.experiment' has no attribute {name!r}")
