"""`report` on hand-made run folders with known numbers (DESIGN §4)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest
import torch

from embtool.report import plot, render
from embtool.report import runs as lib
from embtool.table import save


def _h(op: str, **args) -> dict:
    return {"op": op, "args": args, "embtool": "0.1.0"}


GLOVE = {"path": "glove.safetensors", "sha256": "a" * 64, "source": "glove:g.txt", "tokenizer": "spacy:de",
         "history": [_h("extract")], "n": 10, "dim": 4}
GLOVE_X = {**GLOVE, "sha256": "b" * 64, "history": [_h("extract"), _h("standardize", to="xavier")]}


def write_run(
    folder: Path,
    *,
    task: str = "multi30k",
    seed: int = 1,
    tables: dict | None = None,
    result: float | None = 30.0,
    curve: list[float] = (10.0, 20.0, 30.0),
    best_epoch: int = 3,
    mismatched: float | None = None,
    train: dict | None = None,
    d_model: int = 4,
    vocab: tuple[int, int] = (50, 40),
) -> Path:
    """A run folder as `train` writes it; ``result=None`` leaves it incomplete (no test.json)."""
    kind = "translation" if task in ("multi30k", "iwslt2017") else "classification"
    folder.mkdir(parents=True)
    config = {
        "embtool": "0.1.0", "task": task, "kind": kind, "seed": seed,
        "model": {"d_model": d_model, "layers": 3},
        "train": {"epochs": len(curve), "lr": 2e-4, "freeze_emb": False, "no_posenc": False, "seed": seed,
                  **(train or {})},
        "tables": tables if tables is not None else {"src": None, "tgt": None},
        "vocab": {"src_size": vocab[0], "tgt_size": vocab[1], "src_missing": 0, "tgt_missing": 0},
        "device": "cpu",
    }
    (folder / "config.json").write_text(json.dumps(config))
    key = "val_bleu" if kind == "translation" else "val_acc"
    lines = []
    for i, v in enumerate(curve, start=1):
        row = {"epoch": i, "train_loss": 5.0 / i, "val_loss": 4.0 / i, key: v, "seconds": 1.0, "tokens_per_s": 9.0}
        if mismatched is not None:
            row["val_acc_mismatched"] = v
        lines.append(json.dumps(row))
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if result is not None:
        if kind == "translation":
            test = {"bleu": result, "signature": "BLEU|nrefs:1", "best_epoch": best_epoch, "split": "test", "beam": 1}
        else:
            test = {"best_val_acc": result, "best_epoch": best_epoch}
            if mismatched is not None:
                test["best_val_acc_mismatched"] = mismatched
        (folder / "test.json").write_text(json.dumps(test))
    return folder


@pytest.fixture
def grid(tmp_path: Path) -> Path:
    """Multi30k: Xavier ×3 (37.0, 37.5, 38.0), GloVe_Xavier ×2 (38.5, 38.9), GloVe ×1 (34.1) plus an
    incomplete GloVe run and a failed one; SST2: Xavier ×2 (80 %, 82 %)."""
    runs = tmp_path / "runs"
    for seed, (bleu, ep) in enumerate([(37.0, 11), (37.5, 12), (38.0, 12)], start=1):
        write_run(runs / f"xavier/s{seed}", seed=seed, result=bleu, best_epoch=ep)
    for seed, bleu in enumerate([38.5, 38.9], start=1):
        write_run(runs / f"glove_x/s{seed}", seed=seed, result=bleu, tables={"src": GLOVE_X, "tgt": GLOVE_X})
    write_run(runs / "glove/s1", seed=1, result=34.1, tables={"src": GLOVE, "tgt": GLOVE}, best_epoch=20)
    write_run(runs / "glove/s2", seed=2, result=None, tables={"src": GLOVE, "tgt": GLOVE}, curve=[1.0, 2.0])
    bad = write_run(runs / "glove/s3", seed=3, result=99.0, tables={"src": GLOVE, "tgt": GLOVE})
    (bad / "test.json").write_text("{not json")
    (runs / "checkpoints/bert").mkdir(parents=True)  # a Hugging Face checkpoint's config.json: no run
    (runs / "checkpoints/bert/config.json").write_text('{"model_type": "bert"}')
    for seed, acc in enumerate([80.0, 82.0], start=1):
        write_run(runs / f"sst2/s{seed}", task="sst2", seed=seed, result=acc, curve=[70.0, 80.0], best_epoch=seed)
    return runs


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


def test_markdown_shows_table1_bold_seeds_and_left_out_runs(grid: Path) -> None:
    text = render.markdown(lib.build_report([grid], table_stats=False))
    table1 = text.split("## Table 2")[0]
    rows = {line.split("|")[1].strip(): line for line in table1.splitlines() if line.startswith("| ")}
    assert "Multi30k BLEU (σ)" in text and "SST2 Acc (σ)" in text
    assert "| **38.7 (0.3)** | 3.0 | 2 |" in rows["GloVe_Xavier"]
    assert "| 37.5 (0.5) | 11.7 | 3 | **81.0 (1.4)** | 1.5 | 2 |" in rows["Xavier"]
    assert "| 34.1 (–) | 20.0 | 1 | – | – | – |" in rows["GloVe"]
    assert "## Runs left out" in text and "incomplete: 2 epoch(s)" in text and "failed: test.json" in text
    order = [line.split("|")[1].strip() for line in table1.splitlines() if line.startswith("| ")]
    assert order[2:] == ["Xavier", "GloVe", "GloVe_Xavier"]  # the paper's row order


def test_mnli_matched_and_mismatched(tmp_path: Path) -> None:
    for seed, (m, mm) in enumerate([(60.0, 61.0), (62.0, 60.0)], start=1):
        write_run(tmp_path / f"r{seed}", task="mnli", seed=seed, result=m, mismatched=mm, best_epoch=seed + 2,
                  curve=[50.0, 60.0], tables={"src": GLOVE_X, "tgt": None})  # classification: no target side
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


def test_same_name_different_model_stays_apart_and_settings_mismatch_is_noted(tmp_path: Path) -> None:
    write_run(tmp_path / "a", seed=1, d_model=4, vocab=(50, 40), result=30.0)
    write_run(tmp_path / "b", seed=1, d_model=8, vocab=(60, 40), result=31.0)
    write_run(tmp_path / "c", seed=2, d_model=8, vocab=(60, 40), result=32.0, train={"lr": 1e-3})
    write_run(tmp_path / "d", seed=1, result=20.0, train={"freeze_emb": True, "posenc": False})
    rep = lib.build_report([tmp_path], table_stats=False)
    names = sorted(c.name for c in rep.cells)
    assert names == ["Xavier (D=4, V=50/40)", "Xavier (D=8, V=60/40)", "Xavier [frozen, no posenc]"]
    (c8,) = [c for c in rep.cells if "D=8" in c.name]
    assert c8.notes == ["runs differ in lr"]
    assert "runs differ in lr" in render.markdown(rep)


def test_table2_from_table_files_and_xavier_figures(tmp_path: Path, make_table) -> None:
    table = make_table(torch.tensor([[-2.0, 1.0], [0.5, 4.0]]), source="glove:g.txt")
    save(table, tmp_path / "g.safetensors")
    info = {"path": str(tmp_path / "g.safetensors"), "sha256": lib.sha256_file(tmp_path / "g.safetensors"),
            "source": "glove:g.txt", "history": []}
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


def test_csv_and_json(grid: Path) -> None:
    rep = lib.build_report([grid], table_stats=False)
    rows = list(csv.DictReader(io.StringIO(render.to_csv(rep))))
    assert [(r["task"], r["initialisation"], r["seeds"]) for r in rows] == [
        ("multi30k", "Xavier", "3"), ("multi30k", "GloVe", "1"), ("multi30k", "GloVe_Xavier", "2"),
        ("sst2", "Xavier", "2"),
    ]
    assert rows[1]["std"] == "" and float(rows[0]["std"]) == pytest.approx(0.5)
    data = render.to_json(rep)
    assert json.loads(json.dumps(data)) == data
    assert sum(not r["complete"] for r in data["runs"]) == 2


def test_plot_has_one_panel_per_task(grid: Path, tmp_path: Path) -> None:
    import matplotlib.image

    rep = lib.build_report([grid], table_stats=False)
    assert lib.curve(_cell(rep, "multi30k", "Xavier").runs, "val_bleu") == ([1.0, 2.0, 3.0], [10.0, 20.0, 30.0],
                                                                               [0.0, 0.0, 0.0])
    png = tmp_path / "curves.png"
    assert plot.plot_curves(rep, png) == ["Multi30k", "SST2"]
    img = matplotlib.image.imread(png)  # (H, W, RGBA)
    w, h = (round(v * plot.DPI) for v in plot.PANEL_INCHES)
    assert img.shape[:2] == (h, 2 * w)
    for k in range(2):  # every panel has drawn lines: coloured pixels, not just white and grey
        panel = img[:, k * w : (k + 1) * w, :3]
        coloured = (panel.max(axis=2) - panel.min(axis=2)) > 0.3
        assert coloured.sum() > 100


def test_cli_markdown_files_and_json(embtool, grid: Path, tmp_path: Path) -> None:
    out, png, table = tmp_path / "r.md", tmp_path / "c.png", tmp_path / "t.csv"
    r = embtool("report", str(grid), "-o", str(out), "--plot", str(png), "--csv", str(table))
    assert r.code == 0, r.stderr
    assert r.text == "" and "**38.7 (0.3)**" in out.read_text() and png.stat().st_size > 0
    assert table.read_text().startswith("task,kind,initialisation")
    r = embtool("report", str(grid / "xavier"), str(grid / "glove" / "s1"))
    assert r.code == 0 and "| Xavier | **37.5 (0.5)** |" in r.text and "34.1" in r.text
    r = embtool("report", str(grid), str(grid / "xavier"), "--json", "-o", str(tmp_path / "again.md"))
    assert r.code == 0 and len(json.loads(r.text)["cells"]) == 4  # runs given twice are read once
    assert len(json.loads(r.text)["runs"]) == 10 and (tmp_path / "again.md").read_text() == out.read_text()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "nope", "no such run folder"),
        (lambda p: p, "no run folders (config.json) in it"),
        (lambda p: (p / "x.txt").write_text("x") and p / "x.txt", "not a run folder"),
    ],
)
def test_cli_bad_input(embtool, tmp_path: Path, make, message) -> None:
    r = embtool("report", str(make(tmp_path)))
    assert r.code == 2
    assert r.stderr.startswith("embtool: error: ") and message in r.stderr and len(r.stderr.splitlines()) == 1


def test_plot_without_complete_runs_is_an_error(embtool, tmp_path: Path) -> None:
    write_run(tmp_path / "r", result=None)
    r = embtool("report", str(tmp_path), "--plot", str(tmp_path / "c.png"))
    assert r.code == 2 and "no complete runs" in r.stderr


def test_experiment_boxes_name_their_xavier_rows_and_group_rows(tmp_path: Path) -> None:
    t5 = {"source": "hf:google/mt5-base", "history": [_h("extract")]}
    t5x = {"source": "hf:google/mt5-base", "history": [_h("extract"), _h("standardize", to="xavier")]}
    x_t5 = {"source": "xavier", "history": [_h("init", method="xavier"),
                                             _h("standardize", to="t5.safetensors", to_source="hf:google/mt5-base")]}
    glove_box = {"x": None, "g": GLOVE, "gx": GLOVE_X}
    t5_box = {"x": None, "t": t5, "tx": t5x, "xt": x_t5}
    for box, d, runs in (("glove", 4, glove_box), ("t5", 8, t5_box)):
        for key, info in runs.items():
            tables = {"src": info, "tgt": info} if info else None
            write_run(tmp_path / box / key, d_model=d, vocab=(50 + d, 40 + d), tables=tables)
    rep = lib.build_report([tmp_path], table_stats=False)
    assert [c.name for c in rep.cells] == [
        "Xavier (GloVe box)", "GloVe", "GloVe_Xavier", "Xavier (mT5 box)", "mT5", "mT5_Xavier", "Xavier_mT5"]
    table1 = render.markdown(rep).split("## Table 2")[0]
    rows = [line.split("|")[1].strip() for line in table1.splitlines() if line.startswith("| ")][2:]
    assert rows == [c.name for c in rep.cells]
