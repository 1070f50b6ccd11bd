"""Report rendering: Markdown, CSV and JSON, and `embtool report` as a user runs it."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from embtool.experiment.report import cells as lib
from embtool.experiment.report import render


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


def test_csv_and_json(grid: Path) -> None:
    rep = lib.build_report([grid], table_stats=False)
    rows = list(csv.DictReader(io.StringIO(render.to_csv(rep))))
    assert [(r["task"], r["initialisation"], r["seeds"]) for r in rows] == [
        ("multi30k", "Xavier", "3"),
        ("multi30k", "GloVe", "1"),
        ("multi30k", "GloVe_Xavier", "2"),
        ("sst2", "Xavier", "2"),
    ]
    assert rows[1]["std"] == "" and float(rows[0]["std"]) == pytest.approx(0.5)
    data = render.to_json(rep)
    assert json.loads(json.dumps(data)) == data
    assert sum(not r["complete"] for r in data["runs"]) == 2


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


def test_diverged_runs_are_counted_in_their_cell_and_left_out_of_its_mean(tmp_path):
    from conftest import write_run
    from embtool.experiment.report import build_report
    from embtool.experiment.report.render import cell_dicts, markdown

    runs = tmp_path / "runs"
    for seed, bleu in ((1, 37.0), (2, 38.0)):
        write_run(runs / f"post/s{seed}", seed=seed, result=bleu, train={"norm": "post"})
    gone = write_run(runs / "post/s3", seed=3, result=None, train={"norm": "post"})
    (gone / "test.json").write_text(json.dumps({"status": "diverged", "epoch": 2, "step": 7, "loss": None}))
    for seed in (1, 2):
        d = write_run(runs / f"deep/s{seed}", seed=seed, result=None, train={"norm": "admin"})
        (d / "test.json").write_text(json.dumps({"status": "diverged", "epoch": 1, "step": 3, "loss": None}))
    report = build_report([runs], table_stats=False)
    assert not report.left_out
    text = markdown(report)
    assert "| **37.5 (0.7)**; 1 of 3 diverged | 3.0 | 3 |" in text
    assert "| diverged | – | 2 |" in text
    assert "| diverged (epoch 2, step 7) |" in text
    rows = {r["initialisation"]: r for r in cell_dicts(report)}
    assert [(r["seeds"], r["diverged"], r["mean"]) for r in rows.values()] == [
        (3, 1, 37.5),
        (2, 2, None),
    ] or [(r["seeds"], r["diverged"], r["mean"]) for r in rows.values()] == [(2, 2, None), (3, 1, 37.5)]


def _stall(folder: Path) -> Path:
    """Mark a run folder's test.json as `train` marks a run that learned nothing."""
    test = json.loads((folder / "test.json").read_text())
    (folder / "test.json").write_text(json.dumps({"status": "stalled", "stalled": "loss flat", **test}))
    return folder


def test_stalled_runs_are_averaged_marked_in_their_cell_and_explained(tmp_path, embtool):
    from conftest import write_run

    runs = tmp_path / "runs"
    for seed, bleu in ((1, 37.0), (2, 38.0)):
        write_run(runs / f"post/s{seed}", seed=seed, result=bleu, train={"norm": "post"})
    _stall(write_run(runs / "post/s3", seed=3, result=0.0, train={"norm": "post"}))
    for seed in (1, 2):
        _stall(write_run(runs / f"deep/s{seed}", seed=seed, result=0.5, train={"norm": "admin"}))
    rep = lib.build_report([runs], table_stats=False)
    assert not rep.left_out
    text = render.markdown(rep)
    assert "| **25.0 (21.7)**; 1 of 3 stalled | 3.0 | 3 |" in text  # (37 + 38 + 0) / 3: in the mean
    assert "| 0.5 (0.0); 2 of 2 stalled | 3.0 | 2 |" in text
    assert "\nStalled: a run of 2 or more epochs whose validation loss ended above" in text
    assert "| 0.0 (stalled) |" in text  # the run's line
    rows = {r["initialisation"]: r for r in csv.DictReader(io.StringIO(render.to_csv(rep)))}
    assert sorted((r["seeds"], r["stalled"], r["diverged"]) for r in rows.values()) == [
        ("2", "2", "0"),
        ("3", "1", "0"),
    ]
    data = render.to_json(rep)
    assert sorted(r["status"] for r in data["runs"]) == ["complete", "complete"] + ["stalled"] * 3
    assert "Stalled:" not in render.markdown(lib.build_report([runs / "post/s1"], table_stats=False))
    r = embtool("report", str(runs))
    assert r.code == 0 and "1 of 3 stalled" in r.text


def _broken_runs(root: Path) -> list[Path]:
    from conftest import write_run

    a = write_run(root / "a")
    (a / "metrics.jsonl").write_text("{nope\n")
    b = write_run(root / "b")
    (b / "test.json").write_text("{")
    c = write_run(root / "c")
    (c / "config.json").write_text("[")
    d = write_run(root / "d")
    (d / "metrics.jsonl").write_text("")  # a result with no epoch: incomplete, not complete
    return [a, b, c, d]


@pytest.mark.parametrize("extra", [[], ["--plot", "c.png"], ["--json"], ["-o", "r.md", "--csv", "t.csv"]])
def test_cli_runs_that_are_all_broken_are_an_error(embtool, tmp_path: Path, extra) -> None:
    _broken_runs(tmp_path / "runs")
    r = embtool("report", str(tmp_path / "runs"), *extra, cwd=tmp_path)
    assert r.code == 2 and r.text == "" and len(r.stderr.splitlines()) == 1, r.stderr
    line = r.stderr
    assert line.startswith("embtool: error: no complete runs to report: 4 run(s) skipped, the first ")
    assert str(tmp_path / "runs" / "a") + ": metrics.jsonl line 1 is not valid JSON" in line
    assert not any((tmp_path / name).exists() for name in ("c.png", "r.md", "t.csv"))


def test_cli_reports_the_good_runs_beside_broken_ones(embtool, tmp_path: Path) -> None:
    from conftest import write_run

    _broken_runs(tmp_path / "runs")
    write_run(tmp_path / "runs" / "good", result=31.0)
    r = embtool("report", str(tmp_path / "runs"))
    assert r.code == 0, r.stderr
    assert "| Xavier | **31.0 (–)** | 3.0 | 1 |" in r.text
    assert "5 run(s): 1 complete, 4 incomplete or failed" in r.text
    assert "incomplete: no epoch in metrics.jsonl" in r.text  # the empty one is listed, not counted


SIG = "nrefs:1|case:lc|eff:no|tok:13a|smooth:exp|version:2.6.0"
SIG_TOK = "nrefs:1|case:lc|eff:no|tok:none|smooth:exp|version:2.6.0"


def _both_bleus(tmp_path: Path) -> Path:
    """Two seeds whose test.json holds both BLEUs (as train writes them since issue 25)."""
    from conftest import write_run

    for seed, (b, t) in enumerate(((30.0, 40.0), (32.0, 44.0)), start=1):
        run = write_run(tmp_path / "runs" / f"s{seed}", seed=seed, result=b)
        test = json.loads((run / "test.json").read_text())
        test.update(signature=SIG, bleu_tok=t, signature_tok=SIG_TOK)
        (run / "test.json").write_text(json.dumps(test))
    return tmp_path / "runs"


def test_translation_shows_both_bleus_side_by_side_each_with_its_signature(tmp_path: Path) -> None:
    """Issue 25.2: which BLEU is the paper's is not known; by default both, named for what they are."""
    text = render.markdown(lib.build_report([_both_bleus(tmp_path)], table_stats=False))
    assert "| Multi30k BLEU (σ)/BLEU-tok (σ) | Epoch | Seeds |" in text
    assert "| Xavier | **31.0 (1.4)**/**42.0 (2.8)** | 3.0 | 2 |" in text
    assert "comparable across papers" in text and "closest to the paper's pipeline" in text
    assert f"Multi30k BLEU: `{SIG}`; Multi30k BLEU-tok: `{SIG_TOK}`" in text
    assert "| 30.0/40.0 | 3.0 |" in text  # the run's line


@pytest.mark.parametrize(("metric", "header", "cell"), [("bleu", "BLEU (σ)", "31.0 (1.4)"),
                                                         ("bleu-tok", "BLEU-tok (σ)", "42.0 (2.8)")])  # fmt: skip
def test_one_bleu_when_the_metric_names_it(tmp_path: Path, metric: str, header: str, cell: str) -> None:
    text = render.markdown(lib.build_report([_both_bleus(tmp_path)], table_stats=False, metric=metric))
    assert f"| Multi30k {header} | Epoch | Seeds |" in text and f"| Xavier | **{cell}** | 3.0 | 2 |" in text


def test_csv_and_json_name_the_second_bleu(tmp_path: Path) -> None:
    rep = lib.build_report([_both_bleus(tmp_path)], table_stats=False)
    (row,) = csv.DictReader(io.StringIO(render.to_csv(rep)))
    assert (float(row["mean"]), float(row["mean_bleu_tok"]), row["mean_mismatched"]) == (31.0, 42.0, "")
    assert float(row["std_bleu_tok"]) == pytest.approx(2 * 2**0.5)
    runs = render.to_json(rep)["runs"]
    assert [(r["value"], r["value_bleu_tok"]) for r in runs] == [(30.0, 40.0), (32.0, 44.0)]
