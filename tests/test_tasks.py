"""Task loaders: local folders in ../shared/data's layouts, plain files, and the hub's offline error."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from embtool.core.errors import BadInput, WorkFailure
from embtool.tasks import ClassificationData, TranslationData, load_task, task_texts


def _write(path: Path, lines: list[str], gz: bool = False) -> Path:
    data = ("\n".join(lines) + "\n").encode("utf-8")
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize("split,rows", [("train", 29000), ("val", 1014), ("test", 1000)])
def test_multi30k_from_shared_data(shared_data, split, rows) -> None:
    for data_dir in (shared_data, shared_data / "multi30k"):  # the parent or the task folder
        data = load_task("multi30k", split, data_dir)
        assert isinstance(data, TranslationData) and len(data) == rows
        assert (data.src_lang, data.tgt_lang) == ("de", "en")
    assert data.src[0] and data.tgt[0]


def test_sst2_from_shared_data(shared_data) -> None:
    data = load_task("sst2", "val", shared_data)
    assert isinstance(data, ClassificationData) and len(data) == 872
    assert set(data.labels) == {0, 1} and len(data.texts[0]) == 1


def test_env_data_dir(shared_data, monkeypatch) -> None:
    monkeypatch.setenv("EMBTOOL_DATA_DIR", str(shared_data))
    assert len(load_task("multi30k", "val")) == 1014


@pytest.mark.parametrize("gz", [False, True])
def test_iwslt_local_layout(tmp_path, gz) -> None:
    _write(tmp_path / "train.de", ["Hallo Welt", "Danke"], gz)
    _write(tmp_path / "train.en", ["Hello world", "Thanks"], gz)
    data = load_task("iwslt2017", "train", tmp_path)
    assert isinstance(data, TranslationData)
    assert data.src == ["Hallo Welt", "Danke"] and list(task_texts(data, "tgt")) == ["Hello world", "Thanks"]


def test_mnli_local_glue_columns(tmp_path) -> None:
    header = "index\tgenre\tsentence1\tsentence2\tlabel1\tgold_label"
    rows = ["0\tfic\tA man \"sleeps\".\tA person rests.\tentailment\tentailment",
            "1\tfic\tIt rains.\tIt is dry.\tcontradiction\tcontradiction",
            "2\tfic\tHm.\tOk.\t-\t-"]  # fmt: skip
    _write(tmp_path / "dev_matched.tsv", [header, *rows])
    data = load_task("mnli", "val_matched", tmp_path)
    assert isinstance(data, ClassificationData)
    assert data.texts == [('A man "sleeps".', "A person rests."), ("It rains.", "It is dry.")]
    assert data.labels == [0, 2]
    assert list(task_texts(data)) == ['A man "sleeps".', "A person rests.", "It rains.", "It is dry."]


@pytest.mark.parametrize(
    "task,split,files,message",
    [
        (
            "multi30k",
            "val",
            {"train.de": ["a"], "train.en": ["b"]},
            "no val split for multi30k: expected val.de",
        ),
        ("multi30k", "train", {"train.de": ["a", "b"], "train.en": ["c"]}, "has 2 lines but"),
        ("multi30k", "dev", {}, "has no split 'dev'; valid choices: train, val, test"),
        ("sst2", "train", {"train.tsv": ["text\tlabel", "x\t1"]}, "no column sentence"),
        ("sst2", "train", {"train.tsv": ["sentence\tlabel", "x\t7"]}, "label '7' is not one of"),
        ("nope", "train", {}, "unknown task 'nope'; valid choices: multi30k, iwslt2017, sst2, mnli"),
    ],
)
def test_local_errors(tmp_path, task, split, files, message) -> None:
    for name, lines in files.items():
        _write(tmp_path / name, lines)
    with pytest.raises(BadInput, match=message.replace("(", r"\(")):
        load_task(task, split, tmp_path)


def test_load_splits_follows_the_registry(shared_data) -> None:
    from embtool.tasks import load_splits

    text = load_splits("sst2", shared_data)
    assert text.test is text.val and text.test_name == "dev" and text.extra_val == {}
    assert text.train.labels is not None and len(text.train) == len(text.train.labels)
    cut = text.cut(max_train=10, max_eval=5)
    assert (len(cut.train), len(cut.val), len(cut.test)) == (10, 5, 5)


def test_load_splits_mnli_has_its_mismatched_validation(tmp_path) -> None:
    from embtool.tasks import load_splits

    for name in ("train", "dev_matched", "dev_mismatched"):
        _write(tmp_path / f"{name}.tsv", ["premise\thypothesis\tlabel", f"a {name}\tb\tneutral"])
    text = load_splits("mnli", tmp_path)
    assert text.test_name == "dev_matched" and text.val.texts == [("a dev_matched", "b")]
    assert text.extra_val["mismatched"].texts == [("a dev_mismatched", "b")]
    assert text.val.labels == [1] and text.cut(max_eval=1).val is text.val  # one data model: load_task's


def test_load_files_holds_out_the_last_pairs_or_takes_given_splits(tmp_path) -> None:
    from embtool.tasks import load_files

    src = _write(tmp_path / "t.de", [f"s{i}" for i in range(40)])
    tgt = _write(tmp_path / "t.en", [f"t{i}" for i in range(40)])
    text = load_files(str(src), str(tgt))
    assert text.val.src == ["s38", "s39"] and len(text.train) == 38 and text.test is text.val
    text = load_files(str(src), str(tgt), test_src=str(src), test_tgt=str(tgt))
    assert text.test_name == "t.de" and len(text.test) == 40
    with pytest.raises(BadInput, match="give both --val-src and --val-tgt"):
        load_files(str(src), str(tgt), val_src=str(src))
    with pytest.raises(BadInput, match="need at least 2 sentence pairs"):
        load_files(str(_write(tmp_path / "one.de", ["x"])), str(_write(tmp_path / "one.en", ["y"])))


def test_files_task_has_no_named_splits() -> None:
    with pytest.raises(BadInput, match="task files reads local files only"):
        load_task("files", "train")


def test_unreachable_hub_says_how_to_point_at_a_local_copy(monkeypatch) -> None:
    monkeypatch.delenv("EMBTOOL_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(WorkFailure, match="--data-dir DIR or EMBTOOL_DATA_DIR=DIR"):
        load_task("multi30k", "train")


@pytest.mark.parametrize(
    "task,split,columns,expect",
    [
        ("multi30k", "test", {"en": ["A dog."], "de": ["Ein Hund."]}, (["Ein Hund."], ["A dog."])),
        ("iwslt2017", "val", {"translation": [{"de": "Danke.", "en": "Thanks."}]}, (["Danke."], ["Thanks."])),
        ("sst2", "train", {"sentence": ["good", "bad", "?"], "label": [1, 0, -1], "idx": [0, 1, 2]},
         ([("good",), ("bad",)], [1, 0])),
        ("mnli", "val_mismatched", {"premise": ["P"], "hypothesis": ["H"], "label": [1], "idx": [0]},
         ([("P", "H")], [1])),
    ],
)  # fmt: skip
def test_hub_rows_are_shaped_like_local_ones(monkeypatch, task, split, columns, expect) -> None:
    """The hub path without the hub: a datasets.Dataset with the repository's columns."""
    import datasets

    import embtool.tasks as tasks

    seen = {}

    def fake(info, hub_split):
        seen["split"] = hub_split
        return datasets.Dataset.from_dict(columns)

    monkeypatch.delenv("EMBTOOL_DATA_DIR", raising=False)
    monkeypatch.setattr(tasks, "_hub_dataset", fake)
    data = load_task(task, split)
    got = (data.src, data.tgt) if isinstance(data, TranslationData) else (data.texts, data.labels)
    assert got == expect
    assert seen["split"] == tasks.TASKS[task].splits[split].hub
    assert data.origin.startswith(f"hf:{tasks.TASKS[task].hub_id}")
