"""The tokenized-data cache: a second run tokenizes nothing, a changed spec or text misses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import reverse_task, tiny_cfg
from embtool.training import tokcache


@pytest.fixture
def counted(monkeypatch, tmp_path):
    """Count the tokenizer's calls (lines tokenized) of ``setup.prepare``; a cache of this test."""
    from embtool.training import setup

    monkeypatch.setenv("EMBTOOL_CACHE", str(tmp_path / "cache"))
    calls: list[tuple[str, int]] = []
    real = setup.tokenize

    def counting(spec, lines):
        calls.append((spec, len(lines)))
        return real(spec, lines)

    monkeypatch.setattr(setup, "tokenize", counting)
    return calls


def _prepare(cfg):
    from embtool.tasks import load_files
    from embtool.training.setup import prepare

    data = load_files(cfg.src, cfg.tgt, cfg.val_src, cfg.val_tgt, cfg.test_src, cfg.test_tgt)
    return prepare(cfg.resolved(), data)


def test_second_prepare_tokenizes_nothing_and_gives_the_same_data(tmp_path, counted):
    files = reverse_task(tmp_path, n_train=50, n_val=10)
    cfg = tiny_cfg(files, tmp_path / "run")
    first = _prepare(cfg)
    assert [n for _, n in counted] == [50, 50, 10, 10]  # train src/tgt, val src/tgt
    counted.clear()
    second = _prepare(cfg)
    assert counted == []
    assert second.train == first.train and second.val == first.val and second.src.vocab == first.src.vocab
    entries = list((tmp_path / "cache" / "tokens").glob("*.json"))
    assert len(entries) == 4 and all(json.loads(p.read_text())["key"] for p in entries)
    assert not list((tmp_path / "cache" / "tokens").glob("*.tmp*"))  # written atomically


def test_a_changed_spec_or_text_misses_and_no_cache_neither_reads_nor_writes(tmp_path, counted):
    import dataclasses

    files = reverse_task(tmp_path, n_train=50, n_val=10)
    cfg = tiny_cfg(files, tmp_path / "run")
    _prepare(cfg)
    counted.clear()
    _prepare(dataclasses.replace(cfg, tokenizer="whitespace+lower"))
    assert {s for s, _ in counted} == {"whitespace+lower"} and len(counted) == 4
    counted.clear()
    Path(files["val_src"]).write_text("1 2 3\n" * 10, encoding="utf-8")  # edited text
    _prepare(cfg)
    assert [n for _, n in counted] == [10]  # val src only
    counted.clear()
    before = sorted((tmp_path / "cache" / "tokens").iterdir())
    _prepare(dataclasses.replace(cfg, cache=False))
    assert len(counted) == 4 and sorted((tmp_path / "cache" / "tokens").iterdir()) == before


def test_a_broken_entry_is_tokenized_anew(tmp_path, monkeypatch, fresh_process):
    monkeypatch.setenv("EMBTOOL_CACHE", str(tmp_path))
    calls = []

    def tok(spec, lines):
        calls.append(1)
        return [line.split() for line in lines]

    lines = ["a b", "c"]
    assert tokcache.cached(tok, "whitespace", lines, "files", "train.src") == [["a", "b"], ["c"]]
    key = tokcache.entry_key("files", "train.src", "whitespace", lines)
    tokcache.entry_path("files", "train.src", "whitespace", key).write_text("{not json")
    with pytest.warns(tokcache.CacheWarning, match="is damaged"):
        assert tokcache.cached(tok, "whitespace", lines, "files", "train.src") == [["a", "b"], ["c"]]
    assert tokcache.cached(tok, "whitespace", lines, "files", "train.src") == [["a", "b"], ["c"]]
    assert len(calls) == 2


def test_cache_dir_default(monkeypatch, tmp_path):
    monkeypatch.delenv("EMBTOOL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert tokcache.cache_dir() == tmp_path / "embtool"
    assert {"embtool", "spacy", "tokenizers", "transformers"} <= set(tokcache.package_versions())


# ----------------------------------------------------------------------------- a broken cache


@pytest.fixture
def fresh_process(monkeypatch):
    """The cache's per-process state as a new process has it: nothing warned, the cache in use."""
    monkeypatch.setattr(tokcache, "_warned", False)
    monkeypatch.setattr(tokcache, "_off", False)


def _entries(cache: Path) -> list[Path]:
    return sorted((cache / "tokens").glob("*.json"))


def _no_space(*args, **kwargs):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device")


def _refuses(path, text):
    from embtool.core.errors import BadInput

    raise BadInput(f"{path}: is a folder; give a file name")


@pytest.mark.parametrize(
    "breakage",
    ["entries-are-folders", "tokens-is-a-file", "disk-full", "disk-full-in-the-writer", "writer-refuses"],
)
def test_a_broken_cache_warns_once_and_gives_the_no_cache_result(
    tmp_path, counted, fresh_process, monkeypatch, breakage
):
    """Issue: a full disk (exit 1) or a folder as an entry (exit 2) stopped the run; the docs promise
    a broken cache costs only the tokenizing."""
    import dataclasses
    import warnings

    from embtool.core import atomic

    files = reverse_task(tmp_path, n_train=50, n_val=10)
    cfg = tiny_cfg(files, tmp_path / "run")
    cache = tmp_path / "cache"
    expected = _prepare(dataclasses.replace(cfg, cache=False))
    if breakage == "entries-are-folders":
        _prepare(cfg)
        for entry in _entries(cache):
            entry.unlink()
            entry.mkdir()
    elif breakage == "tokens-is-a-file":
        cache.mkdir()
        (cache / "tokens").write_text("")
    elif breakage == "disk-full":
        monkeypatch.setattr(atomic, "write_text", _no_space)
    elif breakage == "disk-full-in-the-writer":  # the atomic writer's WorkFailure (exit 1 before)
        monkeypatch.setattr(atomic, "_copy_mode", _no_space)
    else:
        monkeypatch.setattr(atomic, "write_text", _refuses)
    counted.clear()
    with pytest.warns(tokcache.CacheWarning) as heard:
        got = _prepare(cfg)
    assert got.train == expected.train and got.val == expected.val and got.src.vocab == expected.src.vocab
    assert got.tgt.vocab == expected.tgt.vocab
    assert len(heard) == 1  # once per process, though every split met the broken cache
    message = str(heard[0].message)
    assert str(cache) in message and "results are unaffected" in message and "\n" not in message
    assert [n for _, n in counted] == [50, 50, 10, 10]  # every split tokenized, none lost
    assert not list(cache.rglob("*.tmp"))
    with warnings.catch_warnings():  # the same process: the cache stays off, no second warning
        warnings.simplefilter("error")
        assert _prepare(cfg).train == expected.train


@pytest.mark.parametrize(
    "damaged",
    [b'{"key": "', b"\xff\xfe not UTF-8", b"[1, 2]", b'{"key": "KEY", "tokens": ["ab", "c"]}',
     b'{"key": "KEY", "tokens": [["a", "b"]]}'],
    ids=["cut-json", "not-utf8", "not-an-object", "strings-not-lists", "too-few-lines"],
)  # fmt: skip
def test_a_damaged_entry_warns_and_is_replaced(tmp_path, monkeypatch, fresh_process, damaged):
    monkeypatch.setenv("EMBTOOL_CACHE", str(tmp_path))
    lines = ["a b", "c"]
    calls = []

    def tok(spec, ls):
        calls.append(1)
        return [line.split() for line in ls]

    tokcache.cached(tok, "whitespace", lines, "files", "train.src")
    (entry,) = _entries(tmp_path)
    entry.write_bytes(damaged.replace(b"KEY", json.loads(entry.read_text())["key"].encode()))
    with pytest.warns(
        tokcache.CacheWarning,
        match=r"is damaged .*; it is tokenized anew and replaced, results are unaffected",
    ):
        assert tokcache.cached(tok, "whitespace", lines, "files", "train.src") == [["a", "b"], ["c"]]
    assert json.loads(entry.read_text())["tokens"] == [["a", "b"], ["c"]]  # replaced: read by the next run
    assert tokcache.cached(tok, "whitespace", lines, "files", "train.src") == [["a", "b"], ["c"]]
    assert len(calls) == 2


@pytest.mark.slow
def test_train_with_folders_for_entries_exits_0_with_one_warning_line(tmp_path):
    """Through the CLI: the run ends as with a good cache, and stderr has one line about it."""
    import os
    import subprocess
    import sys

    files = reverse_task(tmp_path, n_train=60, n_val=8)
    args = ["files", "--src", files["train_src"], "--tgt", files["train_tgt"], "--val-src", files["val_src"],
            "--val-tgt", files["val_tgt"], "--tokenizer", "whitespace", "--d-model", "8", "--heads", "2",
            "--layers", "1", "--epochs", "1", "--device", "cpu", "--threads", "1", "--json"]  # fmt: skip
    env = {**os.environ, "EMBTOOL_CACHE": str(tmp_path / "cache")}

    def train(out: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "embtool", "train", *args, "-o", str(tmp_path / out)]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)

    good = train("good")
    assert good.returncode == 0 and "CacheWarning" not in good.stderr, good.stderr
    for entry in _entries(tmp_path / "cache"):
        entry.unlink()
        entry.mkdir()
    broken = train("broken")
    assert broken.returncode == 0, broken.stderr
    said = [line for line in broken.stderr.splitlines() if "cache" in line]
    assert len(said) == 1 and str(tmp_path / "cache") in said[0] and "results are unaffected" in said[0]
    assert json.loads(broken.stdout)["bleu"] == json.loads(good.stdout)["bleu"]  # the same run
