"""Where train's task text comes from: a local folder in ../shared/data's layouts, or the hub.

Local layouts: translation ``{split}.{de,en}[.gz]`` (line i of one translates line i of the
other); classification ``{split}.tsv[.gz]`` with a header row (``sentence<TAB>label``; MNLI
``premise<TAB>hypothesis<TAB>label``). Without a folder, Hugging Face ``datasets`` loads the task.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embtool.errors import BadInput, WorkFailure

if TYPE_CHECKING:
    from embtool.training.data import Split, TaskData

# split names tried in order, per role
_TRAIN = ("train",)
_VAL = ("val", "valid", "validation", "dev")
_TEST = {
    "multi30k": ("test_2016_flickr", "test"),
    "iwslt2017": ("test", "tst2017", "tst2010"),
}
_MNLI_VAL = ("dev_matched", "validation_matched", "val_matched", "dev", "val")
_MNLI_MISMATCHED = ("dev_mismatched", "validation_mismatched", "val_mismatched")
_LABELS_MNLI = {"entailment": 0, "neutral": 1, "contradiction": 2}

# Hugging Face repositories that load without scripts (datasets ≥ 3)
_HUB = {
    "multi30k": ("bentrevett/multi30k", None),
    "iwslt2017": ("IWSLT/iwslt2017", "iwslt2017-de-en"),
    "sst2": ("nyu-mll/glue", "sst2"),
    "mnli": ("nyu-mll/glue", "mnli"),
}


def read_lines(path: str | os.PathLike[str]) -> list[str]:
    """UTF-8 lines (``.gz`` decompressed), without line ends."""
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"{p}: no such file")
    data = p.read_bytes()
    if p.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise BadInput(f"{p}: not a readable gzip file ({e})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise BadInput(f"{p}:{line}: not valid UTF-8") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def read_pairs(src: str | os.PathLike[str], tgt: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    s, t = read_lines(src), read_lines(tgt)
    if len(s) != len(t):
        raise BadInput(
            f"{src} has {len(s)} lines but {tgt} has {len(t)}; line i of one must translate line i of the other"
        )
    return s, t


def _find(folder: Path, stems: tuple[str, ...], ext: str) -> Path | None:
    for stem in stems:
        for name in (f"{stem}.{ext}", f"{stem}.{ext}.gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def load(task: str, data_dir: str | None) -> TaskData:
    """train/val/test of a task from ``data_dir`` (the folder itself or its ``<task>/``), else the hub."""
    if data_dir is not None:
        folder = Path(data_dir)
        if (folder / task).is_dir():
            folder = folder / task
        if not folder.is_dir():
            raise BadInput(f"--data-dir {data_dir}: no such folder")
        return _local(task, folder)
    return _hub(task)


def _local(task: str, folder: Path) -> TaskData:
    from embtool.training.data import Split, TaskData

    def need(stems: tuple[str, ...], ext: str, role: str) -> Path:
        p = _find(folder, stems, ext)
        if p is None:
            raise BadInput(
                f"{folder}: no {role} split ({' or '.join(f'{s}.{ext}[.gz]' for s in stems)}); "
                "point --data-dir at a folder in ../shared/data/README.md's layout"
            )
        return p

    if task in ("multi30k", "iwslt2017"):
        splits = []
        for stems, role in ((_TRAIN, "train"), (_VAL, "validation"), (_TEST[task], "test")):
            s, t = read_pairs(need(stems, "de", role), need(stems, "en", role))
            splits.append(Split(s, t))
        test_name = need(_TEST[task], "de", "test").name.split(".")[0]
        return TaskData(splits[0], splits[1], splits[2], test_split_name=test_name)
    if task == "sst2":
        train = _tsv_split(need(_TRAIN, "tsv", "train"), task)
        val = _tsv_split(need(_VAL, "tsv", "validation"), task)
        return TaskData(train, val, val, test_split_name="dev")
    train = _tsv_split(need(_TRAIN, "tsv", "train"), task)
    val = _tsv_split(need(_MNLI_VAL, "tsv", "matched validation"), task)
    mism = _tsv_split(need(_MNLI_MISMATCHED, "tsv", "mismatched validation"), task)
    return TaskData(train, val, val, extra_val={"mismatched": mism}, test_split_name="dev_matched")


def _label(value: str, task: str, where: str) -> int:
    if task == "mnli" and value in _LABELS_MNLI:
        return _LABELS_MNLI[value]
    try:
        return int(value)
    except ValueError:
        raise BadInput(f"{where}: label {value!r} is not an integer class") from None


def _tsv_split(path: Path, task: str) -> Split:
    from embtool.training.data import Split

    lines = read_lines(path)
    if not lines:
        raise BadInput(f"{path}: empty file; expected a header row")
    header = lines[0].split("\t")
    cols = ("premise", "hypothesis", "label") if task == "mnli" else ("sentence", "label")
    try:
        idx = [header.index(c) for c in cols]
    except ValueError:
        raise BadInput(f"{path}: header {header} must name the columns {list(cols)}") from None
    src, src2, labels = [], [], []
    for n, line in enumerate(lines[1:], start=2):
        row = line.split("\t")
        if len(row) < len(header):
            raise BadInput(f"{path}:{n}: {len(row)} columns, header has {len(header)}")
        src.append(row[idx[0]])
        if task == "mnli":
            src2.append(row[idx[1]])
        labels.append(_label(row[idx[-1]], task, f"{path}:{n}"))
    return Split(src, labels=labels, src2=src2 if task == "mnli" else None)


def _hub(task: str) -> TaskData:
    from embtool.training.data import Split, TaskData

    repo, config = _HUB[task]
    try:
        import datasets

        ds: Any = datasets.load_dataset(repo, config)
    except Exception as e:  # noqa: BLE001 - datasets raises many kinds; all mean "not reachable"
        raise WorkFailure(
            f"could not load {task} from the Hugging Face hub ({repo}: {str(e).splitlines()[0] if str(e) else type(e).__name__}); "
            f"point --data-dir (or EMBTOOL_DATA_DIR) at a local copy"
        ) from None
    if task == "multi30k":
        sp = [Split(list(ds[n]["de"]), list(ds[n]["en"])) for n in ("train", "validation", "test")]
        return TaskData(sp[0], sp[1], sp[2], test_split_name="test")
    if task == "iwslt2017":
        sp = [
            Split([x["de"] for x in ds[n]["translation"]], [x["en"] for x in ds[n]["translation"]])
            for n in ("train", "validation", "test")
        ]
        return TaskData(sp[0], sp[1], sp[2], test_split_name="test")
    if task == "sst2":
        tr, va = ds["train"], ds["validation"]
        train = Split(list(tr["sentence"]), labels=list(tr["label"]))
        val = Split(list(va["sentence"]), labels=list(va["label"]))
        return TaskData(train, val, val, test_split_name="validation")
    parts = {
        n: Split(list(ds[n]["premise"]), labels=list(ds[n]["label"]), src2=list(ds[n]["hypothesis"]))
        for n in ("train", "validation_matched", "validation_mismatched")
    }
    return TaskData(
        parts["train"], parts["validation_matched"], parts["validation_matched"],
        extra_val={"mismatched": parts["validation_mismatched"]}, test_split_name="validation_matched",
    )
