"""--config FILE on `train` and `experiment`: TOML, YAML, JSON, a run's config.json, a grid's
experiment.json; the command line overrides the file; unknown keys and bad values are one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import reverse_task, reverse_words_toy

# the same settings in each format
FILES = {
    "toml": 'task = "multi30k"\nepochs = 7\nbatch_size = 32\nnorm = "pre"\nposenc = false\nlr = 0.001\n',
    "yaml": "task: multi30k\nepochs: 7\nbatch_size: 32\nnorm: pre\nposenc: false\nlr: 0.001\n",
    "json": '{"task": "multi30k", "epochs": 7, "batch_size": 32, "norm": "pre", "posenc": false, "lr": 1e-3}',
}


def _plan(cli, *args: str) -> dict:
    r = cli("train", *args, "--dry-run", "--json")
    assert r.code == 0, r.stderr
    return json.loads(r.stdout)


@pytest.fixture(autouse=True)
def _data(shared_data, monkeypatch) -> None:
    monkeypatch.setenv("EMBTOOL_DATA_DIR", str(shared_data))


@pytest.mark.parametrize("kind", sorted(FILES))
def test_train_takes_its_settings_from_a_file(cli, tmp_path, kind) -> None:
    path = tmp_path / f"settings.{kind}"
    path.write_text(FILES[kind], encoding="utf-8")
    plan = _plan(cli, "--config", str(path))
    train = plan["train"]
    assert plan["task"] == "multi30k"
    assert (train["epochs"], train["batch_size"], train["norm"], train["posenc"], train["lr"]) == (
        7, 32, "pre", False, 0.001,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        ([], {"epochs": 7, "posenc": False, "norm": "pre"}),
        (["--epochs", "9"], {"epochs": 9, "posenc": False, "norm": "pre"}),
        (
            ["--posenc"],
            {"epochs": 7, "posenc": True, "norm": "pre"},
        ),  # a flag's default from the file, turned on
        (["--norm", "post", "--no-posenc"], {"epochs": 7, "posenc": False, "norm": "post"}),
    ],
)
def test_the_command_line_overrides_the_file(cli, tmp_path, args, expect) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(FILES["toml"], encoding="utf-8")
    train = _plan(cli, "--config", str(path), *args)["train"]
    assert {k: train[k] for k in expect} == expect


def test_a_task_on_the_command_line_overrides_the_files(cli, tmp_path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(FILES["toml"], encoding="utf-8")
    assert _plan(cli, "sst2", "--config", str(path))["task"] == "sst2"


@pytest.mark.parametrize(
    ("name", "text", "error"),
    [
        ("s.toml", "epoch = 3\n", "--config {}: unknown setting 'epoch'; did you mean 'epochs'?"),
        (
            "s.toml",
            "batch-sise = 3\n",
            "--config {}: unknown setting 'batch-sise'; did you mean 'batch_size'?",
        ),
        ("s.toml", 'epochs = "ten"\n', "--config {}: training setting epochs='ten': expected a number (int)"),
        ("s.yaml", "posenc: maybe\n", "--config {}: training setting posenc='maybe': expected true or false"),
        ("s.json", '{"task": 3}', "--config {}: task = 3: expected text"),
        (
            "s.toml",
            "norm = 'side'\n",
            "invalid --norm 'side'; valid choices: ['post', 'pre', 'admin']",
        ),  # TrainConfig's check
        ("s.toml", "epochs = \n", "--config {}: not valid TOML (Invalid value (at line 1, column 10))"),
        ("s.json", "[1, 2]", "--config {}: not a table of settings (key = value)"),
        ("s.ini", "epochs = 3\n", "--config {}: give a .toml, .yaml/.yml or .json file"),
        (
            "s.toml",
            "resume = 'runs/x'\n",
            "--config {}: unknown setting 'resume'",
        ),  # train --resume is no setting
    ],
)
def test_a_bad_file_is_one_line_and_exit_2(cli, tmp_path, name, text, error) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    r = cli("train", "multi30k", "--config", str(path), "-o", str(tmp_path / "run"))
    assert r.code == 2
    line = r.stderr.strip()
    assert line.startswith("embtool: error: " + error.format(path)) and "\n" not in line, r.stderr
    assert not (tmp_path / "run").exists()


def test_a_missing_file_and_config_with_resume_are_refused(cli, tmp_path) -> None:
    r = cli("train", "--config", str(tmp_path / "none.toml"))
    assert (r.code, r.stderr) == (
        2, f"embtool: error: --config {tmp_path / 'none.toml'}: cannot read it (No such file or directory)\n",
    )  # fmt: skip
    path = tmp_path / "s.toml"
    path.write_text("epochs = 3\n", encoding="utf-8")
    r = cli("train", "--config", str(path), "--resume", str(tmp_path))
    assert r.code == 2 and "--config and --resume" in r.stderr


@pytest.mark.slow
def test_a_runs_config_json_trains_the_same_run_again(embtool, tmp_path) -> None:
    """`train --config RUN/config.json -o NEW` repeats the run: the same settings, the same test BLEU."""
    files = reverse_task(tmp_path, n_train=200, n_val=20)
    first = tmp_path / "first"
    args = [
        "files", "--src", files["train_src"], "--tgt", files["train_tgt"], "--val-src", files["val_src"],
        "--val-tgt", files["val_tgt"], "--tokenizer", "whitespace", "--d-model", "16", "--heads", "2",
        "--layers", "1", "--dropout", "0", "--attn-dropout", "0", "--epochs", "2", "--batch-size", "32",
        "--lr", "0.003", "--device", "cpu", "--threads", "1", "--seed", "3",
    ]  # fmt: skip
    r = embtool("train", *args, "-o", str(first))
    assert r.code == 0, r.stderr
    again = tmp_path / "again"
    r = embtool("train", "--config", str(first / "config.json"), "-o", str(again))
    assert r.code == 0, r.stderr
    a, b = (json.loads((run / "config.json").read_text())["train"] for run in (first, again))
    assert {**a, "out": None} == {**b, "out": None}
    test_a, test_b = (json.loads((run / "test.json").read_text()) for run in (first, again))
    assert test_a["bleu"] == test_b["bleu"] and test_a["bleu_tok"] == test_b["bleu_tok"]
    # without -o the run's own folder is not taken from the file: a new folder, or this one line
    r = embtool("train", "--config", str(first / "config.json"), "-o", str(first))
    assert r.code == 2 and "exists" in r.stderr


def test_a_runs_config_json_is_read_as_settings_without_its_folder(cli, reverse_run, tmp_path) -> None:
    plan = _plan(cli, "--config", str(reverse_run / "config.json"))
    stored = json.loads((reverse_run / "config.json").read_text())["train"]
    assert plan["task"] == "files"
    same = {k for k in stored if k not in ("out", "resume") and plan["train"][k] == stored[k]}
    assert same == set(stored) - {"out", "resume"}
    assert plan["train"]["out"] != stored["out"]  # the folder is the new run's, not the old one's


# ----------------------------------------------------------------------------- experiment


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    return reverse_words_toy(tmp_path, n_pairs=40)


def _grid_plan(cli, *args: str) -> list[str]:
    r = cli("experiment", *args, "--dry-run")
    assert r.code == 0, r.stderr
    return r.stdout.decode().splitlines()


def test_experiment_takes_a_grid_from_a_file(cli, toy) -> None:
    path = toy / "grid.toml"
    path.write_text(
        f'task = "files"\nemb = "{toy / "w2v.safetensors"}"\nsrc = "{toy / "src.txt"}"\n'
        f'tgt = "{toy / "tgt.txt"}"\nvariants = ["xavier", "pretrained"]\nseeds = [5]\nepochs = 1\n'
        f'out = "{toy / "grid"}"\n[grid]\nlayers = [1, 2]\n',
        encoding="utf-8",
    )
    lines = _grid_plan(cli, "--config", str(path))
    assert lines[0].startswith("experiment files: 2 variant(s) × 2 grid point(s) × 1 seed(s) = 4 run(s)")
    runs = [line.split()[3] for line in lines[2:]]
    assert runs == [
        str(toy / "grid" / "runs" / v / f"layers={n}" / "s5")
        for v in ("xavier", "pretrained")
        for n in (1, 2)
    ]
    # the command line overrides the file: its variants and seeds, and an axis as a setting
    lines = _grid_plan(cli, "--config", str(path), "--variants", "xavier", "--seeds", "2")
    assert lines[0].startswith("experiment files: 1 variant(s) × 2 grid point(s) × 2 seed(s) = 4 run(s)")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("seed = 3\n", "unknown setting 'seed'; did you mean 'seeds'?"),
        ("seeds = true\n", "seeds = true: expected text"),
        ("jobs = 'two'\n", 'jobs = "two": expected a whole number'),
        ("grid = 'layers'\n", 'grid = "layers": expected a list of text'),
    ],
)
def test_experiment_refuses_a_bad_file_in_one_line(cli, toy, text, error) -> None:
    path = toy / "grid.toml"
    path.write_text(text, encoding="utf-8")
    r = cli("experiment", "files", "--emb", str(toy / "w2v.safetensors"), "--config", str(path), "--dry-run")
    assert (r.code, r.stderr) == (2, f"embtool: error: --config {path}: {error}\n")


def test_a_grids_record_repeats_the_grid(cli, toy) -> None:
    """experiment.json (what a grid folder records) as --config: the same task, table, settings and axes."""
    from embtool.experiment import runner as lib

    grid = lib.plan(
        "files", {"emb": toy / "w2v.safetensors"}, toy / "grid", ["xavier", "shuffled"], [1, 2],
        {"src": str(toy / "src.txt"), "tgt": str(toy / "tgt.txt"), "epochs": 1}, {"layers": [1, 2]},
    )  # fmt: skip
    (toy / "grid").mkdir()
    (toy / "grid" / "experiment.json").write_text(json.dumps(lib.grid_record(grid)), encoding="utf-8")
    lines = _grid_plan(cli, "--config", str(toy / "grid" / "experiment.json"), "-o", str(toy / "again"))
    assert lines[0].startswith("experiment files: 2 variant(s) × 2 grid point(s) × 2 seed(s) = 8 run(s)")


def test_a_runs_config_json_gives_experiment_its_settings_not_its_seed(cli, reverse_run, toy) -> None:
    r = cli(
        "experiment", "--config", str(reverse_run / "config.json"), "--emb", str(toy / "w2v.safetensors"),
        "--seeds", "1", "--variants", "xavier", "--d-model", "16", "-o", str(toy / "grid"), "--dry-run",
    )  # fmt: skip
    assert r.code == 0, r.stderr
    assert r.stdout.decode().startswith("experiment files: 1 variant(s) × 1 seed(s) = 1 run(s)")
