"""The model's initial embedding rows against Xavier's σ for the model, and ``--standardize``.

Eq. 1's σ_x is Xavier's σ for the matrix being initialised: the *model's* N × D, not the table's.
When a table covers more tokens than the run's vocabulary (a table for the full training split, a
run on a slice of it), a table standardized with the table's N starts the model off Xavier's σ.
``standardize_rows`` applies Eq. 1 (``to="xavier"``: mean 0, σ_x = √(2/(N_model + D))) or Eq. 4
(``to=TABLE``: that table's mean and σ) to the rows the model starts from, whatever the slice;
``check_rows`` says how far rows are from σ_x (``WARN_FACTOR``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from embtool.core.errors import BadInput
from embtool.tables.stats import xavier_std

WARN_FACTOR = 1.5  # rows whose σ is further than this factor from σ_x get a warning


def _moments(rows: torch.Tensor) -> tuple[float, float]:
    x = rows.double()  # (N, D)
    return float(x.mean()), float(x.std())  # σ with ddof=1, as table_moments


def target_moments(to: str, n: int, dim: int) -> tuple[float, float]:
    """(mean, σ) that ``to`` asks for: Xavier's for an n × dim matrix, or a table file's."""
    if to == "xavier":
        return 0.0, xavier_std(n, dim)
    if not to:
        raise BadInput("--standardize needs xavier, off, or a TABLE file")
    from embtool.tables.stats import table_moments
    from embtool.tables.table import load

    mean, std = table_moments(load(to))
    if std == 0.0 or not math.isfinite(std):  # every row would become one vector, the table's mean
        raise BadInput(f"--standardize {to}: its σ is {std}; there is no spread to match: give another table")
    return mean, std


def standardize_rows(rows: torch.Tensor, to: str) -> tuple[torch.Tensor, dict[str, Any]]:
    """(N, D) rows shifted and scaled to ``to``'s mean and σ (Eq. 1 / Eq. 4), and what was done."""
    n, dim = rows.shape
    mean, std = _moments(rows)
    if std == 0.0 or not math.isfinite(std):
        raise BadInput(f"--standardize {to}: the rows' σ is {std}; cannot standardize")
    target_mean, target_std = target_moments(to, n, dim)
    # Eq. 1 / Eq. 4: x* = (x − mean) · σ_target/σ + mean_target
    out = ((rows.double() - mean) * (target_std / std) + target_mean).to(rows.dtype)
    info = {"to": to, "from_mean": mean, "from_std": std, "to_mean": target_mean, "to_std": target_std}
    return out, info


def check_rows(rows: torch.Tensor) -> dict[str, Any]:
    """The rows' σ against Xavier's σ for the model's N × D, and whether they are off by WARN_FACTOR."""
    n, dim = rows.shape
    mean, std = _moments(rows)
    sx = xavier_std(n, dim)
    ratio = std / sx
    return {
        "n": n,
        "dim": dim,
        "mean": mean,
        "std": std,
        "xavier_std": sx,
        "ratio": ratio,
        "off": not (1 / WARN_FACTOR <= ratio <= WARN_FACTOR),
    }


def warning(side: str, check: dict[str, Any]) -> str:
    """The line ``train`` logs for rows off Xavier's σ."""
    return (
        f"warning: {side} rows' σ {check['std']:.3g} is {check['ratio']:.2f}× Xavier's σ "
        f"{check['xavier_std']:.3g} for this model's {check['n']}×{check['dim']} (Eq. 1); "
        "--standardize xavier starts them at Xavier's σ"
    )
