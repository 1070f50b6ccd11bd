"""The sinusoidal position encoding (Vaswani et al., Appendix A.1; the paper's Eq. 2) in numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embtool.core.errors import BadInput
from embtool.tables.positional import MAX_LEN_LIMIT, check_max_len, encodings, sinusoidal


def test_sinusoidal_formula() -> None:
    pe = sinusoidal(50, 6)
    i, j = 7, 3  # odd column: cos(i / 10000^((j-1)/D))
    assert pe.dtype == np.float32 and pe.shape == (50, 6)
    assert pe[i, j] == pytest.approx(math.cos(i / 10000 ** ((j - 1) / 6)), abs=1e-6)
    assert pe[i, 2] == pytest.approx(math.sin(i / 10000 ** (2 / 6)), abs=1e-6)
    assert sinusoidal(3, 5).shape == (3, 5)  # odd D
    assert sinusoidal(4, 2, base=100.0)[1, 0] == pytest.approx(math.sin(1.0), abs=1e-6)


def test_encodings_of_any_positions_are_the_rows_of_the_table() -> None:
    positions = np.array([4999, 0, 17, 17, 2500])
    assert np.array_equal(encodings(positions, 300), sinusoidal(5000, 300)[positions])


def test_the_library_exports_it() -> None:
    import embtool

    assert embtool.sinusoidal is sinusoidal


@pytest.mark.parametrize("max_len", [0, -1, MAX_LEN_LIMIT + 1, 10**30])
def test_max_len_is_bounded_with_a_message_naming_the_option(max_len) -> None:
    with pytest.raises(BadInput, match=r"--max-len must be between 1 and 1,000,000"):
        check_max_len(max_len)
    assert check_max_len(MAX_LEN_LIMIT) == MAX_LEN_LIMIT
