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

from embtool.core.errors import BadInput, WorkFailure
from embtool.tasks.local import find_file, read_lines, read_parallel, read_tsv
from embtool.tasks.registry import TASKS, Task, get_task, task_title

ENV_DATA_DIR = "EMBTOOL_DATA_DIR"
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

    def head(self, n: int) -> TranslationData:
        """The first ``n`` pairs (all of them when ``n`` is 0 or more than there are)."""
        if n <= 0 or n >= len(self):
            return self
        return TranslationData(self.src[:n], self.tgt[:n], self.src_lang, self.tgt_lang, self.origin)


@dataclass
class ClassificationData:
    """Examples of one or two text fields (MNLI: premise, hypothesis) and their class ids."""

    texts: list[tuple[str, ...]]
    labels: list[int]
    label_names: tuple[str, ...] = field(default_factory=tuple)
    origin: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int) -> ClassificationData:
        """The first ``n`` examples (all of them when ``n`` is 0 or more than there are)."""
        if n <= 0 or n >= len(self):
            return self
        return ClassificationData(self.texts[:n], self.labels[:n], self.label_names, self.origin)


SplitData = Union[TranslationData, ClassificationData]  # one split as loaded


def task_folder(info: Task, data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The local folder for a task: ``data_dir`` (or $EMBTOOL_DATA_DIR) itself or its ``<task>/``."""
    given = data_dir if data_dir is not None else os.environ.get(ENV_DATA_DIR) or None
    if given is None:
        return None
    root = Path(given)
    if not root.is_dir():
        how = "--data-dir" if data_dir is not None else f"${ENV_DATA_DIR}"
        raise BadInput(f"{how} {root}: no such folder")
    return root / info.name if (root / info.name).is_dir() else root


def load_task(name: str, split: str = "train", data_dir: str | os.PathLike[str] | None = None) -> SplitData:
    """One split of a task, from ``data_dir``/$EMBTOOL_DATA_DIR when set, else from the hub."""
    info = get_task(name)
    if info.local_only:
        raise BadInput(f"task {name} reads local files only (train --src/--tgt); it has no named splits")
    if split not in info.splits:
        raise BadInput(f"task {name} has no split {split!r}; valid choices: {', '.join(info.splits)}")
    folder = task_folder(info, data_dir)
    if folder is not None:
        return _load_local(info, split, folder)
    return _load_hub(info, split)


def task_texts(data: SplitData, side: str = "src") -> Iterator[str]:
    """The sentences a vocabulary is counted on: one side of pairs (or both: one joint vocabulary,
    counts summed), every field of examples."""
    if isinstance(data, TranslationData):
        if side not in ("src", "tgt", "both"):
            raise BadInput(f"--side {side!r}: valid choices: src, tgt, both")
        if side in ("src", "both"):
            yield from data.src
        if side in ("tgt", "both"):
            yield from data.tgt
    else:
        for example in data.texts:
            yield from example


# ----------------------------------------------------------------------------- a run's text


@dataclass
class TaskText:
    """The splits one run trains, validates and tests on (the registry's ``val``, ``test``, ``extra_val``),
    each as ``load_task`` gives it."""

    train: SplitData
    val: SplitData
    test: SplitData
    extra_val: dict[str, SplitData] = field(default_factory=dict)  # MNLI: {"mismatched": …}
    test_name: str = "test"  # recorded in test.json

    def cut(self, max_train: int = 0, max_eval: int = 0) -> TaskText:
        """The first ``max_train`` training and ``max_eval`` evaluation examples (0: all)."""
        return TaskText(
            self.train.head(max_train),
            self.val.head(max_eval),
            self.test.head(max_eval),
            {k: v.head(max_eval) for k, v in self.extra_val.items()},
            self.test_name,
        )


def load_splits(name: str, data_dir: str | os.PathLike[str] | None = None) -> TaskText:
    """The training, validation and test text of a registered task, as its record names them."""
    task = get_task(name)
    loaded: dict[str, SplitData] = {}

    def get(split: str) -> SplitData:
        if split not in loaded:
            loaded[split] = load_task(name, split, data_dir)
        return loaded[split]

    extra = {label: get(split) for label, split in task.extra_val.items()}
    return TaskText(get("train"), get(task.val), get(task.test), extra, task.test_name)


def load_files(
    src: str,
    tgt: str,
    val_src: str | None = None,
    val_tgt: str | None = None,
    test_src: str | None = None,
    test_tgt: str | None = None,
) -> TaskText:
    """The ``files`` task: parallel sentence files; validation defaults to the last 5% of the
    training pairs (at least one), test to the validation pairs."""
    s, t = read_parallel(src, tgt)
    if len(s) < 2:
        raise BadInput(f"{src}: need at least 2 sentence pairs to train and validate")
    if val_src or val_tgt:
        if not (val_src and val_tgt):
            raise BadInput("give both --val-src and --val-tgt")
        val = TranslationData(*read_parallel(val_src, val_tgt), origin=val_src)
        train = TranslationData(s, t, origin=src)
    else:
        k = max(1, len(s) // 20)
        train, val = TranslationData(s[:-k], t[:-k], origin=src), TranslationData(s[-k:], t[-k:], origin=src)
    if test_src or test_tgt:
        if not (test_src and test_tgt):
            raise BadInput("give both --test-src and --test-tgt")
        return TaskText(
            train,
            val,
            TranslationData(*read_parallel(test_src, test_tgt), origin=test_src),
            test_name=Path(test_src).name,
        )
    return TaskText(train, val, val, test_name="val")


# ----------------------------------------------------------------------------- local folders


def _load_local(info: Task, split: str, folder: Path) -> SplitData:
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
        s, t = read_parallel(src, tgt)
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


def _load_hub(info: Task, split: str) -> SplitData:
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


def _hub_dataset(info: Task, hub_split: str) -> Any:
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
    "SplitData",
    "Task",
    "TaskText",
    "TranslationData",
    "get_task",
    "load_files",
    "load_splits",
    "load_task",
    "read_lines",
    "read_parallel",
    "task_folder",
    "task_texts",
    "task_title",
]
