"""Figure 1: validation curves, one panel per task."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import write_run
from embtool.core.errors import BadInput
from embtool.experiment.report import cells as lib
from embtool.experiment.report import plot


def test_plot_has_one_panel_per_task(grid: Path, tmp_path: Path) -> None:
    import matplotlib.image

    rep = lib.build_report([grid], table_stats=False)
    assert lib.curve(
        next(c for c in rep.cells if c.task == "multi30k" and c.name == "Xavier").runs, "val_bleu"
    ) == ([1.0, 2.0, 3.0], [10.0, 20.0, 30.0], [0.0, 0.0, 0.0])
    png = tmp_path / "curves.png"
    assert plot.plot_curves(rep, png) == ["Multi30k", "SST2"]
    img = matplotlib.image.imread(png)  # (H, W, RGBA)
    w, h = (round(v * plot.DPI) for v in plot.PANEL_INCHES)
    assert img.shape[:2] == (h, 2 * w)
    for k in range(2):  # every panel has drawn lines: coloured pixels, not just white and grey
        panel = img[:, k * w : (k + 1) * w, :3]
        coloured = (panel.max(axis=2) - panel.min(axis=2)) > 0.3
        assert coloured.sum() > 100


def test_plot_without_complete_runs_is_an_error(embtool, tmp_path: Path) -> None:
    write_run(tmp_path / "r", result=None)
    r = embtool("report", str(tmp_path), "--plot", str(tmp_path / "c.png"))
    assert r.code == 2 and "no complete runs" in r.stderr


def test_plot_to_dash_is_refused_before_any_work(cli, grid: Path, tmp_path: Path, monkeypatch) -> None:
    """Issue 14.14: `report --plot -` wrote a file named "-"."""
    monkeypatch.chdir(tmp_path)
    r = cli("report", str(grid), "--plot", "-")
    assert (
        r.code == 2
        and r.stderr.strip() == "embtool: error: --plot -: give a file name; stdout holds the report"
    )
    assert not (tmp_path / "-").exists() and r.stdout == b""


def test_plot_dynamics_draws_a_row_per_task(tmp_path: Path) -> None:
    import json

    import matplotlib.image

    runs = tmp_path / "runs"
    for norm in ("post", "admin"):
        folder = write_run(runs / norm, train={"norm": norm})
        lines = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
        for i, line in enumerate(lines, start=1):
            band = {"drift": 0.2 * i, "cos": 1 - 0.01 * i}
            line["emb"] = {
                "src": {
                    "drift": 0.1 * i,
                    "cos": 1 - 0.01 * i,
                    "bands": dict.fromkeys(("frequent", "middle", "rare"), band),
                }
            }
            line["branch_ratio"] = {"encoder": [0.5, 0.4], "decoder": [0.3]}
        (folder / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    rep = lib.build_report([runs], table_stats=False)
    png = tmp_path / "dyn.png"
    assert plot.plot_dynamics(rep, png) == ["Multi30k"]
    img = matplotlib.image.imread(png)  # (H, W, RGBA)
    w, h = (round(v * plot.DPI) for v in plot.PANEL_INCHES)
    assert img.shape[:2] == (h, 3 * w)
    assert plot.dynamics_series(rep.cells[0].runs, lambda m: m["emb"]["src"]["drift"]) == (
        [1.0, 2.0, 3.0],
        pytest.approx([0.1, 0.2, 0.3]),
    )


def test_plot_dynamics_needs_runs_that_recorded_them(grid: Path, tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="embedding dynamics"):
        plot.plot_dynamics(lib.build_report([grid], table_stats=False), tmp_path / "d.png")


def test_cell_styles_colour_by_initialisation_and_mark_by_setting() -> None:
    """Twelve cells (3 tables × 4 settings) get 3 colours × 4 markers, every pair distinct: the
    default 10-colour cycle gave two cells the same colour."""
    names = [
        f"{t} [{s}]"
        for t in ("Xavier", "word2vec", "word2vec_Xavier")
        for s in ("norm=post", "norm=pre", "norm=admin", "input-dim 64")
    ]
    styles = plot.cell_styles(names + ["GloVe"])
    assert len(set(styles.values())) == 13
    assert styles["Xavier [norm=post]"][0] == styles["Xavier [input-dim 64]"][0]
    assert styles["Xavier [norm=post]"][1] == styles["word2vec [norm=post]"][1]
    assert styles["Xavier [norm=post]"][0] != styles["word2vec_Xavier [norm=post]"][0]


@pytest.mark.parametrize(
    ("metric", "key", "label"),
    [("auto", "val_bleu", "validation BLEU (sacreBLEU)"), ("bleu", "val_bleu", "validation BLEU (sacreBLEU)"),
     ("bleu-tok", "val_bleu_tok", "validation BLEU-tok (model's tokens)")],
)  # fmt: skip
def test_figure_1_draws_the_validation_bleu_the_metric_names(tmp_path, monkeypatch, metric, key, label):
    """Train records both BLEUs each epoch (issue 25.1); the curves are of Table 1's kind of BLEU."""
    import json

    import matplotlib.axes

    folder = write_run(tmp_path / "r")
    test = json.loads((folder / "test.json").read_text())
    (folder / "test.json").write_text(json.dumps({**test, "bleu_tok": 40.0}))
    lines = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    (folder / "metrics.jsonl").write_text(
        "".join(json.dumps({**x, "val_bleu_tok": 1.0}) + "\n" for x in lines)
    )
    asked, labels = [], []
    monkeypatch.setattr(plot, "curve", lambda runs, k: asked.append(k) or lib.curve(runs, k))
    real = matplotlib.axes.Axes.set_ylabel
    monkeypatch.setattr(
        matplotlib.axes.Axes, "set_ylabel", lambda ax, t, **kw: labels.append(t) or real(ax, t)
    )
    plot.plot_curves(lib.build_report([tmp_path], table_stats=False, metric=metric), tmp_path / "c.png")
    assert (asked, labels) == ([key], [label])
