"""Shared tiny fixtures. No network: the hub is never reached from tests."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# the tokenized-data cache of the runs the tests start: a folder of this session, not the user's
os.environ.setdefault("EMBTOOL_CACHE", tempfile.mkdtemp(prefix="embtool-test-cache-"))

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@dataclass
class Result:
    code: int
    stdout: bytes
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8")


def run_embtool(
    *args: str, stdin: bytes | None = None, cwd: Path | None = None, timeout: float = 300
) -> Result:
    """Run `python -m embtool ARGS` in a real subprocess (pipes, exit codes, stderr as a user sees them)."""
    proc = subprocess.run(
        [sys.executable, "-m", "embtool", *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        cwd=cwd,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


@pytest.fixture
def embtool():
    """The CLI as a function: ``embtool("stats", path)`` → Result(code, stdout bytes, stderr text)."""
    return run_embtool


@pytest.fixture
def vocab_file(tmp_path: Path) -> Path:
    path = tmp_path / "vocab.txt"
    path.write_text(
        "#embtool tokenizer=whitespace\n<pad>\t0\nthe\t10\ncat\t4\nsat\t3\nmat\t2\n", encoding="utf-8"
    )
    return path


@pytest.fixture
def make_table():
    """Build an EmbeddingTable from an (N, D) numpy array or torch tensor; tokens default to t0…t{N-1}."""
    from embtool.tables.table import EmbeddingTable

    def make(vectors, tokens=None, **kw):
        tokens = tokens if tokens is not None else [f"t{i}" for i in range(vectors.shape[0])]
        return EmbeddingTable(vectors, tokens, **kw)

    return make


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not beside the project")
    return SHARED_DATA


def run_in_process(*args: str, stdin: bytes | None = None) -> Result:
    """Run the CLI in this process (fast): same exit codes and stderr lines as a subprocess."""
    import contextlib
    import io

    from embtool.cli import main

    out, err = io.BytesIO(), io.StringIO()
    fake_in = io.TextIOWrapper(io.BytesIO(stdin or b""), encoding="utf-8")
    fake_out = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    old_in, old_out = sys.stdin, sys.stdout
    sys.stdin, sys.stdout = fake_in, fake_out
    try:
        with contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        sys.stdin, sys.stdout = old_in, old_out
    fake_out.flush()
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli():
    """Like ``embtool`` but in-process: for checks that need no real pipe."""
    return run_in_process


# ----------------------------------------------------------------------------- the trainer

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


def tiny_cfg(files: dict[str, str], out: Path, **kw):
    """A one-layer D=32 run on the reverse task, on one CPU thread (kw override any setting)."""
    from embtool.training import TrainConfig

    base = dict(
        task="files",
        src=files["train_src"],
        tgt=files["train_tgt"],
        val_src=files["val_src"],
        val_tgt=files["val_tgt"],
        tokenizer="whitespace",
        d_model=32,
        heads=4,
        layers=1,
        dropout=0.0,
        attn_dropout=0.0,  # train's default is 0.1 (issue 22.1); the tests' runs drop nothing
        epochs=6,
        batch_size=64,
        lr=3e-3,
        out=str(out),
        device="cpu",
        threads=1,
    )
    base.update(kw)
    return TrainConfig(**base)


def metrics(run: Path) -> list[dict]:
    """metrics.jsonl of a run folder."""
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def scores(run: Path) -> list[tuple]:
    """The metrics that must repeat exactly (not seconds or tokens/s)."""
    return [
        (m["epoch"], m["train_loss"], m["val_loss"], m.get("val_bleu"), m.get("val_acc"))
        for m in metrics(run)
    ]


def train_dir(cfg, progress=None) -> Path:
    """Train and return the run folder (``train`` returns a RunResult)."""
    from embtool.training import train

    return train(cfg, progress).path


@pytest.fixture(scope="session")
def reverse_run(tmp_path_factory) -> Path:
    """A finished 6-epoch run of the reverse task, shared by the tests that read one."""
    folder = tmp_path_factory.mktemp("reverse")
    files = reverse_task(folder)
    return train_dir(tiny_cfg(files, folder / "run"))


# ----------------------------------------------------------------------------- run folders for reports


def _h(op: str, **args) -> dict:
    return {"op": op, "args": args, "embtool": "0.1.0"}


GLOVE = {
    "path": "glove.safetensors",
    "sha256": "a" * 64,
    "source": "glove:g.txt",
    "tokenizer": "spacy:de",
    "history": [_h("extract")],
    "n": 10,
    "dim": 4,
}


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
        "embtool": "0.1.0",
        "task": task,
        "kind": kind,
        "seed": seed,
        "model": {"d_model": d_model, "layers": 3},
        "train": {
            "epochs": len(curve),
            "lr": 2e-4,
            "freeze_emb": False,
            "posenc": True,
            "seed": seed,
            **(train or {}),
        },
        "tables": tables if tables is not None else {"src": None, "tgt": None},
        "vocab": {"src_size": vocab[0], "tgt_size": vocab[1], "src_missing": 0, "tgt_missing": 0},
        "device": "cpu",
    }
    (folder / "config.json").write_text(json.dumps(config))
    key = "val_bleu" if kind == "translation" else "val_acc"
    lines = []
    for i, v in enumerate(curve, start=1):
        row = {
            "epoch": i,
            "train_loss": 5.0 / i,
            "val_loss": 4.0 / i,
            key: v,
            "seconds": 1.0,
            "tokens_per_s": 9.0,
        }
        if mismatched is not None:
            row["val_acc_mismatched"] = v
        lines.append(json.dumps(row))
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if result is not None:
        if kind == "translation":
            test = {
                "bleu": result,
                "signature": "BLEU|nrefs:1",
                "best_epoch": best_epoch,
                "split": "test",
                "beam": 1,
            }
        else:
            test = {
                "selection": "highest validation accuracy (§5)",
                "best_val_acc": result,
                "best_epoch": best_epoch,
            }
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
        write_run(
            runs / f"sst2/s{seed}", task="sst2", seed=seed, result=acc, curve=[70.0, 80.0], best_epoch=seed
        )
    return runs


# ----------------------------------------------------------------------------- process-wide torch state


def matmul_state() -> dict:
    """torch's float32 matmul settings, as each of its getters reports them (legacy and per backend)."""
    import torch

    def read(get):
        try:
            return get()
        except RuntimeError:  # torch refuses legacy reads after per-backend writes
            return "raises"

    return {
        "precision": read(torch.get_float32_matmul_precision),
        "allow_tf32": read(lambda: torch.backends.cuda.matmul.allow_tf32),
        "cuda": read(lambda: getattr(torch.backends.cuda.matmul, "fp32_precision", None)),
        "mkldnn": read(
            lambda: getattr(getattr(torch.backends.mkldnn, "matmul", None), "fp32_precision", None)
        ),
    }


def reverse_words_toy(folder: Path, n_pairs: int, shift: float = 0.0) -> Path:
    """A generated reverse-the-words task (src.txt/tgt.txt, ``n_pairs`` pairs of 2–5 of 12 words) and
    a wide 'pretrained' table for its words (w2v.safetensors: N(shift, 0.4²), D=16), in ``folder``."""
    import torch

    from embtool.tables.table import EmbeddingTable, save

    rng = random.Random(0)
    words = [f"w{i}" for i in range(12)]
    src = [" ".join(rng.choice(words) for _ in range(rng.randint(2, 5))) for _ in range(n_pairs)]
    (folder / "src.txt").write_text("\n".join(src) + "\n")
    (folder / "tgt.txt").write_text("\n".join(" ".join(reversed(s.split())) for s in src) + "\n")
    g = torch.Generator().manual_seed(0)
    vectors = torch.randn(len(words), 16, generator=g) * 0.4 + shift
    save(
        EmbeddingTable(vectors, words, source="word2vec:toy.bin", tokenizer="whitespace"),
        folder / "w2v.safetensors",
    )
    return folder


# ----------------------------------------------------------------------------- the meta device


def meta_only():
    """A dispatch mode that holds code to the ``meta`` device, a GPU's stand-in on a CPU machine: an
    op that takes a meta tensor must take and make only meta tensors (a CPU tensor beside meta ones
    is the device mismatch a GPU run would meet first); copies to and from the host are the
    exceptions, and host-only work (collating a batch) is left alone. A read to the host
    (``float(t)``, ``bool(t)``, ``.item()``, ``.tolist()``, ``.cpu()``) cannot wait for data on meta:
    each is counted in ``reads`` and answered with zeros (False, 0); ``nonzero`` (a sync of its own:
    its size is the data's) is counted and refused.

        with meta_only() as mode:
            model(src_on_meta)
        assert mode.reads == []
    """
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    aten = torch.ops.aten
    copies = (aten._to_copy.default, aten.copy_.default)

    def devices(*trees) -> set[str]:
        return {t.device.type for t in tree_flatten(trees)[0] if isinstance(t, torch.Tensor)}

    class MetaOnly(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.reads: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            seen = devices(args, kwargs)
            if func is aten._local_scalar_dense.default and seen == {"meta"}:  # float(t), bool(t), t.item()
                self.reads.append("item")
                return False if args[0].dtype == torch.bool else 0
            if (
                func is aten._to_copy.default
                and seen == {"meta"}
                and kwargs.get("device") == torch.device("cpu")
            ):
                self.reads.append("to_cpu")  # t.tolist(), t.cpu()
                return torch.zeros(args[0].shape, dtype=kwargs.get("dtype") or args[0].dtype)
            if func in (aten.nonzero.default, aten.nonzero_static.default) and seen == {"meta"}:
                self.reads.append("nonzero")
                raise AssertionError("nonzero on the device: its output's size waits for the data")
            out = func(*args, **kwargs)
            seen |= devices(out)
            if "meta" in seen and len(seen) > 1 and func not in copies:
                raise AssertionError(f"{func} mixes the meta device with {sorted(seen - {'meta'})}")
            return out

    return MetaOnly()


# ----------------------------------------------------------------------------- examples/*.sh

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``examples/SCRIPT`` with this Python's embtool first on PATH, one thread (``env`` overrides);
    asserts it exits 0."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    proc = subprocess.run(
        ["bash", str(EXAMPLES / script)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": path, "THREADS": "1", **env},
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def toy_iwslt(data: Path) -> tuple[list[str], list[str]]:
    """A tiny parallel German-English task in ``data/iwslt2017`` (200/10/10 pairs of six words a side);
    returns the two word lists."""
    folder = data / "iwslt2017"
    folder.mkdir(parents=True)
    rng = random.Random(0)
    de, en = ["der", "die", "katze", "hund", "saß", "auf"], ["the", "cat", "dog", "sat", "on", "mat"]
    for split, n in (("train", 200), ("val", 10), ("test", 10)):
        idx = [[rng.randrange(6) for _ in range(rng.randint(2, 5))] for _ in range(n)]
        (folder / f"{split}.de").write_text("".join(" ".join(de[i] for i in s) + "\n" for s in idx))
        (folder / f"{split}.en").write_text("".join(" ".join(en[i] for i in s) + "\n" for s in idx))
    return de, en
