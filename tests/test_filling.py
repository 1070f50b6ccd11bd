"""filling: fill rules and coverage figures (fill_missing's statistics are tested in test_alignment)."""

from __future__ import annotations

import numpy as np
import pytest

from embtool.core.errors import BadInput
from embtool.tables.filling import Coverage, check_method, corpus_share, fill_missing
from embtool.text.vocabfile import Vocabulary


def test_coverage_line_and_share() -> None:
    cov = Coverage(3, 1, 2, corpus_share(Vocabulary(["a", "b", "c"], [6, 3, 1]), [0, 2]))
    assert cov.total == 6 and cov.share == pytest.approx(0.7)
    assert cov.line() == "3 found, 1 composed, 2 missing of 6 tokens; covers 70.00% of corpus tokens"


@pytest.mark.parametrize("method, row", [("zero", [0.0, 0.0]), ("mean", [2.0, 3.0])])
def test_fill_rules(method, row) -> None:
    x = np.array([[1, 2], [3, 4], [9, 9]], np.float32)
    np.testing.assert_array_equal(fill_missing(x, [2], method)[2], row)
    with pytest.raises(BadInput, match="valid choices: normal, mean, zero, xavier"):
        check_method("copy")
