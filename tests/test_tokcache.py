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
    return prepare(cfg, data)


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


def test_a_broken_entry_is_tokenized_anew(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBTOOL_CACHE", str(tmp_path))
    calls = []

    def tok(spec, lines):
        calls.append(1)
        return [line.split() for line in lines]

    lines = ["a b", "c"]
    assert tokcache.cached(tok, "whitespace", lines, "files", "train.src") == [["a", "b"], ["c"]]
    key = tokcache.entry_key("files", "train.src", "whitespace", lines)
    tokcache.entry_path("files", "train.src", "whitespace", key).write_text("{not json")
    assert tokcache.cached(tok, "whitespace", lines, "files", "train.src") == [["a", "b"], ["c"]]
    assert tokcache.cached(tok, "whitespace", lines, "files", "train.src") == [["a", "b"], ["c"]]
    assert len(calls) == 2


def test_cache_dir_default(monkeypatch, tmp_path):
    monkeypatch.delenv("EMBTOOL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert tokcache.cache_dir() == tmp_path / "embtool"
    assert {"embtool", "spacy", "tokenizers", "transformers"} <= set(tokcache.package_versions())
