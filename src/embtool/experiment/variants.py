"""The variant tables of one pretrained table (the paper's §3), as `experiment` trains them.

- ``xavier``: Xavier-uniform rows for the table's tokens (§3.1), drawn with the run's seed;
- ``pretrained``: the table itself (§3.2–3.3);
- ``standardized``: Eq. 1, the table moved to Xavier's mean and σ (Pre-trained_Xavier);
- ``shuffled``: rows and columns permuted with the run's seed (Pre-trained_Shuffled);
- ``xavier_like``: Eq. 4, a Xavier table moved to the table's mean and σ (Xavier_Pre-trained, Table 7).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from embtool.core.errors import BadInput

VARIANTS = ("xavier", "pretrained", "standardized", "shuffled", "xavier_like")
RANDOM_VARIANTS = ("xavier", "shuffled", "xavier_like")  # drawn anew for every seed


def parse_variants(text: str) -> list[str]:
    """``"xavier,standardized"`` → the variant names, checked, in the given order."""
    names = [v.strip().replace("-", "_") for v in text.split(",") if v.strip()]
    bad = [v for v in names if v not in VARIANTS]
    if bad or not names:
        raise BadInput(
            f"--variants {text!r}: unknown variant {bad[0] if bad else '(none)'!r}; "
            f"valid choices: {', '.join(VARIANTS)}"
        )
    return list(dict.fromkeys(names))


def variant_table(table: Any, variant: str, seed: int, side_offset: int = 0) -> Any:
    """One variant of a pretrained table (see the module docstring); random steps use ``seed``."""
    from embtool.tables import transforms

    if variant == "pretrained":
        return table
    if variant == "standardized":
        return transforms.standardize(table, "xavier")  # Eq. 1
    if variant == "shuffled":
        return transforms.shuffle(table, axis="both", seed=seed + side_offset)
    x = transforms.xavier(table.tokens, table.dim, seed=seed + side_offset, tokenizer=table.tokenizer)
    if variant == "xavier":
        return x
    if variant == "xavier_like":
        return transforms.standardize(x, table)  # Eq. 4
    raise BadInput(f"unknown variant {variant!r}; valid choices: {', '.join(VARIANTS)}")


def variant_standardize(variant: str, inputs: list[Path]) -> str:
    """The ``--standardize`` a variant trains with, so that the paper's condition holds for the
    model's own rows whatever slice of the data it trains on: Eq. 1 with the model's N for
    ``standardized``, Eq. 4 to the pretrained table for ``xavier_like`` (one table for both sides)."""
    if variant == "standardized":
        return "xavier"
    tables = set(inputs)
    if variant == "xavier_like" and len(tables) == 1:
        return str(next(iter(tables)))
    return "off"


def input_family(table: Path, task: str) -> str | None:
    """The Table 5 family of an experiment's pretrained table (its source, else its D), if any."""
    from embtool.tasks.registry import get_task
    from embtool.training.paper import choose_column, table_shape_source

    dim, source = table_shape_source(str(table))
    column = choose_column(get_task(task), dim, source, None).column
    return column.family if column is not None else None
