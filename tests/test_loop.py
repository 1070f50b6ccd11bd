"""The trainer end to end on generated tasks: it learns, writes the run folder, is deterministic, resumes, loads rows by token."""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import random
from pathlib import Path

import pytest
import torch

from conftest import metrics, reverse_task, scores, tiny_cfg, train_dir
from embtool.core.errors import BadInput
from embtool.training import TrainConfig


def test_tiny_model_learns_to_reverse(reverse_run):
    m = metrics(reverse_run)
    assert len(m) == 6
    assert m[-1]["train_loss"] < 0.6 * m[0]["train_loss"]
    assert m[-1]["val_loss"] < m[0]["val_loss"]
    assert m[-1]["val_bleu"] > m[0]["val_bleu"]
    assert m[-1]["val_bleu"] > 20
    assert all(x["seconds"] > 0 and x["tokens_per_s"] > 0 for x in m)


def test_run_folder_contract(reverse_run):
    names = {p.name for p in reverse_run.iterdir()}
    assert {
        "config.json",
        "metrics.jsonl",
        "best.safetensors",
        "last.safetensors",
        "state.pt",
        "test.json",
        "hyps.test.txt",
    } <= names
    config = json.loads((reverse_run / "config.json").read_text())
    assert {"embtool", "task", "kind", "seed", "model", "train", "tables", "vocab", "device"} <= set(config)
    assert config["kind"] == "translation"
    assert config["tables"] == {"src": None, "tgt": None}
    assert config["vocab"]["src_size"] == 14  # 4 specials + 10 digits
    assert config["model"]["d_model"] == 32
    state = torch.load(reverse_run / "state.pt", weights_only=True)
    assert state["epoch"] == 6
    test = json.loads((reverse_run / "test.json").read_text())
    assert set(test) == {"bleu", "signature", "bleu_tok", "signature_tok", "best_epoch", "split", "beam"}
    assert "tok:none" in test["signature_tok"] and "case:lc" in test["signature_tok"]
    best = min(metrics(reverse_run), key=lambda x: x["val_loss"])
    assert test["best_epoch"] == best["epoch"]
    assert config["parameters"]["total"] == sum(p.numel() for p in torch.load(
        reverse_run / "state.pt", weights_only=True)["model"].values())  # fmt: skip


def test_a_run_that_learns_nothing_ends_stalled(tmp_path):
    """A learning rate too small to move the weights: every loss finite, the validation loss flat,
    BLEU at chance: test.json says "stalled" and why, beside the result (runfolder.stalled)."""
    files = reverse_task(tmp_path, n_train=200, n_val=30)
    run = train_dir(tiny_cfg(files, tmp_path / "run", epochs=2, lr=1e-9))
    m = metrics(run)
    assert m[1]["val_loss"] >= 0.98 * m[0]["val_loss"] and max(x["val_bleu"] for x in m) < 2
    test = json.loads((run / "test.json").read_text())
    assert test["status"] == "stalled" and "at epoch 2" in test["stalled"] and "bleu" in test


def test_test_bleu_equals_sacrebleu_on_the_hypotheses(reverse_run):
    import sacrebleu

    config = json.loads((reverse_run / "config.json").read_text())
    hyps = (reverse_run / "hyps.test.txt").read_text(encoding="utf-8").splitlines()
    refs = Path(config["train"]["val_tgt"]).read_text(encoding="utf-8").splitlines()
    assert len(hyps) == len(refs)
    test = json.loads((reverse_run / "test.json").read_text())
    assert test["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-9)
    assert test["signature"].startswith("nrefs:1|case:mixed")
    # whitespace tokens: the tokenized, lower-cased BLEU is sacrebleu's on the same lines, tokenize=none
    tok = sacrebleu.metrics.BLEU(tokenize="none", lowercase=True).corpus_score(hyps, [refs]).score
    assert test["bleu_tok"] == pytest.approx(tok, abs=1e-9)


def test_same_seed_same_metrics_and_resume_equals_uninterrupted(tmp_path):
    files = reverse_task(tmp_path, n_train=300, n_val=20)
    a = train_dir(tiny_cfg(files, tmp_path / "a", epochs=3, dropout=0.1))
    b = train_dir(tiny_cfg(files, tmp_path / "b", epochs=3, dropout=0.1))
    assert scores(a) == scores(b)
    # stop after one epoch, then continue the same folder to three
    c = train_dir(tiny_cfg(files, tmp_path / "c", epochs=1, dropout=0.1))
    c = train_dir(dataclasses.replace(tiny_cfg(files, c, epochs=3, dropout=0.1), resume=True))
    assert scores(c) == scores(a)
    assert json.loads((c / "config.json").read_text())["train"]["epochs"] == 3
    assert (
        json.loads((c / "test.json").read_text())["bleu"] == json.loads((a / "test.json").read_text())["bleu"]
    )
    other = train_dir(tiny_cfg(files, tmp_path / "d", epochs=1, dropout=0.1, seed=1))
    assert scores(other)[0] != scores(a)[0]


def test_existing_run_folder_needs_resume(tmp_path, reverse_run):
    files = reverse_task(tmp_path, n_train=50, n_val=5)
    with pytest.raises(BadInput, match="--resume"):
        train_dir(tiny_cfg(files, reverse_run, epochs=1))


def _table(path: Path, tokens: list[str], dim: int, seed: int = 0) -> torch.Tensor:
    from embtool.tables.table import EmbeddingTable, save

    vectors = torch.randn(len(tokens), dim, generator=torch.Generator().manual_seed(seed)) * 0.3
    save(EmbeddingTable(vectors, tokens, source="test", tokenizer="whitespace"), path)
    return vectors


def test_rows_come_from_the_table_by_token_and_freeze_keeps_them(tmp_path):
    from safetensors.torch import load_file

    files = reverse_task(tmp_path, n_train=200, n_val=10)
    # the table lacks 7, 8, 9 and the specials, holds extra words, and orders tokens its own way
    tokens = ["zebra", "6", "5", "4", "3", "2", "1", "0", "apple"]
    vectors = _table(tmp_path / "t.safetensors", tokens, 16)
    run = train_dir(
        tiny_cfg(
            files,
            tmp_path / "run",
            emb=str(tmp_path / "t.safetensors"),
            epochs=2,
            heads=2,
            d_model=0,
            freeze_emb=True,
        )
    )
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["d_model"] == 16  # the table's D
    assert config["vocab"]["src_missing"] == 4 + 3  # specials and 7, 8, 9
    assert config["tables"]["src"]["n"] == 9 and len(config["tables"]["src"]["sha256"]) == 64
    vocab = json.loads((run / "vocab.json").read_text())["src"]
    weights = load_file(str(run / "last.safetensors"))
    emb = weights["src_in.emb.weight"]  # (V, D)
    for token, row in zip(tokens, vectors, strict=True):
        if token in vocab:
            assert torch.equal(emb[vocab.index(token)], row), token
    # frozen: the whole layer is bit-identical to the first epoch's (and the table's rows)
    first = train_dir(
        tiny_cfg(
            files,
            tmp_path / "run1",
            emb=str(tmp_path / "t.safetensors"),
            epochs=1,
            heads=2,
            d_model=0,
            freeze_emb=True,
        )
    )
    assert torch.equal(load_file(str(first / "last.safetensors"))["src_in.emb.weight"], emb)
    assert not torch.equal(
        load_file(str(first / "last.safetensors"))["encoder.layers.0.ffn.fc.weight"],
        weights["encoder.layers.0.ffn.fc.weight"],
    )


def test_no_posenc_and_tie_output_are_recorded(tmp_path):
    files = reverse_task(tmp_path, n_train=100, n_val=5)
    run = train_dir(tiny_cfg(files, tmp_path / "run", epochs=1, posenc=False, tie_output=True))
    model = json.loads((run / "config.json").read_text())["model"]
    assert model["posenc"] is False and model["tie_output"] is True


def test_beam_search_run(tmp_path):
    files = reverse_task(tmp_path, n_train=200, n_val=10)
    run = train_dir(tiny_cfg(files, tmp_path / "run", epochs=1, beam=3))
    test = json.loads((run / "test.json").read_text())
    assert test["beam"] == 3
    assert len((run / "hyps.test.txt").read_text().splitlines()) == 10


def _mnli_folder(folder: Path) -> Path:
    rng = random.Random(0)
    words = ["a", "dog", "cat", "runs", "sleeps", "not", "the", "big"]
    labels = ["entailment", "neutral", "contradiction"]
    for name, n in (("train", 120), ("dev_matched", 20), ("dev_mismatched", 20)):
        rows = ["premise\thypothesis\tlabel"]
        for _ in range(n):
            p = " ".join(rng.choice(words) for _ in range(5))
            h = " ".join(rng.choice(words) for _ in range(3))
            rows.append(f"{p}\t{h}\t{rng.choice(labels)}")
        (folder / f"{name}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


def test_mnli_reports_matched_and_mismatched(tmp_path):
    data = _mnli_folder(tmp_path)
    cfg = TrainConfig(
        task="mnli",
        data_dir=str(data),
        tokenizer="whitespace",
        d_model=16,
        heads=2,
        layers=1,
        epochs=2,
        batch_size=32,
        out=str(tmp_path / "run"),
        device="cpu",
        threads=1,
    )
    run = train_dir(cfg)
    m = metrics(run)
    assert {"val_acc", "val_acc_mismatched"} <= set(m[0])
    test = json.loads((run / "test.json").read_text())
    assert set(test) == {
        "selection",
        "best_val_acc",
        "best_epoch",
        "best_val_acc_mismatched",
        "best_epoch_mismatched",
        "at_lowest_val_loss",
    }
    # §5: each accuracy is the highest of its split, at its own epoch
    assert test["best_val_acc"] == max(x["val_acc"] for x in m)
    assert test["best_val_acc_mismatched"] == max(x["val_acc_mismatched"] for x in m)
    lowest = min(m, key=lambda x: x["val_loss"])
    assert test["at_lowest_val_loss"]["val_acc"] == lowest["val_acc"]
    config = json.loads((run / "config.json").read_text())
    assert config["kind"] == "classification" and config["model"]["n_classes"] == 3
    assert "<sep>" in json.loads((run / "vocab.json").read_text())["src"]


@pytest.mark.slow
def test_sst2_slice_learns(tmp_path, shared_data):
    cfg = TrainConfig(
        task="sst2",
        data_dir=str(shared_data),
        d_model=32,
        heads=4,
        layers=1,
        epochs=2,
        batch_size=64,
        lr=1e-3,
        max_train_examples=3000,
        max_eval_examples=300,
        out=str(tmp_path / "run"),
        device="cpu",
        threads=1,
    )
    run = train_dir(cfg)
    m = metrics(run)
    test = json.loads((run / "test.json").read_text())
    assert test["best_val_acc"] == max(x["val_acc"] for x in m if x["epoch"] == test["best_epoch"])
    assert test["best_val_acc"] > 55.0  # above chance on SST-2's dev slice
    assert json.loads((run / "config.json").read_text())["train"]["tokenizer"] is None


def test_gzip_local_pairs(tmp_path):
    files = reverse_task(tmp_path, n_train=80, n_val=5)
    for key in ("train_src", "train_tgt"):
        p = Path(files[key])
        gz = p.with_suffix(p.suffix + ".gz")
        gz.write_bytes(gzip.compress(p.read_bytes()))
        files[key] = str(gz)
    run = train_dir(tiny_cfg(files, tmp_path / "run", epochs=1))
    assert (run / "test.json").is_file()


def test_bf16_autocast_runs_on_cpu(tmp_path):
    """--amp bf16 (the CUDA default) exercised on the CPU, where PyTorch allows it: the losses are
    finite, near the float32 run's, and not equal to them (autocast really ran in bf16)."""
    import math

    files = reverse_task(tmp_path, n_train=100, n_val=5)
    run = train_dir(tiny_cfg(files, tmp_path / "run", epochs=1, amp="bf16", beam=2))
    fp32 = train_dir(tiny_cfg(files, tmp_path / "fp32", epochs=1, amp="off", beam=2))
    assert json.loads((run / "config.json").read_text())["amp"] == "bf16"
    (m,), (ref,) = metrics(run), metrics(fp32)
    for key in ("train_loss", "val_loss"):
        assert math.isfinite(m[key]) and m[key] == pytest.approx(ref[key], rel=0.05)
    assert m["train_loss"] != ref["train_loss"]
    assert json.loads((run / "test.json").read_text())["beam"] == 2


def test_train_returns_its_result_and_puts_process_state_back(tmp_path):
    """The library may be called from a user's process: the global RNG and the thread count are as
    they were after `train` returns (the run set its own seed and --threads 1 inside)."""
    from embtool.training import train

    files = reverse_task(tmp_path, n_train=60, n_val=5)
    threads = torch.get_num_threads()
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    result = train(tiny_cfg(files, tmp_path / "run", epochs=1, dropout=0.1))
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads
    assert result.path == tmp_path / "run"
    assert result.test == json.loads((result.path / "test.json").read_text())
    assert [m["epoch"] for m in result.metrics] == [1] and "test BLEU" in result.summary()


def _one_epoch_run(tmp_path: Path, name: str, **kw) -> tuple[Path, dict[str, str]]:
    files = reverse_task(tmp_path, n_train=60, n_val=5)
    run = train_dir(tiny_cfg(files, tmp_path / name, epochs=1, **kw))
    return run, files


def _state_from_another_model(run: Path, tmp_path: Path, files: dict[str, str]) -> None:
    other = train_dir(tiny_cfg(files, tmp_path / "other", epochs=1, d_model=16, heads=2))
    (run / "state.pt").write_bytes((other / "state.pt").read_bytes())


def _state_without_model(run: Path, tmp_path: Path, files: dict[str, str]) -> None:
    state = torch.load(run / "state.pt", weights_only=True)
    del state["model"]
    torch.save(state, run / "state.pt")


def _state_deleted(run: Path, tmp_path: Path, files: dict[str, str]) -> None:
    (run / "state.pt").unlink()


@pytest.mark.parametrize(
    ("damage", "message"),
    [(_state_from_another_model, r"state.pt: holds weights of another model size \(src_in.emb.weight is \(\d+, 16\)"),
     (_state_without_model, r"state.pt: not a complete resume state \(no model\)"),
     (_state_deleted, r"state.pt: no resume state, but metrics.jsonl records 1 epoch\(s\)")],
    ids=["state-of-another-size", "state-missing-keys", "state-deleted-after-an-epoch"],
)  # fmt: skip
def test_resume_checks_state_against_config_before_changing_anything(tmp_path: Path, damage, message) -> None:
    """Issue 14.10: a bad state.pt is a named error, and the folder (test.json, metrics) stays as it was."""
    run, files = _one_epoch_run(tmp_path, "run")
    damage(run, tmp_path, files)
    (run / "test.json").unlink()  # as the issue found it: nothing says the run is done
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with pytest.raises(BadInput, match=message):
        train_dir(tiny_cfg(files, run, epochs=2, resume=True))
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_resume_takes_device_amp_compile_and_threads_from_the_command(tmp_path, cli):
    files = reverse_task(tmp_path, n_train=120, n_val=10)
    run = train_dir(tiny_cfg(files, tmp_path / "run", epochs=1, amp="off", threads=1))
    c = json.loads((run / "config.json").read_text())
    assert (c["amp"], c["train"]["threads"], c["train"]["device"]) == ("off", 1, "cpu")
    # the library: a resumed config's where-and-how settings win over the stored ones
    train_dir(
        dataclasses.replace(tiny_cfg(files, run, epochs=2, amp="bf16", threads=2, device="auto"), resume=True)
    )
    c = json.loads((run / "config.json").read_text())
    assert (c["amp"], c["train"]["amp"], c["train"]["threads"], c["train"]["device"]) == (
        "bf16",
        "bf16",
        2,
        "auto",
    )
    assert c["train"]["epochs"] == 2 and c["train"]["lr"] == 3e-3  # what it learns stays the run's
    # the command line: `train --resume DIR --amp off --threads 1` (test.json removed: it finishes again)
    (run / "test.json").unlink()
    where = ["-q", "train", "--resume", str(run), "--amp", "off", "--threads", "1", "--device", "cpu"]
    refused = cli(*where, "--lr", "1")  # issue 14.10: what it learns is not changed silently, it is refused
    assert refused.code == 2 and "--lr 1.0 (the run has 0.003) would change the run" in refused.stderr
    r = cli(*where)
    assert r.code == 0, r.stderr
    c = json.loads((run / "config.json").read_text())
    assert (c["amp"], c["train"]["threads"], c["train"]["device"], c["train"]["lr"]) == (
        "off",
        1,
        "cpu",
        3e-3,
    )


def test_fp16_keeps_its_loss_scale_in_the_resume_state(tmp_path):
    files = reverse_task(tmp_path, n_train=120, n_val=10)
    run = train_dir(tiny_cfg(files, tmp_path / "run", epochs=1, amp="fp16"))
    state = torch.load(run / "state.pt", weights_only=True)
    assert state["scaler"]["scale"] > 0 and "_growth_tracker" in state["scaler"]
    assert json.loads((run / "config.json").read_text())["amp"] == "fp16"
    train_dir(dataclasses.replace(tiny_cfg(files, run, epochs=2, amp="fp16"), resume=True))
    assert len(metrics(run)) == 2 and all(math.isfinite(m["train_loss"]) for m in metrics(run))


def test_config_json_records_what_the_compiler_did(tmp_path, monkeypatch):
    """Issue 20.3: a run says in config.json how many graphs it compiled and whether the compiled
    path was still in use at its end (a fallback says why). The eager backend stands in for Inductor."""
    import functools

    from embtool.training import loop, objective

    monkeypatch.setattr(loop, "prepare_step", functools.partial(objective.prepare, backend="eager"))
    files = reverse_task(tmp_path, n_train=81, n_val=10)  # batches of 16, and one of 1 each epoch
    run = train_dir(tiny_cfg(files, tmp_path / "run", epochs=2, batch_size=16, compile=True))
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["compile"] is True
    # one graph for every batch of two or more, one for a batch of one; both epochs on them
    assert config["compile"] == {"graphs": 2, "compiled": True, "fallback": None}
