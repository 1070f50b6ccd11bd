"""`experiment`: the grid plan, the variant tables, resuming, and a tiny real grid end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import EXAMPLES, reverse_words_toy, run_example, toy_iwslt
from embtool.core.errors import BadInput
from embtool.experiment import runner as lib
from embtool.experiment.gridresources import Slurm
from embtool.tables.table import EmbeddingTable, load, save


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    """A generated reverse-the-words task (120 pairs) and a wide 'pretrained' table for its words."""
    return reverse_words_toy(tmp_path, n_pairs=120, shift=0.05)


def _fake_train(calls: list[str]):
    """Stands in for embtool.training.train: writes a complete run folder (DESIGN §4) at once."""

    def train(cfg) -> Path:
        out = Path(cfg.out)
        calls.append(f"{out.parent.name}/{out.name}")
        out.mkdir(parents=True, exist_ok=True)
        info = {
            "path": cfg.emb,
            "sha256": "0",
            "source": load(cfg.emb).source,
            "history": load(cfg.emb).history,
        }
        config = {
            "task": cfg.task,
            "kind": "translation",
            "seed": cfg.seed,
            "model": {"d_model": 16},
            "train": cfg.to_dict(),
            "tables": {"src": info, "tgt": info},
            "vocab": {"src_size": 14, "tgt_size": 14},
        }
        (out / "config.json").write_text(json.dumps(config))
        (out / "metrics.jsonl").write_text(
            json.dumps({"epoch": 1, "val_loss": 1.0, "val_bleu": 10.0 + cfg.seed}) + "\n"
        )
        (out / "test.json").write_text(json.dumps({"bleu": 20.0 + cfg.seed, "best_epoch": 1}))
        return out

    return train


def test_grid_skips_complete_runs_and_resumes_incomplete_ones(toy: Path) -> None:
    def grid():
        return lib.plan(
            "files",
            {"emb": toy / "w2v.safetensors"},
            toy / "grid",
            ["pretrained", "shuffled"],
            [1, 2],
            {"src": str(toy / "src.txt"), "tgt": str(toy / "tgt.txt"), "epochs": 1},
        )

    g = grid()
    assert [(r.variant, r.seed, r.state) for r in g.runs] == [
        ("pretrained", 1, "todo"),
        ("pretrained", 2, "todo"),
        ("shuffled", 1, "todo"),
        ("shuffled", 2, "todo"),
    ]
    assert g.runs[0].tables == {"emb": toy / "w2v.safetensors"}
    assert g.runs[3].tables == {"emb": toy / "grid/tables/emb.shuffled.s2.safetensors"}
    calls: list[str] = []
    assert lib.run_grid(g, train=_fake_train(calls)) == []
    assert calls == ["pretrained/s1", "pretrained/s2", "shuffled/s1", "shuffled/s2"]
    assert sorted(p.name for p in (toy / "grid/tables").iterdir()) == [
        "emb.shuffled.s1.safetensors",
        "emb.shuffled.s2.safetensors",
    ]
    # an interrupted run: config.json but no test.json → resumed; complete ones are not redone
    (toy / "grid/runs/shuffled/s1/test.json").unlink()
    g = grid()
    assert [r.state for r in g.runs] == ["done", "done", "resume", "done"]
    events: list[tuple[str, dict]] = []
    calls.clear()
    lib.run_grid(g, train=_fake_train(calls), event=lambda name, info: events.append((name, info)))
    assert calls == ["shuffled/s1"]
    assert [e for e, _ in events] == ["skip", "skip", "start", "done", "skip"]
    assert events[2][1]["resume"] is True
    paths = lib.write_report(g)
    text = paths["markdown"].read_text()
    assert "| word2vec | **21.5 (0.7)** | 1.0 | 2 |" in text and "| word2vec_Shuffled |" in text
    assert paths["plot"].stat().st_size > 0 and paths["csv"].read_text().count("\n") == 3


def test_grid_axes_are_every_combination_in_folders_of_their_own(toy: Path) -> None:
    base = {"src": str(toy / "src.txt"), "tgt": str(toy / "tgt.txt"), "epochs": 1}
    axes = lib.parse_grid(["layers=1,2", "--lr=1e-3"])
    assert axes == {"layers": [1, 2], "lr": [1e-3]}
    g = lib.plan("files", {"emb": toy / "w2v.safetensors"}, toy / "grid", ["pretrained"], [1, 2], base, axes)
    folders = [str(r.out.relative_to(toy / "grid/runs")) for r in g.runs]
    assert folders == [
        "pretrained/layers=1,lr=0.001/s1",
        "pretrained/layers=1,lr=0.001/s2",
        "pretrained/layers=2,lr=0.001/s1",
        "pretrained/layers=2,lr=0.001/s2",
    ]
    _, configs = lib.check(g)
    assert [(configs[id(r)].layers, configs[id(r)].lr, configs[id(r)].seed) for r in g.runs] == [
        (1, 1e-3, 1),
        (1, 1e-3, 2),
        (2, 1e-3, 1),
        (2, 1e-3, 2),
    ]
    assert lib.run_grid(g, train=_fake_train([])) == []
    rep = lib.write_report(g)["markdown"].read_text()
    assert "| word2vec [layers=1] |" in rep and "| word2vec [layers=2] |" in rep  # a cell per point
    other = lib.plan(
        "files", {"emb": toy / "w2v.safetensors"}, toy / "grid", ["pretrained"], [1], base, {"layers": [3]}
    )
    with pytest.raises(BadInput, match="another --grid axes"):
        lib.check(other)


def test_grid_refuses_other_settings_in_the_same_folder(toy: Path) -> None:
    base = {"src": str(toy / "src.txt"), "tgt": str(toy / "tgt.txt")}
    g = lib.plan(
        "files", {"emb": toy / "w2v.safetensors"}, toy / "grid", ["pretrained"], [1], {**base, "epochs": 1}
    )
    lib.run_grid(g, train=_fake_train([]))
    g = lib.plan(
        "files",
        {"emb": toy / "w2v.safetensors"},
        toy / "grid",
        ["pretrained"],
        [1, 2],
        {**base, "epochs": 2, "device": "cpu"},
    )
    with pytest.raises(BadInput, match="holds a grid with another epochs"):
        lib.run_grid(g, train=_fake_train([]))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"epochz": 1}, "unknown training setting(s) epochz"),
        ({"epochs": "many"}, "epochs='many': expected a number (int)"),
        ({"freeze_emb": 1}, "freeze_emb=1: expected true or false"),
        ({"seed": 3}, "the grid sets seed itself"),
    ],
)
def test_bad_training_settings_stop_before_any_work(toy: Path, settings, message) -> None:
    calls: list[str] = []
    with pytest.raises(BadInput) as e:
        g = lib.plan("files", {"emb": toy / "w2v.safetensors"}, toy / "grid", ["xavier"], [1], settings)
        lib.run_grid(g, train=_fake_train(calls))
    assert message in str(e.value) and calls == [] and not (toy / "grid" / "tables").exists()


def test_cli_dry_run_lists_the_grid(embtool, toy: Path) -> None:
    done = toy / "grid/runs/standardized/s2"
    done.mkdir(parents=True)
    (done / "config.json").write_text("{}")
    (done / "test.json").write_text("{}")
    (done / "metrics.jsonl").write_text('{"epoch": 1}\n')
    (toy / "grid/runs/xavier/s1").mkdir(parents=True)
    (toy / "grid/runs/xavier/s1/config.json").write_text("{}")
    r = embtool(
        "experiment",
        "multi30k",
        "--emb",
        str(toy / "w2v.safetensors"),
        "--seeds",
        "2",
        "-o",
        str(toy / "grid"),
        "--dry-run",
        "--epochs",
        "3",
    )
    assert r.code == 0, r.stderr
    lines = r.text.splitlines()
    assert lines[0].startswith("experiment multi30k: 5 variant(s) × 2 seed(s) = 10 run(s)")
    assert "(1 done, 1 to resume, 8 to run)" in lines[0]
    rows = [line.split()[:3] for line in lines[2:]]
    assert rows == [
        [s, v, str(k)]
        for v in lib.VARIANTS
        for k in (1, 2)
        for s in [
            "done" if (v, k) == ("standardized", 2) else "resume" if (v, k) == ("xavier", 1) else "todo"
        ]
    ]
    assert "emb.shuffled.s2.safetensors" in r.text and not (toy / "grid" / "tables").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--emb", "nope.safetensors"], "--emb nope.safetensors: no such table file"),
        (["--emb", "w2v.safetensors", "--variants", "xavier,bogus"], "unknown variant 'bogus'"),
        (["--emb", "w2v.safetensors", "--grid", "oops"], "--grid 'oops': give NAME=V1,V2"),
        (["--emb", "w2v.safetensors", "--layers", "x"], "Invalid value for '--layers'"),
        (
            ["--emb", "w2v.safetensors", "--grid", "epochz=2"],
            "'epochz' is not a training setting the grid can vary",
        ),
        (["--emb", "w2v.safetensors", "--grid", "layers=two"], "--grid layers: 'two' is not an integer"),
        (
            ["--emb", "w2v.safetensors", "--grid", "seed=1,2"],
            "'seed' is not a training setting the grid can vary",
        ),
        (
            ["--emb", "w2v.safetensors", "--layers", "2", "--grid", "layers=1,3"],
            "layers: give a setting once",
        ),
    ],
)
def test_cli_bad_input(embtool, toy: Path, args, message) -> None:
    r = embtool("experiment", "multi30k", *args, "--dry-run", cwd=toy)
    assert r.code == 2, r.stderr
    assert r.stderr.startswith("embtool: error: ") and message in r.stderr and len(r.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"emb": "w2v.safetensors", "src_emb": "w2v.safetensors"}, "not both"),
        ({}, "give the pretrained table"),
        ({"emb": "src.txt"}, "not a readable safetensors file"),
        ({"src_emb": "nope"}, "--src-emb .*nope: no such table file"),
    ],
)
def test_plan_bad_inputs(toy: Path, inputs, message) -> None:
    with pytest.raises(BadInput, match=message):
        lib.plan("multi30k", {k: toy / v for k, v in inputs.items()}, toy / "grid")


@pytest.mark.slow
def test_tiny_real_grid_runs_and_resumes_after_interruption(toy: Path) -> None:
    """2 variants × 2 seeds of the real trainer on the generated task; interrupted in run 3, resumed."""
    from embtool.training import train as real_train

    settings = {
        "src": str(toy / "src.txt"),
        "tgt": str(toy / "tgt.txt"),
        "epochs": 2,
        "layers": 1,
        "batch_size": 16,
        "device": "cpu",
        "amp": "off",
    }

    def grid():
        return lib.plan(
            "files",
            {"emb": toy / "w2v.safetensors"},
            toy / "grid",
            ["xavier", "standardized"],
            [1, 2],
            settings,
        )

    started: list[str] = []

    def interrupted(cfg, progress=None):
        started.append(Path(cfg.out).parent.name + "/" + Path(cfg.out).name)

        def stop_after_first_epoch(event, info):
            if len(started) == 3 and event == "epoch" and info["epoch"] == 1:
                raise KeyboardInterrupt

        return real_train(cfg, stop_after_first_epoch)

    with pytest.raises(KeyboardInterrupt):
        lib.run_grid(grid(), train=interrupted)
    assert [r.state for r in grid().runs] == ["done", "done", "resume", "todo"]
    first = (toy / "grid/runs/xavier/s1/test.json").stat().st_mtime_ns
    started.clear()
    logs: list[str] = []

    def resumed(cfg, progress=None):
        started.append(Path(cfg.out).parent.name + "/" + Path(cfg.out).name)
        return real_train(cfg, lambda e, i: logs.append(i.get("message", "")) if e == "log" else None)

    assert lib.run_grid(grid(), train=resumed) == []
    assert started == ["standardized/s1", "standardized/s2"]  # complete runs are not redone
    assert any("resuming" in m and "after epoch 1" in m for m in logs)
    assert (toy / "grid/runs/xavier/s1/test.json").stat().st_mtime_ns == first
    metrics = (toy / "grid/runs/standardized/s1/metrics.jsonl").read_text().splitlines()
    assert [json.loads(m)["epoch"] for m in metrics] == [1, 2]
    rep = lib.write_report(grid())
    text = rep["markdown"].read_text()
    assert "| Xavier |" in text and "| word2vec_Xavier |" in text and "| 2 |" in text
    config = json.loads((toy / "grid/runs/standardized/s2/config.json").read_text())
    assert config["tables"]["src"]["sha256"] and config["tables"]["src"]["path"].endswith(
        "emb.standardized.safetensors"
    )


# ----------------------------------------------------------------------------- examples/


@pytest.mark.parametrize(
    "script", ["reproduce_table1_multi30k.sh", "reproduce_table3.sh", "mt5_iwslt2017.sh"]
)
def test_examples_are_valid_bash(script) -> None:
    import subprocess

    assert subprocess.run(["bash", "-n", str(EXAMPLES / script)]).returncode == 0


@pytest.mark.slow
def test_example_table1_then_table3_on_real_multi30k(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "t"
    env = {"SIZE": "tiny", "OUT": str(out), "EMBTOOL_DATA_DIR": str(shared_data)}
    run_example("reproduce_table1_multi30k.sh", tmp_path, **env)
    text = (out / "report.md").read_text()
    assert "| Xavier |" in text and "| word2vec_Xavier |" in text and (out / "grid/curves.png").is_file()
    # Table 3 reuses the vocabularies and tables; 4 grids (train × pos.) of one variant, one seed
    run_example("reproduce_table3.sh", tmp_path, **env, VARIANTS="standardized")
    text = (out / "report.md").read_text()
    for label in (
        "word2vec_Xavier [frozen, no posenc]",
        "word2vec_Xavier [no posenc]",
        "word2vec_Xavier [frozen]",
        "| word2vec_Xavier |",
    ):
        assert label in text


def _save_bert(folder: Path) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizer

    pieces = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "the",
        "cat",
        "sat",
        "on",
        "mat",
        "dog",
        "der",
        "die",
        "katze",
        "saß",
        "auf",
        "hund",
        "##s",
        "##e",
    ]
    BertTokenizer(vocab={t: i for i, t in enumerate(pieces)}).save_pretrained(folder)
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(pieces),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    BertModel(cfg).save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_example_mt5_recipe_with_a_tiny_local_checkpoint(tmp_path: Path) -> None:
    """The mT5/IWSLT2017 recipe's own steps, offline: a tiny BERT checkpoint for MODEL and a generated
    iwslt2017 folder for the data."""
    pytest.importorskip("transformers")
    ckpt = _save_bert(tmp_path / "tiny-bert")  # a folder name the report can name (BERT)
    toy_iwslt(tmp_path / "data")
    out = tmp_path / "out"
    run_example(
        "mt5_iwslt2017.sh",
        tmp_path,
        OUT=str(out),
        MODEL=str(ckpt),
        SEEDS="1",
        DEVICE="cpu",
        VARIANTS="xavier,pretrained",
        EMBTOOL_DATA_DIR=str(tmp_path / "data"),
        EXTRA="--epochs 1 --layers 1 --heads 2 --batch-size 32",
    )
    text = (out / "grid/report.md").read_text()
    assert "| Xavier |" in text and "| BERT |" in text and (out / "curves.png").is_file()


def test_cli_dry_run_counts_grid_points(embtool, toy: Path) -> None:
    r = embtool(
        "experiment",
        "multi30k",
        "--emb",
        str(toy / "w2v.safetensors"),
        "--seeds",
        "2",
        "--variants",
        "xavier",
        "--grid",
        "layers=1,2",
        "--grid",
        "posenc=true,false",
        "-o",
        str(toy / "g"),
        "--dry-run",
    )
    assert r.code == 0, r.stderr
    assert r.text.startswith("experiment multi30k: 1 variant(s) × 4 grid point(s) × 2 seed(s) = 8 run(s)")
    assert "g/runs/xavier/layers=2,posenc=False/s2" in r.text


def test_standardized_variants_standardize_the_models_rows(toy: Path) -> None:
    """standardized trains with --standardize xavier (Eq. 1, the model's N) and xavier_like with
    --standardize TABLE (Eq. 4): the paper's condition holds whatever slice of the data a run sees."""
    table = toy / "w2v.safetensors"
    settings = {"src": str(toy / "src.txt"), "tgt": str(toy / "tgt.txt"), "epochs": 1}
    grid = lib.plan("files", {"emb": table}, toy / "grid", seeds=[1], settings=settings)
    by = {r.variant: lib.train_config(grid, r).standardize for r in grid.runs}
    assert by == {
        "xavier": "off",
        "pretrained": "off",
        "standardized": "xavier",
        "shuffled": "off",
        "xavier_like": str(table),
    }
    mine = lib.plan(
        "files", {"emb": table}, toy / "g2", seeds=[1], settings={**settings, "standardize": "off"}
    )
    assert {lib.train_config(mine, r).standardize for r in mine.runs} == {"off"}


def test_every_variant_trains_in_the_pretrained_tables_column(tmp_path: Path) -> None:
    """The xavier variant of an mT5 experiment is in Table 5's mT5 column (batch 112 on IWSLT2017),
    though its own table's source is "xavier" and D 768 alone would pick mBERT's."""
    table = EmbeddingTable(
        torch.zeros(3, 768), ["a", "b", "c"], source="hf:google/mt5-base", tokenizer="hf:mt5"
    )
    save(table, tmp_path / "mt5.safetensors")
    grid = lib.plan("iwslt2017", {"emb": tmp_path / "mt5.safetensors"}, tmp_path / "g", seeds=[1])
    cfgs = [lib.train_config(grid, r) for r in grid.runs]
    assert {c.family for c in cfgs} == {"mt5"}
    assert {c.resolved().batch_size for c in cfgs if c.emb == str(tmp_path / "mt5.safetensors")} == {112}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--d-model", "32"], "--d-model 32 differs from the table's D 16 (--emb"),
        (["--grid", "d_model=16,32"], "--d-model 32 differs from the table's D 16 (--emb"),
        (["--heads", "3"], "--heads 3 must divide the table's D 16 (--emb"),
        (["--grid", "lr=1e-4,nan"], "--lr must be a finite number, got nan"),
        (["--variants", "xavier", "--d-model", "32"], "--d-model 32 differs from the table's D 16 (--emb"),
    ],
    ids=["d-model-option", "d-model-grid-axis", "heads-option", "grid-nan", "no-pretrained-variant"],
)
def test_the_whole_grid_is_checked_before_anything_is_written(embtool, toy: Path, args, message) -> None:
    """Issue 14.11: a setting that cannot fit the table stops the grid before experiment.json or a
    table is written, so the corrected command is not refused as "another grid"."""
    base = ["experiment", "files", "--src", "src.txt", "--tgt", "tgt.txt", "--emb", "w2v.safetensors"]
    r = embtool(*base, "--seeds", "1", *args, "-o", "grid", cwd=toy)
    assert r.code == 2 and r.stderr.startswith("embtool: error: ") and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (toy / "grid").exists()
    fixed = embtool(*base, "--seeds", "1", "-o", "grid", "--dry-run", cwd=toy)
    assert fixed.code == 0, fixed.stderr


def test_grid_values_differing_in_unsafe_characters_get_their_own_folders_inside_out(toy: Path) -> None:
    base = {"src": str(toy / "src.txt"), "tgt": str(toy / "tgt.txt"), "epochs": 1}
    axes = {"data_dir": ["../../../../../../data", "a/b", "a b", "a_b"]}
    g = lib.plan("files", {"emb": toy / "w2v.safetensors"}, toy / "grid", ["pretrained"], [1], base, axes)
    outs = [r.out.resolve() for r in g.runs]
    assert len(set(outs)) == 4
    assert all(o.is_relative_to((toy / "grid" / "runs" / "pretrained").resolve()) for o in outs)
    assert all(o.parent.parent.name == "pretrained" for o in outs)  # one folder level per point


def test_a_broken_input_leaves_no_record_that_refuses_the_repaired_retry(toy: Path) -> None:
    base = {"src": str(toy / "src.txt"), "tgt": str(toy / "tgt.txt"), "epochs": 1}
    table = toy / "w2v.safetensors"
    good = table.read_bytes()
    table.write_bytes(good[:-8])  # the header reads; the rows are cut short

    def grid():
        return lib.plan("files", {"emb": table}, toy / "grid", ["pretrained", "shuffled"], [1], base)

    with pytest.raises(BadInput, match="w2v.safetensors"):
        lib.start_grid(grid())
    assert not (toy / "grid" / lib.GRID_FILE).exists()
    table.write_bytes(good)  # repaired
    assert lib.run_grid(grid(), train=_fake_train([])) == []
    assert json.loads((toy / "grid" / lib.GRID_FILE).read_text())["inputs"]["emb"]["path"] == str(
        table.resolve()
    )


@pytest.mark.parametrize(("task", "seeds"), [("multi30k", 4), ("iwslt2017", 4), ("sst2", 5), ("mnli", 3)])
def test_seeds_default_to_the_papers_count_for_the_task(cli, tmp_path: Path, task: str, seeds: int) -> None:
    """A.2: 4 seeds for Multi30k and IWSLT2017, 5 for SST-2, 3 for MNLI (issue 25.3; before: 3 for all)."""
    save(EmbeddingTable(torch.zeros(3, 8), ["a", "b", "c"], source="xavier"), tmp_path / "t.safetensors")
    args = ["experiment", task, "--emb", str(tmp_path / "t.safetensors"), "--variants", "xavier"]
    r = cli(*args, "-o", str(tmp_path / "grid"), "--dry-run")
    assert r.code == 0, r.stderr
    assert f"1 variant(s) × {seeds} seed(s) = {seeds} run(s)" in r.text
    assert cli(*args, "--seeds", "2", "-o", str(tmp_path / "g2"), "--dry-run").text.count(" xavier ") == 2


# ----------------------------------------------------------------------------- run_experiment's executors


def _settings(toy: Path) -> dict:
    return {"src": str(toy / "src.txt"), "tgt": str(toy / "tgt.txt"), "epochs": 1, "device": "cpu"}


def test_run_experiment_inline_trains_each_run_and_reports(toy: Path) -> None:
    calls: list[str] = []
    events: list[str] = []
    paths, failures = lib.run_experiment(
        "files", {"emb": toy / "w2v.safetensors"}, toy / "grid", ["xavier", "pretrained"], [1, 2],
        _settings(toy), executor="inline", event=lambda name, info: events.append(name), train=_fake_train(calls),
    )  # fmt: skip
    assert failures == [] and calls == ["xavier/s1", "xavier/s2", "pretrained/s1", "pretrained/s2"]
    assert events.count("start") == 4 and events.count("done") == 4
    assert "| Xavier |" in paths["markdown"].read_text() and paths["csv"].is_file()


def test_run_experiment_pool_hands_each_worker_its_run_as_data(toy: Path, monkeypatch) -> None:
    """executor="pool": each run in a worker process `embtool -q train`, its TrainConfig in
    $EMBTOOL_RANK_CONFIG (here a stand-in process that writes the run folder)."""
    from embtool.experiment import gridjobs
    from embtool.training import TrainConfig
    from embtool.training.parallel import CONFIG_ENV, LAUNCHER_ENV

    calls: list[str] = []
    fake = _fake_train(calls)
    started: list[list[str]] = []

    class Worker:
        def __init__(self, argv, env, **kw) -> None:
            started.append(argv)
            assert env[LAUNCHER_ENV] == str(__import__("os").getpid())
            fake(TrainConfig.from_dict(json.loads(env[CONFIG_ENV])))
            self.stdin = None

        def wait(self, timeout=None) -> int:
            return 0

        poll = wait

    monkeypatch.setattr(gridjobs.subprocess, "Popen", Worker)
    paths, failures = lib.run_experiment(
        "files", {"emb": toy / "w2v.safetensors"}, toy / "grid", ["xavier", "pretrained"], [1], _settings(toy),
        executor="pool", resources=lib.Resources(jobs=2),
    )  # fmt: skip
    assert failures == [] and sorted(calls) == ["pretrained/s1", "xavier/s1"] and len(started) == 2
    assert all(argv[1:] == ["-m", "embtool", "-q", "train"] for argv in started)
    assert {p.name for p in (toy / "grid" / "logs").glob("*.log")} == {"xavier-s1.log", "pretrained-s1.log"}
    assert paths["markdown"].is_file()


@pytest.mark.parametrize(
    ("kw", "error"),
    [
        ({"executor": "threads"}, "invalid executor 'threads'; valid choices: inline, pool, submitit"),
        ({"resources": lib.Resources(jobs=0)}, "--jobs must be at least 1, got 0"),
        ({"resources": lib.Resources(slurm=Slurm(time="soon"))}, "--time 'soon'"),
    ],
)
def test_run_experiment_refuses_bad_resources_before_any_work(toy: Path, kw, error) -> None:
    with pytest.raises(BadInput, match=error.replace("(", r"\(").replace(")", r"\)")):
        lib.run_experiment(
            "files", {"emb": toy / "w2v.safetensors"}, toy / "grid", ["xavier"], [1], _settings(toy), **kw
        )
    assert not (toy / "grid").exists()


def test_run_experiment_says_when_every_run_failed(toy: Path) -> None:
    from embtool.core.errors import WorkFailure

    def broken(cfg, progress=None):
        raise RuntimeError("out of memory")

    with pytest.raises(WorkFailure, match=r"every run failed: xavier seed 1 \(RuntimeError: out of memory\)"):
        lib.run_experiment(
            "files",
            {"emb": toy / "w2v.safetensors"},
            toy / "grid",
            ["xavier"],
            [1],
            _settings(toy),
            train=broken,
        )
