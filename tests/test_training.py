"""The trainer on generated tasks: it learns, is deterministic, resumes, loads rows by token."""

from __future__ import annotations

import dataclasses
import gzip
import json
import random
from pathlib import Path

import pytest
import torch

from embtool.errors import BadInput
from embtool.training import TrainConfig, train
from embtool.training.batching import make_batches, micro_batches
from embtool.training.decoding import beam_search, greedy

DIGITS = [str(i) for i in range(10)]


def reverse_task(folder: Path, n_train: int = 1000, n_val: int = 60, seed: int = 0) -> dict[str, str]:
    """Digit sequences and their reversals, as local parallel files."""
    rng = random.Random(seed)
    paths = {}
    for split, n in (("train", n_train), ("val", n_val)):
        src, tgt = [], []
        for _ in range(n):
            x = [rng.choice(DIGITS) for _ in range(rng.randint(3, 8))]
            src.append(" ".join(x))
            tgt.append(" ".join(reversed(x)))
        for side, lines in (("src", src), ("tgt", tgt)):
            p = folder / f"{split}.{side}"
            p.write_text("\n".join(lines) + "\n", encoding="utf-8")
            paths[f"{split}_{side}"] = str(p)
    return paths


def tiny_cfg(files: dict[str, str], out: Path, **kw) -> TrainConfig:
    base = dict(
        task="files", src=files["train_src"], tgt=files["train_tgt"], val_src=files["val_src"],
        val_tgt=files["val_tgt"], tokenizer="whitespace", d_model=32, n_heads=4, n_layers=1, dropout=0.0,
        epochs=6, batch_size=64, lr=3e-3, out=str(out), device="cpu", threads=1,
    )
    base.update(kw)
    return TrainConfig(**base)


def metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def scores(run: Path) -> list[tuple]:
    """The metrics that must repeat exactly (not seconds or tokens/s)."""
    return [(m["epoch"], m["train_loss"], m["val_loss"], m.get("val_bleu"), m.get("val_acc")) for m in metrics(run)]


@pytest.fixture(scope="module")
def reverse_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("reverse")
    files = reverse_task(folder)
    return train(tiny_cfg(files, folder / "run"))


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
    assert {"config.json", "metrics.jsonl", "best.safetensors", "last.safetensors", "state.pt",
            "test.json", "hyps.test.txt"} <= names
    config = json.loads((reverse_run / "config.json").read_text())
    assert {"embtool", "task", "kind", "seed", "model", "train", "tables", "vocab", "device"} <= set(config)
    assert config["kind"] == "translation"
    assert config["tables"] == {"src": None, "tgt": None}
    assert config["vocab"]["src_size"] == 14  # 4 specials + 10 digits
    assert config["model"]["d_model"] == 32
    state = torch.load(reverse_run / "state.pt", weights_only=True)
    assert state["epoch"] == 6
    test = json.loads((reverse_run / "test.json").read_text())
    assert set(test) == {"bleu", "signature", "best_epoch", "split", "beam"}
    best = min(metrics(reverse_run), key=lambda x: x["val_loss"])
    assert test["best_epoch"] == best["epoch"]


def test_test_bleu_equals_sacrebleu_on_the_hypotheses(reverse_run):
    import sacrebleu

    config = json.loads((reverse_run / "config.json").read_text())
    hyps = (reverse_run / "hyps.test.txt").read_text(encoding="utf-8").splitlines()
    refs = Path(config["train"]["val_tgt"]).read_text(encoding="utf-8").splitlines()
    assert len(hyps) == len(refs)
    test = json.loads((reverse_run / "test.json").read_text())
    assert test["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-9)
    assert test["signature"].startswith("nrefs:1|case:mixed")


def test_same_seed_same_metrics_and_resume_equals_uninterrupted(tmp_path):
    files = reverse_task(tmp_path, n_train=300, n_val=20)
    a = train(tiny_cfg(files, tmp_path / "a", epochs=3, dropout=0.1))
    b = train(tiny_cfg(files, tmp_path / "b", epochs=3, dropout=0.1))
    assert scores(a) == scores(b)
    # stop after one epoch, then continue the same folder to three
    c = train(tiny_cfg(files, tmp_path / "c", epochs=1, dropout=0.1))
    c = train(dataclasses.replace(tiny_cfg(files, c, epochs=3, dropout=0.1), resume=True))
    assert scores(c) == scores(a)
    assert json.loads((c / "config.json").read_text())["train"]["epochs"] == 3
    assert json.loads((c / "test.json").read_text())["bleu"] == json.loads((a / "test.json").read_text())["bleu"]
    other = train(tiny_cfg(files, tmp_path / "d", epochs=1, dropout=0.1, seed=1))
    assert scores(other)[0] != scores(a)[0]


def test_existing_run_folder_needs_resume(tmp_path, reverse_run):
    files = reverse_task(tmp_path, n_train=50, n_val=5)
    with pytest.raises(BadInput, match="--resume"):
        train(tiny_cfg(files, reverse_run, epochs=1))


def _table(path: Path, tokens: list[str], dim: int, seed: int = 0) -> torch.Tensor:
    from embtool.table import EmbeddingTable, save

    vectors = torch.randn(len(tokens), dim, generator=torch.Generator().manual_seed(seed)) * 0.3
    save(EmbeddingTable(vectors, tokens, source="test", tokenizer="whitespace"), path)
    return vectors


def test_rows_come_from_the_table_by_token_and_freeze_keeps_them(tmp_path):
    from safetensors.torch import load_file

    files = reverse_task(tmp_path, n_train=200, n_val=10)
    # the table lacks 7, 8, 9 and the specials, holds extra words, and orders tokens its own way
    tokens = ["zebra", "6", "5", "4", "3", "2", "1", "0", "apple"]
    vectors = _table(tmp_path / "t.safetensors", tokens, 16)
    run = train(tiny_cfg(files, tmp_path / "run", emb=str(tmp_path / "t.safetensors"), epochs=2,
                         n_heads=2, d_model=0, freeze_emb=True))
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
    first = train(tiny_cfg(files, tmp_path / "run1", emb=str(tmp_path / "t.safetensors"), epochs=1,
                           n_heads=2, d_model=0, freeze_emb=True))
    assert torch.equal(load_file(str(first / "last.safetensors"))["src_in.emb.weight"], emb)
    assert not torch.equal(
        load_file(str(first / "last.safetensors"))["encoder.layers.0.ffn.fc.weight"],
        weights["encoder.layers.0.ffn.fc.weight"],
    )


def test_no_posenc_and_tie_output_are_recorded(tmp_path):
    files = reverse_task(tmp_path, n_train=100, n_val=5)
    run = train(tiny_cfg(files, tmp_path / "run", epochs=1, posenc=False, tie_output=True))
    model = json.loads((run / "config.json").read_text())["model"]
    assert model["posenc"] is False and model["tie_output"] is True


def test_beam_one_equals_greedy_and_beam_runs(reverse_run):
    from embtool.model import ModelConfig, Seq2Seq
    from embtool.training.checkpoint import load_weights, read_weights_meta

    meta = read_weights_meta(reverse_run / "best.safetensors")
    model = Seq2Seq(ModelConfig.from_dict(meta["model"]))
    load_weights(model, reverse_run / "best.safetensors")
    model.eval()
    src = torch.tensor([[5, 6, 7, 8, 3], [9, 10, 3, 0, 0]])
    g = greedy(model, src, 12)
    assert beam_search(model, src, 12, k=1) == g
    b = beam_search(model, src, 12, k=4)
    assert len(b) == 2 and all(isinstance(t, int) for h in b for t in h)


def test_beam_search_run(tmp_path):
    files = reverse_task(tmp_path, n_train=200, n_val=10)
    run = train(tiny_cfg(files, tmp_path / "run", epochs=1, beam=3))
    test = json.loads((run / "test.json").read_text())
    assert test["beam"] == 3
    assert len((run / "hyps.test.txt").read_text().splitlines()) == 10


@pytest.mark.parametrize(("batch_size", "max_tokens"), [(4, 0), (64, 20), (3, 12)])
def test_batches_cover_every_example_once_within_limits(batch_size, max_tokens):
    lengths = [random.Random(i).randint(1, 10) for i in range(103)]
    batches = make_batches(lengths, batch_size, max_tokens, torch.Generator().manual_seed(0))
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(103))
    for b in batches:
        assert len(b) <= batch_size
        if max_tokens:
            assert len(b) * max(lengths[i] for i in b) <= max_tokens
    again = make_batches(lengths, batch_size, max_tokens, torch.Generator().manual_seed(0))
    assert again == batches


def test_max_tokens_buckets_by_length():
    rng = random.Random(0)
    lengths = [rng.randint(3, 40) for _ in range(2000)]
    batches = make_batches(lengths, 64, 64 * 40, torch.Generator().manual_seed(0))
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded < 1.1 * sum(lengths)


def test_sentence_batches_are_random():
    """Without --max-tokens a step is a random batch, as in the paper (bucketing slows early learning)."""
    batches = make_batches(list(range(100)), 16, 0, torch.Generator().manual_seed(0))
    order = torch.randperm(100, generator=torch.Generator().manual_seed(0)).tolist()
    assert batches == [order[i : i + 16] for i in range(0, 100, 16)]


def test_micro_batches_cut_padding_and_cover_the_batch():
    rng = random.Random(1)
    src = {i: rng.randint(2, 40) for i in range(128)}
    tgt = {i: max(2, src[i] + rng.randint(-3, 3)) for i in range(128)}
    runs = micro_batches(list(range(128)), src, tgt, overhead=64)
    assert sorted(i for r in runs for i in r) == list(range(128)) and 1 < len(runs) <= 128
    real = sum(src.values()) + sum(tgt.values())
    padded = sum(len(r) * (max(src[i] for i in r) + max(tgt[i] for i in r)) for r in runs)
    whole = 128 * (max(src.values()) + max(tgt.values()))
    assert padded < 1.15 * real < whole / 1.5
    assert [len(r) for r in micro_batches(list(range(128)), src, tgt, overhead=10**9)] == [64, 64]  # at most 64 a run


@pytest.mark.parametrize("kind", ["translation", "classification"])
def test_micro_batched_step_equals_the_whole_batch_step(kind):
    from embtool.model import ModelConfig, build
    from embtool.training.loop import collate, collate_parts, pass_overhead, train_step

    rng = random.Random(2)
    examples = [([rng.randint(4, 19) for _ in range(rng.randint(1, 30))],
                 [rng.randint(4, 19) for _ in range(rng.randint(1, 30))] if kind == "translation" else rng.randint(0, 1))
                for _ in range(40)]  # fmt: skip
    grads = []
    for split in (False, True):
        torch.manual_seed(0)
        model = build(ModelConfig(kind=kind, src_vocab=20, tgt_vocab=20 if kind == "translation" else 0,
                                  d_model=16, n_heads=2, n_layers=1, dropout=0.0))  # fmt: skip
        params = list(model.parameters())
        opt = torch.optim.SGD(params, lr=0.0)
        index = list(range(40))
        cpu = torch.device("cpu")
        assert pass_overhead(model.cfg, cpu) > 10_000 and pass_overhead(ModelConfig(), cpu) == 64  # type: ignore[arg-type, operator]
        parts = collate_parts(examples, index, kind, cpu, 16) if split else [collate(examples, index, kind)]
        assert (len(parts) > 1) == split
        loss, units = train_step(model, opt, params, parts, kind, 0.0, torch.device("cpu"), False)
        grads.append((loss, units, [p.grad.clone() for p in params if p.grad is not None]))
    (l1, u1, g1), (l2, u2, g2) = grads
    assert u1 == u2 and l1 == pytest.approx(l2, rel=1e-5)
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"task": "wmt"}, "valid choices: ['multi30k'"),
        ({"device": "tpu"}, "valid choices: ['auto', 'cpu', 'cuda']"),
        ({"amp": "fp8"}, "--amp"),
        ({"task": "files"}, "--src FILE and --tgt FILE"),
        ({"emb": "a", "src_emb": "b"}, "not both"),
        ({"task": "sst2", "tgt_emb": "t"}, "no target side"),
        ({"beam": 0}, "--beam"),
        ({"missing": "random"}, "valid choices: ['normal'"),
    ],
)
def test_config_errors(kw, message):
    with pytest.raises(BadInput, match=message.replace("[", r"\[").replace("]", r"\]")):
        TrainConfig(**kw)


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
    cfg = TrainConfig(task="mnli", data_dir=str(data), tokenizer="whitespace", d_model=16, n_heads=2,
                      n_layers=1, epochs=2, batch_size=32, out=str(tmp_path / "run"), device="cpu", threads=1)
    run = train(cfg)
    m = metrics(run)
    assert {"val_acc", "val_acc_mismatched"} <= set(m[0])
    test = json.loads((run / "test.json").read_text())
    assert set(test) == {"best_val_acc", "best_epoch", "best_val_acc_mismatched"}
    config = json.loads((run / "config.json").read_text())
    assert config["kind"] == "classification" and config["model"]["n_classes"] == 3
    assert "<sep>" in json.loads((run / "vocab.json").read_text())["src"]


def test_sst2_slice_learns(tmp_path, shared_data):
    cfg = TrainConfig(task="sst2", data_dir=str(shared_data), d_model=32, n_heads=4, n_layers=1,
                      epochs=2, batch_size=64, lr=1e-3, max_train_examples=3000, max_eval_examples=300,
                      out=str(tmp_path / "run"), device="cpu", threads=1)
    run = train(cfg)
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
    run = train(tiny_cfg(files, tmp_path / "run", epochs=1))
    assert (run / "test.json").is_file()


def test_bf16_autocast_runs_on_cpu(tmp_path):
    """--amp bf16 (the CUDA default) exercised on the CPU, where PyTorch allows it."""
    files = reverse_task(tmp_path, n_train=100, n_val=5)
    run = train(tiny_cfg(files, tmp_path / "run", epochs=1, amp="bf16", beam=2))
    config = json.loads((run / "config.json").read_text())
    assert config["amp"] == "bf16"
    m = metrics(run)
    assert m[0]["train_loss"] == m[0]["train_loss"]  # finite, not NaN
    assert (run / "test.json").is_file()
