"""A run's evaluations: rebuilt from a finished run folder, they give its last metrics line and test.json;
a split's loss and hypotheses are those of before issue 20, read from the device once, decoded in a
GPU's token-budgeted batches, and shared over the ranks of a group."""

from __future__ import annotations

import gzip
import json
import random
import shutil

import pytest
import torch
import torch.nn.functional as F

from conftest import meta_only, metrics
from embtool.model.transformer import ModelConfig, build
from embtool.training import evaluation
from embtool.training.batching import make_batches
from embtool.training.config import TrainConfig
from embtool.training.data import EOS_ID
from embtool.training.decoding import decode, max_output_len
from embtool.training.engine import Engine
from embtool.training.kinds import kind_of
from embtool.training.parallel import World
from embtool.training.setup import tokenize


def test_validate_and_test_result_repeat_a_finished_run(reverse_run, tmp_path):
    from embtool.training.loop import build
    from embtool.training.runfolder import RunFolder, resume_config
    from embtool.training.spec import RunSpec

    copy = tmp_path / "run"
    shutil.copytree(reverse_run, copy)  # build rewrites config.json: leave the shared run alone
    cfg = resume_config(copy)
    run = build(
        RunSpec.of(cfg), RunFolder(copy), torch.device("cpu"), lambda e, i: None
    )  # weights of the last epoch
    last = metrics(reverse_run)[-1]
    got = run.kind.validate(run.model, run.prep, run.cfg, run.engine)  # as the run validated (--amp auto)
    assert got["val_loss"] == pytest.approx(last["val_loss"], rel=1e-6)
    assert got["val_bleu"] == pytest.approx(last["val_bleu"], abs=1e-9)
    assert got["val_bleu_tok"] == pytest.approx(last["val_bleu_tok"], abs=1e-9)  # both BLEUs each epoch
    want = json.loads((reverse_run / "test.json").read_text())
    assert run.kind.test_result(run) == want  # the best checkpoint, decoded again


# (tokenizer spec, signature's case, the detokenized BLEU as sacrebleu gives it on the original references)
BLEU_CASES = {
    "lower-cased side: sacrebleu's lowercase=True": ("whitespace+lower", "case:lc", True),
    "cased side: cased BLEU": ("whitespace", "case:mixed", False),
}


@pytest.mark.parametrize(("spec", "case", "lowercase"), BLEU_CASES.values(), ids=BLEU_CASES)
def test_bleu_scores_score_the_original_references(spec, case, lowercase):
    from sacrebleu.metrics import BLEU

    vocab = ["<pad>", "<unk>", "<bos>", "<eos>", "two", "dogs", "run", "in", "the", "park", "."]
    ids = [[4, 5, 6, 7, 8, 9, 10, 3], [8, 5, 6, 3]]  # "two dogs run in the park .", "the dogs run"
    refs = ["Two dogs run in the Park .", "The dogs run home"]
    got = evaluation.bleu_scores(ids, refs, vocab, spec)
    hyps = ["two dogs run in the park .", "the dogs run"]
    want = BLEU(lowercase=lowercase).corpus_score(hyps, [refs]).score
    assert got["bleu"] == pytest.approx(want, abs=1e-12)
    assert f"|{case}|" in got["signature"] and "|tok:13a|" in got["signature"]
    # the model's own tokens against the references split by the same tokenizer, lower-cased
    tok_refs = [" ".join(t) for t in tokenize(spec, refs)]
    tok = BLEU(tokenize="none", lowercase=True, force=True).corpus_score(hyps, [tok_refs]).score
    assert got["bleu_tok"] == pytest.approx(tok, abs=1e-12)
    assert "|case:lc|" in got["signature_tok"] and "|tok:none|" in got["signature_tok"]


@pytest.mark.slow
def test_a_default_multi30k_run_is_scored_case_insensitively(shared_data, tmp_path):
    """Multi30k's default tokenizers lower-case: test.json's BLEU is sacrebleu's lowercase=True on
    the original references (signature case:lc), and each epoch records both BLEUs."""
    from sacrebleu.metrics import BLEU

    from embtool.training import train

    cfg = TrainConfig(
        task="multi30k", data_dir=str(shared_data / "multi30k"), d_model=16, heads=2, layers=1, ff=32,
        epochs=1, batch_size=32, max_train_examples=200, max_eval_examples=20, device="cpu",
        threads=1, cache=False, out=str(tmp_path / "run"),
    )  # fmt: skip
    result = train(cfg)
    assert "|case:lc|" in result.test["signature"]
    hyps = (tmp_path / "run" / "hyps.test.txt").read_text(encoding="utf-8").splitlines()
    with gzip.open(shared_data / "multi30k" / "test_2016_flickr.en.gz", "rt", encoding="utf-8") as f:
        refs = f.read().splitlines()[:20]
    assert any(r != r.lower() for r in refs)  # the references as written: cased
    assert result.test["bleu"] == pytest.approx(BLEU(lowercase=True).corpus_score(hyps, [refs]).score)
    assert {"val_bleu", "val_bleu_tok"} <= set(result.metrics[0])


# ----------------------------------------------------------------------------- a split's loss and hypotheses
# The evaluation as it was before issue 20 (a read of the device every batch, model.loss's nonzero,
# decode batches of min(batch, 256) // beam sentences), kept to check that the results are the same.


def _toy(kind: str, n: int = 37):
    """A random one-layer model, ``n`` random examples of 1–9 tokens and a config of 4-example batches."""
    torch.manual_seed(0)
    rng = random.Random(0)
    classes = kind == "classification"
    cfg = ModelConfig(
        kind=kind, src_vocab=20, tgt_vocab=0 if classes else 20, d_model=16, n_heads=2, n_layers=1, d_ff=32
    )
    model = build(cfg).eval()

    def seq() -> list[int]:
        return [rng.randrange(4, 20) for _ in range(rng.randint(1, 9))]

    examples = [(seq() + [EOS_ID], rng.randrange(2) if classes else seq()) for _ in range(n)]
    return model, examples, TrainConfig(task="sst2" if classes else "multi30k", batch_size=4)


@torch.no_grad()
def _eval_loss_before(model, examples, kind, cfg):
    total, units, preds = 0.0, 0, [0] * len(examples)
    for index in kind_of(kind).batches(examples, cfg, None):
        batch = kind_of(kind).collate(examples, index)
        if kind == "translation":
            loss, n = model.loss(batch.src, batch.tgt_in, batch.tgt_out)
        else:
            logits = model(batch.src)
            loss, n = F.cross_entropy(logits.float(), batch.labels, reduction="sum"), len(index)
            for i, p in zip(index, logits.argmax(-1).tolist(), strict=True):
                preds[i] = p
        total += float(loss)
        units += n
    return total / units, preds


def _translate_before(model, examples, cfg, beam):
    """Sorted batches of min(batch, 256) // beam, each decoded to its longest source's budget."""
    out = [[] for _ in examples]
    for index in make_batches([len(s) for s, _ in examples], max(1, min(cfg.batch_size, 256) // beam)):
        src = kind_of("translation").collate(examples, index).src
        for i, h in zip(
            index, decode(model, src, max_output_len(src.shape[1], model.cfg.max_len), beam), strict=True
        ):
            out[i] = h
    return out


def _alone(model, examples, beam):
    """Each sentence decoded by itself, to its own budget (no padding, no other sentence)."""
    budget = [max_output_len(len(s), model.cfg.max_len) for s, _ in examples]
    return [decode(model, torch.tensor([s]), n, beam)[0] for (s, _), n in zip(examples, budget, strict=True)]


@pytest.mark.parametrize("kind", ["translation", "classification"])
def test_eval_loss_is_as_before(kind):
    model, examples, cfg = _toy(kind)
    loss, preds = evaluation.eval_loss(model, examples, kind_of(kind), cfg, Engine.plain(torch.device("cpu")))
    want_loss, want_preds = _eval_loss_before(model, examples, kind, cfg)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    assert preds == want_preds


@pytest.mark.parametrize(
    ("kind", "reads"), [("translation", ["item"]), ("classification", ["item", "to_cpu"])]
)
def test_eval_loss_reads_the_device_once_not_each_batch(kind, reads):
    """On meta (a GPU's stand-in) every host read is counted: the loss once, the classes once, for
    10 batches; model.loss's nonzero() (a sync each batch) would be refused."""
    model, examples, cfg = _toy(kind)
    meta = torch.device("meta")
    with meta_only() as mode:
        evaluation.eval_loss(model.to(meta), examples, kind_of(kind), cfg, Engine.plain(meta))
    assert len(kind_of(kind).batches(examples, cfg, None)) == 10
    assert mode.reads == reads


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_eval_loss_syncs_once_on_cuda():
    model, examples, cfg = _toy("translation")
    cuda = torch.device("cuda")
    model.to(cuda)
    torch.cuda.synchronize()
    with pytest.warns(UserWarning, match="synchroniz") as caught:
        torch.cuda.set_sync_debug_mode("warn")
        try:
            evaluation.eval_loss(model, examples, kind_of("translation"), cfg, Engine.plain(cuda))
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert len([w for w in caught if "synchroniz" in str(w.message)]) == 1  # float(total), at the end


# (lengths, beam, batch size, device type) → the decode batches' sizes
DECODE_CASES = {
    "cpu, greedy: the batch size": ([10] * 300, 1, 128, "cpu", [128, 128, 44]),
    "cpu, beam 4: a quarter": ([10] * 100, 4, 128, "cpu", [32, 32, 32, 4]),
    "cpu, at most 256 a batch": ([10] * 600, 1, 4096, "cpu", [256, 256, 88]),
    "cuda, beam 4: 4096 source tokens": ([10] * 5000, 4, 128, "cuda", [409] * 12 + [92]),
    "cuda, greedy: 16384 source tokens": ([20] * 2000, 1, 128, "cuda", [819, 819, 362]),
    "cuda, short: 2048 beams": ([2] * 1200, 4, 128, "cuda", [512, 512, 176]),
    "cuda, longer than the budget": ([5000, 3], 4, 128, "cuda", [1, 1]),
    "cuda, mixed: cut where the longest × count × beam passes 16384": (
        [30, 2, 17, 9, 9, 25, 1] * 100,
        4,
        128,
        "cuda",
        [400, 163, 136, 1],
    ),
}


@pytest.mark.parametrize(
    ("lengths", "beam", "batch_size", "device", "sizes"), DECODE_CASES.values(), ids=DECODE_CASES
)
def test_decode_batches(lengths, beam, batch_size, device, sizes):
    batches = evaluation.decode_batches(lengths, beam, batch_size, device)
    assert [len(b) for b in batches] == sizes
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))


def test_decode_batches_sort_by_length_within_the_budget():
    lengths = [30, 2, 17, 9, 9, 25, 1] * 100
    batches = evaluation.decode_batches(lengths, 4, 128, "cuda")
    assert [lengths[i] for b in batches for i in b] == sorted(lengths)
    assert all(max(lengths[i] for i in b) * len(b) * 4 <= evaluation.DECODE_TOKENS for b in batches)


def _batched_as(monkeypatch, device: str) -> None:
    """translate's decode batches as on ``device`` (a pure function of lengths, beam and device type)."""
    real = evaluation.decode_batches
    monkeypatch.setattr(
        evaluation, "decode_batches", lambda lengths, b, size, _: real(lengths, b, size, device)
    )


@pytest.mark.parametrize("beam", [1, 3])
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_a_hypothesis_is_its_sentence_decoded_alone(monkeypatch, beam, device):
    """In CPU batches and in a GPU's larger ones (here on the CPU), each sentence is decoded to its
    own budget, as if alone: an untrained model rarely says <eos>, so most run to their budget."""
    model, examples, cfg = _toy("translation", n=25)
    _batched_as(monkeypatch, device)
    got = evaluation.translate(model, examples, cfg, Engine.plain(torch.device("cpu")), beam)
    assert got == _alone(model, examples, beam)
    assert sum(len(h) == int(1.5 * len(s)) + 10 for h, (s, _) in zip(got, examples, strict=True)) > 15


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_a_trained_model_translates_as_before(reverse_run, monkeypatch, device):
    from embtool.training.loop import build as build_run
    from embtool.training.runfolder import RunFolder, resume_config
    from embtool.training.spec import RunSpec

    copy = reverse_run.parent / f"as-before-{device}"
    if not copy.exists():
        shutil.copytree(reverse_run, copy)  # build rewrites config.json: leave the shared run alone
    run = build_run(RunSpec.of(resume_config(copy)), RunFolder(copy), torch.device("cpu"), lambda e, i: None)
    examples = run.prep.val
    _batched_as(monkeypatch, device)
    for beam in (1, 4):
        got = evaluation.translate(run.model, examples, run.cfg, Engine.plain(run.engine.device), beam)
        assert got == _translate_before(run.model.eval(), examples, run.cfg, beam)


# ----------------------------------------------------------------------------- shared over the ranks


def _evaluate_as_rank(rank: int, size: int, init: str, out: str) -> None:
    """One rank of a gloo group: the toy splits' losses, classes and hypotheses, written as JSON."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=size)
    try:
        print(json.dumps(_evaluations(World(size, rank))), file=open(f"{out}/{rank}.json", "w"))
    finally:
        dist.destroy_process_group()


def _evaluations(world: World | None) -> dict:
    cpu, found = torch.device("cpu"), {}
    for kind in ("translation", "classification"):
        model, examples, cfg = _toy(kind)
        found[kind] = evaluation.eval_loss(model, examples, kind_of(kind), cfg, Engine.plain(cpu, world))
    model, examples, cfg = _toy("translation")
    for beam in (1, 3):
        found[f"beam {beam}"] = evaluation.translate(model, examples, cfg, Engine.plain(cpu, world), beam)
    return found


def test_ranks_share_the_evaluation_and_each_gets_the_whole(tmp_path):
    """Two gloo ranks each take every other batch (10 loss batches; 10 and 37 decode batches): every
    rank gets the one-process losses, classes and hypotheses."""
    import torch.multiprocessing as mp

    mp.spawn(_evaluate_as_rank, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    want = json.loads(json.dumps(_evaluations(None)))  # tuples as lists, as read back
    for rank in range(2):
        got = json.loads((tmp_path / f"{rank}.json").read_text())
        for kind in ("translation", "classification"):
            assert got[kind][0] == pytest.approx(want[kind][0], rel=1e-6)  # float32 sums, other orders
            assert got[kind][1] == want[kind][1]
        assert got["beam 1"] == want["beam 1"] and got["beam 3"] == want["beam 3"]
