"""The variant tables of one pretrained table (the paper's §3), as `experiment` trains them.

- ``xavier``: Xavier-uniform rows for the table's tokens (§3.1), drawn with the run's seed;
- ``pretrained``: the table itself (§3.2–3.3);
- ``standardized``: Eq. 1, the table moved to Xavier's mean and σ (Pre-trained_Xavier);
- ``shuffled``: rows and columns permuted with the run's seed (Pre-trained_Shuffled);
- ``xavier_like``: Eq. 4, a Xavier table moved to the table's mean and σ (Xavier_Pre-trained, Table 7).
"""

from __future__ import annotations

from typing import Any

from embtool.errors import BadInput

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
    from embtool import transforms

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
