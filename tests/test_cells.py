"""Report cells: Table 1 means and σ over seeds, grouping by name, model and settings, Table 2 figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from conftest import GLOVE, GLOVE_X, _h, write_run
from embtool.core.atomic import sha256_file
from embtool.experiment.report import cells as lib
from embtool.experiment.report import render
from embtool.tables.table import save


def _cell(rep: lib.Report, task: str, name: str) -> lib.Cell:
    return next(c for c in rep.cells if (c.task, c.name) == (task, name))


def test_means_sigma_ddof1_best_and_left_out(grid: Path) -> None:
    rep = lib.build_report([grid], table_stats=False)
    x = _cell(rep, "multi30k", "Xavier")
    assert (x.n, x.mean, x.std) == (3, pytest.approx(37.5), pytest.approx(0.5))  # ddof=1
    assert x.epoch == pytest.approx(35 / 3)
    gx = _cell(rep, "multi30k", "GloVe_Xavier")
    assert gx.mean == pytest.approx(38.7) and gx.std == pytest.approx(math.sqrt(0.08))
    g = _cell(rep, "multi30k", "GloVe")
    assert (g.n, g.mean, g.std) == (1, pytest.approx(34.1), None)  # the incomplete and failed runs are out
    assert [c.name for c in rep.cells if c.best] == ["GloVe_Xavier", "Xavier"]  # best per task
    sst = _cell(rep, "sst2", "Xavier")
    assert sst.mean == pytest.approx(81.0) and sst.std == pytest.approx(math.sqrt(2.0))  # in %
    left = {r.path.name: r.status for r in rep.left_out}
    assert set(left) == {"s2", "s3"}
    assert left["s2"].startswith("incomplete: 2 epoch(s)") and left["s3"].startswith("failed: test.json")


def test_mnli_matched_and_mismatched(tmp_path: Path) -> None:
    for seed, (m, mm) in enumerate([(60.0, 61.0), (62.0, 60.0)], start=1):
        write_run(
            tmp_path / f"r{seed}",
            task="mnli",
            seed=seed,
            result=m,
            mismatched=mm,
            best_epoch=seed + 2,
            curve=[50.0, 60.0],
            tables={"src": GLOVE_X, "tgt": None},
        )  # classification: no target side
    t = json.loads((tmp_path / "r2/test.json").read_text())
    del t["best_epoch"]  # then from metrics.jsonl: the epoch of the lowest validation loss
    (tmp_path / "r2/test.json").write_text(json.dumps(t))
    rep = lib.build_report([tmp_path], table_stats=False)
    (c,) = rep.cells
    assert c.name == "GloVe_Xavier"
    assert c.mean == pytest.approx(61.0) and c.mean2 == pytest.approx(60.5)
    assert c.epoch == pytest.approx(2.5) and c.epoch2 == pytest.approx(2.5)
    text = render.markdown(rep)
    assert "MNLI Match (σ)/Mismatch (σ)" in text and "**61.0 (1.4)**/**60.5 (0.7)** | 2.5/2.5 | 2" in text


def test_same_name_different_model_stays_apart(tmp_path: Path) -> None:
    write_run(tmp_path / "a", seed=1, d_model=4, vocab=(50, 40), result=30.0)
    write_run(tmp_path / "b", seed=1, d_model=8, vocab=(60, 40), result=31.0)
    write_run(tmp_path / "c", seed=2, d_model=8, vocab=(60, 40), result=32.0)
    write_run(tmp_path / "d", seed=1, result=20.0, train={"freeze_emb": True, "posenc": False})
    rep = lib.build_report([tmp_path], table_stats=False)
    names = sorted(c.name for c in rep.cells)
    assert names == ["Xavier (D=4, V=50/40)", "Xavier (D=8, V=60/40)", "Xavier [frozen, no posenc]"]
    (c8,) = [c for c in rep.cells if "D=8" in c.name]
    assert c8.n == 2 and c8.mean == pytest.approx(31.5) and c8.notes == []


def test_runs_that_differ_in_a_setting_are_cells_of_their_own(tmp_path: Path) -> None:
    """An `experiment --grid lr=…` box: one cell per setting point, labelled with what differs;
    the seed, device and input paths may differ inside a cell."""
    for seed in (1, 2):
        for lr in (2e-4, 1e-3):
            write_run(
                tmp_path / f"lr{lr}-s{seed}",
                seed=seed,
                result=30.0 + seed + 1000 * lr,
                train={"lr": lr, "device": f"cuda:{seed}", "out": f"runs/{seed}"},
            )
    rep = lib.build_report([tmp_path], table_stats=False)
    assert sorted((c.name, c.n) for c in rep.cells) == [("Xavier [lr=0.0002]", 2), ("Xavier [lr=0.001]", 2)]
    (fast,) = [c for c in rep.cells if "0.001" in c.name]
    assert fast.mean == pytest.approx(32.5) and fast.notes == []
    assert "Xavier [lr=0.001]" in render.markdown(rep)


def test_table2_from_table_files_and_xavier_figures(tmp_path: Path, make_table) -> None:
    table = make_table(torch.tensor([[-2.0, 1.0], [0.5, 4.0]]), source="glove:g.txt")
    save(table, tmp_path / "g.safetensors")
    info = {
        "path": str(tmp_path / "g.safetensors"),
        "sha256": sha256_file(tmp_path / "g.safetensors"),
        "source": "glove:g.txt",
        "history": [],
    }
    write_run(tmp_path / "runs/g", tables={"src": info, "tgt": info})
    write_run(tmp_path / "runs/x", vocab=(46, 40), d_model=4)
    changed = {**info, "sha256": "0" * 64, "source": "word2vec:w.bin"}
    write_run(tmp_path / "runs/w", tables={"src": changed, "tgt": changed})
    rep = lib.build_report([tmp_path / "runs"])
    g = _cell(rep, "multi30k", "GloVe").table
    assert g is not None and (g["min"], g["max"], g["mean"]) == (-2.0, 4.0, pytest.approx(0.875))
    assert g["std"] == pytest.approx(float(torch.tensor([-2.0, 1.0, 0.5, 4.0]).std()))
    x = _cell(rep, "multi30k", "Xavier").table
    assert x is not None and x["max"] == pytest.approx(math.sqrt(6 / 50)) and x["std"] == pytest.approx(0.2)
    text = render.markdown(rep)
    assert "| -2.00, 4.00 | 0.88 (2.46) |" in text and "| -0.35, 0.35 | ≈0 (0.2) |" in text
    assert "sha256 differs" in text  # word2vec's file changed since its run: said, not used


def test_experiment_boxes_name_their_xavier_rows_and_group_rows(tmp_path: Path) -> None:
    t5 = {"source": "hf:google/mt5-base", "history": [_h("extract")]}
    t5x = {"source": "hf:google/mt5-base", "history": [_h("extract"), _h("standardize", to="xavier")]}
    x_t5 = {
        "source": "xavier",
        "history": [
            _h("init", method="xavier"),
            _h("standardize", to="t5.safetensors", to_source="hf:google/mt5-base"),
        ],
    }
    glove_box = {"x": None, "g": GLOVE, "gx": GLOVE_X}
    t5_box = {"x": None, "t": t5, "tx": t5x, "xt": x_t5}
    for box, d, runs in (("glove", 4, glove_box), ("t5", 8, t5_box)):
        for key, info in runs.items():
            tables = {"src": info, "tgt": info} if info else None
            write_run(tmp_path / box / key, d_model=d, vocab=(50 + d, 40 + d), tables=tables)
    rep = lib.build_report([tmp_path], table_stats=False)
    assert [c.name for c in rep.cells] == [
        "Xavier (GloVe box)",
        "GloVe",
        "GloVe_Xavier",
        "Xavier (mT5 box)",
        "mT5",
        "mT5_Xavier",
        "Xavier_mT5",
    ]
    table1 = render.markdown(rep).split("## Table 2")[0]
    rows = [line.split("|")[1].strip() for line in table1.splitlines() if line.startswith("| ")][2:]
    assert rows == [c.name for c in rep.cells]


def test_a_run_from_before_a_setting_existed_had_its_default(tmp_path):
    old = write_run(tmp_path / "runs/old", seed=1, result=30.0)
    write_run(tmp_path / "runs/new", seed=2, result=32.0, train={"norm": "post", "warmup": 0})
    write_run(tmp_path / "runs/admin", seed=3, result=33.0, train={"norm": "admin"})
    assert "norm" not in json.loads((old / "config.json").read_text())["train"]
    names = sorted(c.name for c in lib.build_report([tmp_path / "runs"], table_stats=False).cells)
    assert names == ["Xavier [norm=admin]", "Xavier [norm=post]"]
