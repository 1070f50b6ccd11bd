"""The error classes: their exit codes, and NonFinite's message with and without its hint."""

from __future__ import annotations

import pytest

from embtool.core.errors import BadInput, EmbtoolError, NonFinite, UsageError, WorkFailure


@pytest.mark.parametrize(
    ("cls", "code"), [(BadInput, 2), (UsageError, 2), (NonFinite, 2), (WorkFailure, 1), (EmbtoolError, 1)],
    ids=["bad-input", "usage", "non-finite", "work-failure", "base"],
)  # fmt: skip
def test_exit_codes(cls, code) -> None:
    assert cls("x").exit_code == code


def test_non_finite_keeps_the_finding_apart_from_the_hint() -> None:
    """Issue 14.5: commands without --allow-nonfinite (train) word their own hint from ``found``."""
    e = NonFinite("t.safetensors: 1 non-finite value(s) (NaN/Inf); first in row 0 (token 'a')")
    assert str(e).endswith("(token 'a'); pass --allow-nonfinite to accept them")
    assert e.found == "t.safetensors: 1 non-finite value(s) (NaN/Inf); first in row 0 (token 'a')"
