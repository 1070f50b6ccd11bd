"""JSON as other programs read it: NaN and ±Inf are not JSON, so they are written as null.

Python's ``json`` writes bare ``NaN``/``Infinity`` by default; jq, JavaScript and most parsers
reject them. Every JSON embtool prints or writes goes through ``dumps``.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """``value`` with every non-finite float (at any depth of dicts, lists, tuples) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` with non-finite numbers as null (and never a bare NaN)."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)
