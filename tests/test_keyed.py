"""keyed: a table's rows as float32 numpy whatever holds them, and gensim's key lookup."""

from __future__ import annotations

import numpy as np
import pytest

from embtool.core.errors import BadInput
from embtool.eval.keyed import Keys, as_float32

ROWS = np.array([[1.0, -2.5, 3.0], [0.1, 0.0, -7.25]], dtype=np.float32)  # (2, 3)


def test_float32_numpy_rows_are_not_copied() -> None:
    assert as_float32(ROWS) is ROWS


CASES = {  # name → rows in some form, and the float32 values expected
    "numpy float16": (lambda: ROWS.astype(np.float16), ROWS.astype(np.float16).astype(np.float32)),
    "numpy float64": (lambda: ROWS.astype(np.float64), ROWS),
    "numpy, Fortran order": (lambda: np.asfortranarray(ROWS), ROWS),
    "numpy, a slice of columns": (lambda: np.hstack([ROWS, ROWS])[:, ::2], np.hstack([ROWS, ROWS])[:, ::2]),
    "torch float32": (lambda: pytest.importorskip("torch").from_numpy(ROWS.copy()), ROWS),
    "torch, requires grad": (lambda: pytest.importorskip("torch").tensor(ROWS, requires_grad=True), ROWS),
    "torch bfloat16": (
        lambda: pytest.importorskip("torch").tensor(ROWS).bfloat16(),
        np.array([[1.0, -2.5, 3.0], [0.10009765625, 0.0, -7.25]], dtype=np.float32),
    ),  # bf16 keeps 8 bits: 0.1 rounds
}


@pytest.mark.parametrize("name", list(CASES))
def test_rows_become_contiguous_float32(name: str) -> None:
    make, expected = CASES[name]
    out = as_float32(make())
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([[1.0, 2.0]], "must be a numpy array or a torch tensor, got list"),
        (np.zeros(3, dtype=np.float32), r"must be a 2-D \(N, D\) array, got shape \(3,\)"),
    ],
    ids=["list", "1-D"],
)
def test_other_rows_are_an_error(rows: object, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        as_float32(rows)


TOKENS = ["Paris", "paris", "PARIS", "berlin", "Berlin", "x"]


@pytest.mark.parametrize(
    ("case_sensitive", "keys", "first", "variants"),
    [
        (
            False,
            ["PARIS", "PARIS", "PARIS", "BERLIN", "BERLIN", "X"],
            {"PARIS": 0, "BERLIN": 3, "X": 5},  # the first case variant answers for the key
            {"PARIS": [0, 1, 2], "BERLIN": [3, 4]},
        ),
        (True, TOKENS, {t: i for i, t in enumerate(TOKENS)}, {}),
    ],
    ids=["upper-cased", "case-sensitive"],
)
def test_keys_as_gensim_sees_them(case_sensitive: bool, keys: list, first: dict, variants: dict) -> None:
    k = Keys.build(TOKENS, case_sensitive)
    assert (k.keys, k.first, k.variants) == (keys, first, variants)
    assert k.group.tolist() == [first[key] for key in keys]


@pytest.mark.parametrize(
    ("case_sensitive", "word", "row"),
    [
        (False, "pArIs", 0),
        (False, "berlin", 3),
        (False, "rome", -1),
        (True, "paris", 1),
        (True, "PARIS", 2),
        (True, "BERLIN", -1),
    ],
)
def test_row_of_a_word(case_sensitive: bool, word: str, row: int) -> None:
    assert Keys.build(TOKENS, case_sensitive).row(word) == row
