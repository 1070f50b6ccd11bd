"""The grid's axes: --seeds, --grid, and each point's folder name."""

from __future__ import annotations

import pytest

from embtool.core.errors import BadInput
from embtool.experiment import gridaxes as lib


@pytest.mark.parametrize(
    ("text", "seeds"), [("3", [1, 2, 3]), ("1", [1]), ("1,5,7", [1, 5, 7]), ("0,0,2", [0, 2])]
)
def test_parse_seeds(text, seeds) -> None:
    assert lib.parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["0", "-1", "x", "1,x", ","])
def test_parse_seeds_rejects(text) -> None:
    with pytest.raises(BadInput, match="--seeds"):
        lib.parse_seeds(text)


@pytest.mark.parametrize(
    ("point", "label"),
    [
        ({"layers": 6, "lr": 2e-4}, "layers=6,lr=0.0002"),
        ({"data_dir": "../../../../../data"}, "data_dir=.._.._.._.._.._data~"),
        ({"data_dir": "a/b"}, "data_dir=a_b~"),
        ({"data_dir": "a b"}, "data_dir=a_b~"),
        ({"data_dir": "x" * 300}, "data_dir=" + "x" * 111 + "~"),
    ],
)
def test_a_grid_point_is_one_safe_folder_name(point, label) -> None:
    got = lib.point_label(point)
    assert got.startswith(label) and "/" not in got and got not in (".", "..") and len(got) <= 129
    assert got == label or len(got) == len(label) + 8  # a hash of the exact values ends an altered name


@pytest.mark.parametrize(
    ("task", "seeds"), [("multi30k", [1, 2, 3, 4]), ("iwslt2017", [1, 2, 3, 4]), ("sst2", [1, 2, 3, 4, 5]),
                        ("mnli", [1, 2, 3])],
)  # fmt: skip
def test_paper_seeds_are_the_appendixs_counts(task, seeds) -> None:
    assert lib.paper_seeds(task) == seeds


def test_paper_seeds_of_an_unknown_task_lists_the_tasks() -> None:
    with pytest.raises(BadInput, match="unknown task 'wmt'; valid choices: multi30k"):
        lib.paper_seeds("wmt")
