"""JSON output: non-finite numbers become null (issue 14.14: stats --json and metrics.jsonl had bare NaN)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from embtool.core.jsonout import dumps, finite


@pytest.mark.parametrize(
    "value,expected",
    [(math.nan, None), (math.inf, None), (-math.inf, None), (1.5, 1.5), ("NaN", "NaN"),
     ({"a": [1.0, math.nan, {"b": (math.inf, 2)}]}, {"a": [1.0, None, {"b": [None, 2]}]})],
    ids=["nan", "inf", "-inf", "finite", "text", "nested"],
)  # fmt: skip
def test_finite_replaces_non_finite_floats(value, expected) -> None:
    assert finite(value) == expected


def test_dumps_is_strict_json() -> None:
    text = dumps({"loss": float(np.float64("nan")), "n": 3})
    assert text == '{"loss": null, "n": 3}'
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c}")) == {"loss": None, "n": 3}
