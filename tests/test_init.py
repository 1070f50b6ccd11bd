"""`from embtool import …`: every name the README and docs/python-api.md show, lazily, and the very object its module defines."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import embtool

# what the README, docs/python-api.md and DESIGN §5 promise users can import from the package
PROMISED = {
    "EmbeddingTable",
    "load",
    "save",
    "standardize",
    "shuffle",
    "scale",
    "posenc",
    "xavier",
    "table_stats",
    "extract",
    "align",
    "train",
    "TrainConfig",
    "experiment",
    "build_report",
    "build_vocab",
    "load_task",
    "evaluate_analogies",
    "EmbtoolError",
}


@pytest.mark.parametrize("name", sorted(set(embtool._EXPORTS)))
def test_each_export_is_its_modules_object(name) -> None:
    module = importlib.import_module(embtool._EXPORTS[name])
    assert getattr(embtool, name) is getattr(module, name)


def test_the_promised_names_are_exported() -> None:
    assert PROMISED <= set(embtool.__all__)
    assert embtool.experiment is importlib.import_module("embtool.experiment")
    assert callable(embtool.posenc) and callable(embtool.train)  # functions, not modules of those names
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        embtool.nope  # noqa: B018


def test_importing_the_package_imports_no_torch() -> None:
    code = "import embtool, sys; embtool.TrainConfig; embtool.build_report; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("package", ["embtool.training", "embtool.experiment.report"])
def test_subpackages_export_lazily_what_their_modules_define(package) -> None:
    mod = importlib.import_module(package)
    for name in mod.__all__:
        obj = getattr(mod, name)
        assert getattr(importlib.import_module(obj.__module__), name) is obj
    with pytest.raises(AttributeError):
        mod.nope  # noqa: B018


def test_the_experiment_package_lends_the_runner_names_lazily() -> None:
    runner = importlib.import_module("embtool.experiment.runner")
    experiment = importlib.import_module("embtool.experiment")
    assert set(experiment.__all__) == set(runner.__all__)
    for name in experiment.__all__:
        assert getattr(experiment, name) is getattr(runner, name)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        experiment.nope  # noqa: B018
    code = "import embtool.experiment, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
