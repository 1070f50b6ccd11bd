"""Table 3 (training/positions on or off, lowest validation loss) and Table 5 from run folders."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import GLOVE_X, write_run
from embtool.experiment.report.cells import build_report
from embtool.experiment.report.tables import table3, table5


def test_table3_rows_with_val_loss_and_epoch(tmp_path: Path) -> None:
    for i, (freeze, pos) in enumerate([(True, False), (False, True), (True, True), (False, False)]):
        write_run(
            tmp_path / f"r{i}",
            tables={"src": GLOVE_X, "tgt": GLOVE_X},
            train={"freeze_emb": freeze, "posenc": pos},
            result=30.0 + i,
            curve=[10.0, 20.0],
        )
    text = table3(build_report([tmp_path], table_stats=False))
    assert "Table 3: Multi30k" in text and "Val. Loss (epoch)" in text
    rows = [line for line in text.splitlines() if line.startswith("| GloVe_Xavier")]
    # the paper's order: no/no, yes/no, no/yes, yes/yes; val_loss 4/epoch → 2.00 at epoch 2
    assert [r.split(" | ")[1] for r in rows] == ["no/no", "yes/no", "no/yes", "yes/yes"]
    assert all("2.00 (2.00)" in r for r in rows)
    assert rows[0].split(" | ")[3] == "30.0"


def test_no_table3_without_frozen_or_positionless_runs(tmp_path: Path) -> None:
    write_run(tmp_path / "a")
    assert table3(build_report([tmp_path], table_stats=False)) == ""


def test_table5_from_config_json_beside_the_papers(tmp_path: Path) -> None:
    run = write_run(tmp_path / "g", curve=[10.0, 20.0])
    config = json.loads((run / "config.json").read_text())
    config.update(
        paper={"family": "glove", "preset": "paper"},
        parameters={"total": 11_005_465},
        train_examples=29000,
    )
    config["train"].update(batch_size=64)
    (run / "config.json").write_text(json.dumps(config))
    text = table5(build_report([tmp_path], table_stats=False))
    assert "| Multi30k glove |" in text
    assert "| Parameters | 11.0M (11M) |" in text
    assert "| Batch Size | 64 (64) |" in text
    assert "| Vocab size | 50/40 (7.8k/5.9k) |" in text
    assert "| Train size | 29000 (29k) |" in text
    assert "| Min/Epoch | 0.017 (1) |" in text
