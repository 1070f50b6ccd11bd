"""The classifier's pooling and pairs (issue 22.2): --pool mean|first (a <cls> token first), and
--segments (a learned segment embedding for MNLI's premise <sep> hypothesis). Mean stays the default."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import run_in_process
from embtool.core.errors import BadInput
from embtool.model.pooling import check_pooling, pool, segment_ids
from embtool.model.transformer import Classifier, ModelConfig
from embtool.training.config import TrainConfig
from embtool.training.data import CLS, SEP, SPECIALS
from embtool.training.setup import source_specials

SEP_ID = 4


@pytest.mark.parametrize(
    ("ids", "segments"),
    [
        ([7, 8, SEP_ID, 9, 0], [0, 0, 0, 1, 1]),  # <sep> is the premise's; padding after it is 1
        ([7, 8, 9], [0, 0, 0]),  # no <sep>: one segment
        ([SEP_ID, 9], [0, 1]),  # empty premise
        ([7, SEP_ID, 9, SEP_ID, 5], [0, 0, 1, 1, 1]),  # a second <sep> opens no third segment
    ],
    ids=["pair", "single", "empty-premise", "two-seps"],
)
def test_segment_ids(ids, segments) -> None:
    assert segment_ids(torch.tensor([ids]), SEP_ID).tolist() == [segments]


def test_pool_mean_leaves_padding_out_and_first_takes_position_0() -> None:
    h = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)  # (B, S, D)
    src = torch.tensor([[5, 6, 0], [5, 6, 7]])  # the first row padded at its end
    assert pool(h, src, "mean", 0).tolist() == [[1.0, 2.0], [8.0, 9.0]]  # rows (0,1),(2,3) / all three
    assert pool(h, src, "first", 0).tolist() == [[0.0, 1.0], [6.0, 7.0]]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"pool": "last"}, "invalid --pool 'last'; valid choices: ['mean', 'first']"),
        ({"segments": True}, "--segments needs sentence pairs"),
    ],
)
def test_model_config_checks_pooling(kw, message) -> None:
    with pytest.raises(BadInput, match=message.replace("[", r"\[").replace("]", r"\]")):
        ModelConfig(kind="classification", src_vocab=9, d_model=8, n_heads=2, **kw)
    check_pooling("first", True, SEP_ID)  # a pair task's <sep> id: fine


def _classifier(**kw) -> Classifier:
    torch.manual_seed(0)
    cfg = ModelConfig(kind="classification", src_vocab=12, n_classes=3, d_model=8, n_heads=2, n_layers=1,
                      dropout=0.0, **kw)  # fmt: skip
    return Classifier(cfg).eval()


def test_the_default_classifier_has_no_new_parameters() -> None:
    """Mean pooling, no segments: the parameters (and so the checkpoints) of before."""
    names = {n.split(".")[0] for n, _ in _classifier().named_parameters()}
    assert names == {"src_in", "encoder", "head"}


def test_first_pooling_reads_position_0() -> None:
    model = _classifier(pool="first")
    src = torch.tensor([[4, 7, 8, 0], [4, 9, 10, 11]])
    with torch.no_grad():
        h = model.encoder(model.src_in(src), (src != 0)[:, None, None, :])  # (B, S, D)
        assert torch.allclose(model(src), model.head(h[:, 0]), atol=1e-6)
        other = src.clone()
        other[:, 1:] = torch.tensor([[3, 5, 0], [5, 3, 6]])  # other tokens after <cls>: other logits
        assert not torch.allclose(model(src), model(other))


def test_segments_add_a_learned_embedding_after_sep() -> None:
    plain = _classifier(sep_id=SEP_ID)
    seg = _classifier(segments=True, sep_id=SEP_ID)
    assert seg.pool.segment is not None and tuple(seg.pool.segment.weight.shape) == (2, 8)
    seg.load_state_dict(plain.state_dict(), strict=False)  # every weight but the segments'
    pair = torch.tensor([[5, 6, SEP_ID, 7, 8]])
    single = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        seg.pool.segment.weight.zero_()
        assert torch.allclose(seg(pair), plain(pair), atol=1e-6)  # zero rows: no change
        seg.pool.segment.weight[1] = 1.0  # segment 1 only: tokens after <sep>
        assert torch.allclose(seg(single), plain(single), atol=1e-6)  # no <sep>: all segment 0
        assert not torch.allclose(seg(pair), plain(pair), atol=1e-3)


@pytest.mark.parametrize(
    ("task", "pool_", "want"),
    [
        ("sst2", "mean", SPECIALS),
        ("sst2", "first", (*SPECIALS, CLS)),
        ("mnli", "mean", (*SPECIALS, SEP)),
        ("mnli", "first", (*SPECIALS, SEP, CLS)),
        ("multi30k", "mean", SPECIALS),
    ],
)
def test_source_specials(task, pool_, want) -> None:
    assert source_specials(TrainConfig(task=task, pool=pool_)) == want


def test_first_pooling_puts_cls_first_in_every_source(shared_data) -> None:
    from embtool.tasks import load_splits
    from embtool.training.setup import prepare

    data = load_splits("sst2", shared_data / "sst2").cut(40, 10)
    prep = prepare(TrainConfig(task="sst2", pool="first", cache=False).resolved(), data)
    cls = prep.src.vocab.index(CLS)
    assert cls == len(SPECIALS) and all(
        src[0] == cls and cls not in src[1:] for src, _ in prep.train + prep.val
    )
    mean = prepare(TrainConfig(task="sst2", cache=False).resolved(), data)
    assert CLS not in mean.src.vocab
    words = [[prep.src.vocab[i] for i in src[1:]] for src, _ in prep.train]
    assert words == [[mean.src.vocab[i] for i in src] for src, _ in mean.train]  # the same tokens after it


def _table(path, n: int) -> str:
    from embtool.tables.table import save
    from embtool.tables.transforms import xavier

    save(xavier([*SPECIALS, *(f"w{i}" for i in range(n))], 300), path)
    return str(path)


def test_dry_run_resolves_pool_first(tmp_path) -> None:
    emb = _table(tmp_path / "t.safetensors", 50)
    runs = {
        p: json.loads(run_in_process("train", "sst2", "--emb", emb, "--pool", p, "--dry-run", "--json").text)
        for p in ("mean", "first")
    }
    assert runs["mean"]["model"]["pool"] == "mean" and runs["first"]["model"]["pool"] == "first"
    assert runs["first"]["vocab"]["src_size"] == runs["mean"]["vocab"]["src_size"] + 1  # <cls>
    assert runs["mean"]["train"]["pool"] == "mean" and runs["mean"]["train"]["segments"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sst2", "--pool", "last"], "invalid --pool 'last'; valid choices: ['mean', 'first']"),
        (["sst2", "--segments"], "--segments: sst2 has one sentence an example"),
        (["multi30k", "--pool", "first"], "--pool/--segments set the classifier (sst2, mnli)"),
    ],
)
def test_cli_pooling_errors_name_the_option(tmp_path, args, message) -> None:
    r = run_in_process("train", *args, "--dry-run", "-o", str(tmp_path / "run"))
    assert r.code == 2 and r.stderr.startswith("embtool: error: ") and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_sst2_trains_with_pool_first(tmp_path, shared_data) -> None:
    """A real (tiny) SST-2 run with the <cls> pooling: it trains, tests and records the choice."""
    out = tmp_path / "run"
    r = run_in_process(
        "train", "sst2", "--data-dir", str(shared_data / "sst2"), "--pool", "first",
        "--max-train-examples", "300", "--max-eval-examples", "40", "--epochs", "1", "--d-model", "16",
        "--heads", "2", "--layers", "1", "--batch-size", "32", "--device", "cpu", "--threads", "1",
        "--amp", "off", "--no-cache", "-o", str(out),
    )  # fmt: skip
    assert r.code == 0, r.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["pool"] == config["model"]["pool"] == "first"
    assert 0.0 <= json.loads((out / "test.json").read_text())["best_val_acc"] <= 100.0
