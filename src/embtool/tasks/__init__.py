"""The paper's tasks: German→English translation (multi30k, iwslt2017) and classification (sst2, mnli).

Each task loads through Hugging Face ``datasets`` (repositories that load without a loading
script, which current ``datasets`` no longer runs), or from a local folder given with
``data_dir`` / ``EMBTOOL_DATA_DIR`` in the layouts of ``../shared/data/README.md``:
``{split}.{de,en}[.gz]`` for translation, ``{split}.tsv[.gz]`` with a header for classification.
A data dir may be the task's folder itself or a folder that holds ``<task>/``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from embtool.errors import BadInput, WorkFailure
from embtool.tasks.local import find_file, read_lines, read_pairs, read_tsv

ENV_DATA_DIR = "EMBTOOL_DATA_DIR"


@dataclass(frozen=True)
class Split:
    hub: str  # the split's name in the Hugging Face dataset
    files: tuple[str, ...]  # file stems tried, in order, in a local folder


@dataclass(frozen=True)
class TaskInfo:
    """Where a task's data lives and how it is shaped."""

    name: str
    kind: str  # "translation" or "classification"
    hub_id: str  # Hugging Face dataset repository
    splits: dict[str, Split]  # embtool's split name → hub split and local file stems
    min_freq: int  # the paper's vocabulary cut-off (Appendix A.2)
    hub_config: str | None = None
    hub_revision: str | None = None
    hub_data_dir: str | None = None
    src_lang: str = "de"
    tgt_lang: str = "en"
    fields: tuple[tuple[str, ...], ...] = ()  # classification: the text columns, each with aliases
    labels: tuple[str, ...] = ()  # classification: label names, index = class id


_TRANSLATION_SPLITS = {
    "train": Split("train", ("train",)),
    "val": Split("validation", ("val", "valid", "validation", "dev")),
    "test": Split("test", ("test", "test_2016_flickr")),
}

TASKS: dict[str, TaskInfo] = {
    "multi30k": TaskInfo(
        "multi30k",
        "translation",
        "bentrevett/multi30k",
        # the paper's Multi30k test is test_2016_flickr (the hub copy calls it "test")
        {**_TRANSLATION_SPLITS, "test": Split("test", ("test_2016_flickr", "test"))},
        min_freq=2,
    ),
    "iwslt2017": TaskInfo(
        "iwslt2017",
        "translation",
        "IWSLT/iwslt2017",
        _TRANSLATION_SPLITS,
        min_freq=5,
        # the repository's loading script no longer runs; its parquet conversion does
        hub_revision="refs/convert/parquet",
        hub_data_dir="iwslt2017-de-en",
    ),
    "sst2": TaskInfo(
        "sst2",
        "classification",
        "nyu-mll/glue",
        {"train": Split("train", ("train",)), "val": Split("validation", ("dev", "val", "validation"))},
        min_freq=2,
        hub_config="sst2",
        fields=(("sentence",),),
        labels=("negative", "positive"),
    ),
    "mnli": TaskInfo(
        "mnli",
        "classification",
        "nyu-mll/glue",
        {
            "train": Split("train", ("train",)),
            "val_matched": Split("validation_matched", ("dev_matched", "val_matched", "validation_matched")),
            "val_mismatched": Split(
                "validation_mismatched", ("dev_mismatched", "val_mismatched", "validation_mismatched")
            ),
        },
        min_freq=2,
        hub_config="mnli",
        fields=(("premise", "sentence1"), ("hypothesis", "sentence2")),
        labels=("entailment", "neutral", "contradiction"),  # GLUE's class ids
    ),
}
_LABEL_COLUMNS = ("label", "gold_label")


@dataclass
class TranslationData:
    """Parallel sentences: ``src[i]`` translates to ``tgt[i]``."""

    src: list[str]
    tgt: list[str]
    src_lang: str = "de"
    tgt_lang: str = "en"
    origin: str = ""

    def __len__(self) -> int:
        return len(self.src)


@dataclass
class ClassificationData:
    """Examples of one or two text fields (MNLI: premise, hypothesis) and their class ids."""

    texts: list[tuple[str, ...]]
    labels: list[int]
    label_names: tuple[str, ...] = field(default_factory=tuple)
    origin: str = ""

    def __len__(self) -> int:
        return len(self.labels)


TaskData = Union[TranslationData, ClassificationData]


def get_task(name: str) -> TaskInfo:
    try:
        return TASKS[name]
    except KeyError:
        raise BadInput(
            f"unknown task {name!r}; valid choices: {', '.join(TASKS)} (or give local files)"
        ) from None


def task_folder(info: TaskInfo, data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The local folder for a task: ``data_dir`` (or $EMBTOOL_DATA_DIR) itself or its ``<task>/``."""
    given = data_dir if data_dir is not None else os.environ.get(ENV_DATA_DIR) or None
    if given is None:
        return None
    root = Path(given)
    if not root.is_dir():
        how = "--data-dir" if data_dir is not None else f"${ENV_DATA_DIR}"
        raise BadInput(f"{how} {root}: no such folder")
    return root / info.name if (root / info.name).is_dir() else root


def load_task(name: str, split: str = "train", data_dir: str | os.PathLike[str] | None = None) -> TaskData:
    """One split of a task, from ``data_dir``/$EMBTOOL_DATA_DIR when set, else from the hub."""
    info = get_task(name)
    if split not in info.splits:
        raise BadInput(f"task {name} has no split {split!r}; valid choices: {', '.join(info.splits)}")
    folder = task_folder(info, data_dir)
    if folder is not None:
        return _load_local(info, split, folder)
    return _load_hub(info, split)


def task_texts(data: TaskData, side: str = "src") -> Iterator[str]:
    """The sentences a vocabulary is counted on: one side of pairs, every field of examples."""
    if isinstance(data, TranslationData):
        if side not in ("src", "tgt"):
            raise BadInput(f"--side {side!r}: valid choices: src, tgt")
        yield from data.src if side == "src" else data.tgt
    else:
        for example in data.texts:
            yield from example


# ----------------------------------------------------------------------------- local folders


def _load_local(info: TaskInfo, split: str, folder: Path) -> TaskData:
    stems = info.splits[split].files
    if info.kind == "translation":
        src = find_file(folder, stems, info.src_lang)
        tgt = find_file(folder, stems, info.tgt_lang)
        if src is None or tgt is None:
            lang = info.src_lang if src is None else info.tgt_lang
            raise BadInput(
                f"{folder}: no {split} split for {info.name}: expected {stems[0]}.{lang} or "
                f"{stems[0]}.{lang}.gz (tried {', '.join(stems)}); point --data-dir at a folder in that layout"
            )
        s, t = read_pairs(src, tgt)
        return TranslationData(s, t, info.src_lang, info.tgt_lang, origin=str(src.parent))
    path = find_file(folder, stems, "tsv")
    if path is None:
        raise BadInput(
            f"{folder}: no {split} split for {info.name}: expected {stems[0]}.tsv or {stems[0]}.tsv.gz "
            f"(tried {', '.join(stems)}); point --data-dir at a folder in that layout"
        )
    header, rows = read_tsv(path)
    cols = [_column(header, names, path) for names in (*info.fields, _LABEL_COLUMNS)]
    texts: list[tuple[str, ...]] = []
    labels: list[int] = []
    for lineno, row in enumerate(rows, start=2):
        if len(row) <= max(cols):
            raise BadInput(f"{path}:{lineno}: {len(row)} columns, the header has {len(header)}")
        label = _label(row[cols[-1]], info.labels, f"{path}:{lineno}")
        if label is None:
            continue  # e.g. MNLI's "-": no gold label; GLUE drops these too
        texts.append(tuple(row[c] for c in cols[:-1]))
        labels.append(label)
    return ClassificationData(texts, labels, info.labels, origin=str(path))


def _column(header: list[str], names: tuple[str, ...], path: Path) -> int:
    for name in names:
        if name in header:
            return header.index(name)
    raise BadInput(f"{path}:1: the header has no column {' or '.join(names)} (found: {', '.join(header)})")


def _label(text: str, names: tuple[str, ...], where: str) -> int | None:
    if text in names:
        return names.index(text)
    if text in ("-", ""):
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < len(names):
        raise BadInput(f"{where}: label {text!r} is not one of 0…{len(names) - 1} or {', '.join(names)}")
    return value


# ----------------------------------------------------------------------------- the hub


def _load_hub(info: TaskInfo, split: str) -> TaskData:
    hub_split = info.splits[split].hub
    try:
        ds = _hub_dataset(info, hub_split)
    except Exception as e:  # noqa: BLE001 - datasets raises many kinds when offline or unreachable
        layout = (
            f"{{train,val,test}}.{{{info.src_lang},{info.tgt_lang}}}[.gz]"
            if info.kind == "translation"
            else "{split}.tsv[.gz] with a header row"
        )
        text = " ".join(str(e).split())[:200]
        raise WorkFailure(
            f"could not load {info.name} ({info.hub_id}) from the Hugging Face hub: {type(e).__name__}: "
            f"{text}; point at a local copy with --data-dir DIR or {ENV_DATA_DIR}=DIR (files {layout})"
        ) from None
    origin = f"hf:{info.hub_id}" + (f"/{info.hub_config}" if info.hub_config else "") + f"[{hub_split}]"
    if info.kind == "translation":
        cols = ds.column_names
        if "translation" in cols:  # IWSLT: {"translation": {"de": …, "en": …}}
            pairs = ds["translation"]
            src = [p[info.src_lang] for p in pairs]
            tgt = [p[info.tgt_lang] for p in pairs]
        else:  # multi30k: columns "de", "en"
            src, tgt = list(ds[info.src_lang]), list(ds[info.tgt_lang])
        return TranslationData(src, tgt, info.src_lang, info.tgt_lang, origin=origin)
    names = [next(n for n in alias if n in ds.column_names) for alias in info.fields]
    columns = [list(ds[n]) for n in names]
    labels = list(ds["label"])
    keep = [i for i, y in enumerate(labels) if y >= 0]  # unlabeled test rows carry -1
    return ClassificationData(
        [tuple(col[i] for col in columns) for i in keep], [labels[i] for i in keep], info.labels, origin
    )


def _hub_dataset(info: TaskInfo, hub_split: str) -> Any:
    from datasets import load_dataset

    kwargs: dict[str, Any] = {"split": hub_split}
    if info.hub_revision:
        kwargs["revision"] = info.hub_revision
    if info.hub_data_dir:
        kwargs["data_dir"] = info.hub_data_dir
    if info.hub_config:
        return load_dataset(info.hub_id, info.hub_config, **kwargs)
    return load_dataset(info.hub_id, **kwargs)


__all__ = [
    "TASKS",
    "ClassificationData",
    "TaskData",
    "TaskInfo",
    "TranslationData",
    "get_task",
    "load_task",
    "read_lines",
    "read_pairs",
    "task_folder",
    "task_texts",
]
