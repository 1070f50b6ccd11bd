"""A grid's axes as the user gives them: ``--seeds``, ``--grid NAME=V1,V2``, and the folder name of
each point of the grid (``OUT/runs/<variant>/<point>/s<seed>``), safe whatever the values hold."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from embtool.core.errors import BadInput

# TrainConfig fields the grid sets itself; the rest are the user's training settings
GRID_FIELDS = frozenset({"task", "seed", "out", "emb", "src_emb", "tgt_emb", "resume"})


def paper_seeds(task: str) -> list[int]:
    """Seeds 1 … n, n the paper's runs per cell for ``task`` (A.2: 4 Multi30k and IWSLT2017, 5 SST-2,
    3 MNLI; the registry's ``Task.seeds``): ``experiment``'s default."""
    from embtool.tasks.registry import get_task

    return list(range(1, get_task(task).seeds + 1))


def parse_seeds(text: str) -> list[int]:
    """``"3"`` → seeds 1, 2, 3; ``"1,5,7"`` → those seeds."""
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        else:
            count = int(text)
            if count < 1:
                raise ValueError
            seeds = list(range(1, count + 1))
    except ValueError:
        raise BadInput(f"--seeds {text!r}: give a count (3 → seeds 1,2,3) or a list (1,5,7)") from None
    if not seeds or any(s < 0 for s in seeds):
        raise BadInput(f"--seeds {text!r}: seeds must be non-negative integers")
    return list(dict.fromkeys(seeds))


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """``["layers=3,6", "lr=1e-4,2e-4"]`` → {"layers": [3, 6], "lr": [0.0001, 0.0002]}: any TrainConfig
    field the grid does not set itself, each value parsed as the field's type."""
    from embtool.training.config import parse_value, settable_fields

    allowed = settable_fields() - GRID_FIELDS
    axes: dict[str, list[Any]] = {}
    for item in items:
        key, eq, text = item.partition("=")
        name = key.strip().lstrip("-").replace("-", "_")
        if not eq or not name or not text.strip():
            raise BadInput(f"--grid {item!r}: give NAME=V1,V2 (e.g. --grid layers=3,6)")
        if name not in allowed:
            raise BadInput(
                f"--grid {item!r}: {name!r} is not a training setting the grid can vary; "
                f"valid: {', '.join(sorted(allowed))}"
            )
        if name in axes:
            raise BadInput(f"--grid {item!r}: {name} is given twice")
        values = [parse_value(name, v.strip(), f"--grid {name}") for v in text.split(",") if v.strip()]
        axes[name] = list(dict.fromkeys(values))
    return axes


_SAFE = re.compile(r"[^A-Za-z0-9._+=,-]")  # what a grid point's folder name may hold as it is
_MAX_LABEL = 120  # characters of a point's folder name (file systems allow 255 bytes)


def point_label(point: dict[str, Any]) -> str:
    """A grid point as one safe folder name: ``layers=6,lr=0.0002``. Other characters (``/``, spaces,
    …) become ``_`` and a short hash of the exact values follows, so two points never share a folder
    and no value can lead a run out of the grid's folder (``data_dir=../../x``)."""
    import hashlib

    exact = ",".join(f"{k}={v}" for k, v in point.items())
    label = _SAFE.sub("_", exact)
    if label == exact and len(label) <= _MAX_LABEL:
        return label
    return f"{label[:_MAX_LABEL]}~{hashlib.sha256(exact.encode('utf-8')).hexdigest()[:8]}"
