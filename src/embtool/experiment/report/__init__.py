"""Run folders → the paper's tables and figures: ``runs`` (data model), ``render``, ``plot``, ``naming``."""

from __future__ import annotations

from typing import Any

__all__ = ["build_report"]


def __getattr__(name: str) -> Any:  # lazily: `embtool --help` must not import what reports need
    if name == "build_report":
        from embtool.experiment.report.cells import build_report

        return build_report
    raise AttributeError(f"module 'embtool.experiment.report' has no attribute {name!r}")
