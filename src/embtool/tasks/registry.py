"""The task registry: one record per task, the only place a task's facts are written.

A record says where the task's data lives (Hugging Face hub id, revision, split names, local file
stems), what it is (translation or classification, languages, text fields, labels), how the paper
ran it (Appendix A.2 and Table 5: vocabulary cut-off, epochs, batch size, learning rate, seeds, one
column per embedding family) and how reports title it. `vocab`, `train`, `experiment` and `report`
read it; a new task is one record here plus, if its data has a new shape, a loader.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from embtool.core.errors import BadInput

TRANSLATION, CLASSIFICATION = "translation", "classification"
FAMILIES = ("glove", "bert", "mbert", "t5", "mt5")  # the embedding families of Table 5's columns


@dataclass(frozen=True)
class SplitSource:
    """Where one split lives: its name on the hub, and the file stems tried in a local folder."""

    hub: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class PaperColumn:
    """One column of the paper's Table 5: a task trained from one embedding family."""

    family: str  # one of FAMILIES
    dim: int  # D of that family's tables (A.2: 300, 512, 768)
    params: str  # the parameter count Table 5 reports
    epochs: int
    batch_size: int
    vocab: str = ""  # Table 5's vocabulary sizes (encoder/decoder), as printed
    min_per_epoch: float = 0.0  # Table 5's minutes per epoch (the authors' GPU)

    @property
    def heads(self) -> int:
        """A.2: 8 heads, 10 for GloVe (D = 300)."""
        return 10 if self.dim == 300 else 8


@dataclass(frozen=True)
class Task:
    """Everything embtool knows about one task."""

    name: str
    title: str  # as the paper's tables name it
    kind: str  # translation | classification
    splits: dict[str, SplitSource]  # embtool's split name → where it lives; empty: local files only
    min_freq: int  # the paper's vocabulary cut-off (A.2)
    epochs: int  # defaults when no Table 5 column is chosen (the task's most common column)
    batch_size: int
    lr: float  # A.2: 2e-4 translation, 1e-4 classification
    seeds: int = 4  # A.2: seeds per cell (4 translation, 3 MNLI, 5 SST-2)
    val: str = "val"  # the split validated on each epoch
    test: str = "test"  # the split the best model is tested on (classification: its validation split)
    test_name: str = "test"  # the test split's name as recorded in test.json
    extra_val: dict[str, str] = field(default_factory=dict)  # more validation splits: {"mismatched": split}
    hub_id: str | None = None  # Hugging Face dataset repository
    hub_config: str | None = None
    hub_revision: str | None = None
    hub_data_dir: str | None = None
    src_lang: str = "de"  # translation: source and target languages; classification: the text's (src)
    tgt_lang: str = "en"
    fields: tuple[tuple[str, ...], ...] = ()  # classification: the text columns, each with aliases
    labels: tuple[str, ...] = ()  # classification: label names, index = class id
    table5: tuple[PaperColumn, ...] = ()
    lower: bool = False  # the paper's vocabularies are lower-cased (Multi30k: N = 7.8k de / 5,893 en)
    train_size: str = ""  # Table 5's "Train size"

    @property
    def n_classes(self) -> int:
        return len(self.labels)

    @property
    def local_only(self) -> bool:
        return self.hub_id is None

    def tokenizer(self, side: str = "src") -> str:
        """The tokenizer spec a side is split with when no table names one (spaCy, the paper's;
        lower-cased where the paper's vocabulary sizes say so)."""
        lang = self.src_lang if side == "src" or self.kind == CLASSIFICATION else self.tgt_lang
        return f"spacy:{lang}" + ("+lower" if self.lower else "")

    def column(self, family: str) -> PaperColumn:
        """Table 5's column of this task for an embedding family."""
        for col in self.table5:
            if col.family == family:
                return col
        have = ", ".join(c.family for c in self.table5) or "none"
        raise BadInput(f"task {self.name} has no Table 5 column for {family!r}; valid choices: {have}")


_TRANSLATION_SPLITS = {
    "train": SplitSource("train", ("train",)),
    "val": SplitSource("validation", ("val", "valid", "validation", "dev")),
    "test": SplitSource("test", ("test", "test_2016_flickr")),
}

TASKS: dict[str, Task] = {
    "multi30k": Task(
        "multi30k",
        "Multi30k",
        TRANSLATION,
        # the paper's Multi30k test is test_2016_flickr (the hub copy calls it "test")
        {**_TRANSLATION_SPLITS, "test": SplitSource("test", ("test_2016_flickr", "test"))},
        min_freq=2,
        epochs=20,
        batch_size=128,  # Table 5: 64 with GloVe, 128 with mBERT, 96 with mT5
        lr=2e-4,
        test_name="test_2016_flickr",
        hub_id="bentrevett/multi30k",
        lower=True,
        train_size="29k",
        table5=(
            PaperColumn("glove", 300, "11M", 20, 64, "7.8k/5.9k", 1),
            PaperColumn("mbert", 768, "39M", 20, 128, "6.3k/5.5k", 0.7),
            PaperColumn("mt5", 768, "39M", 20, 96, "6.5k/5.5k", 0.7),
        ),
    ),
    "iwslt2017": Task(
        "iwslt2017",
        "IWSLT2017",
        TRANSLATION,
        _TRANSLATION_SPLITS,
        min_freq=5,
        epochs=20,
        batch_size=128,
        lr=2e-4,
        hub_id="IWSLT/iwslt2017",
        # the repository's loading script no longer runs; its parquet conversion does
        hub_revision="refs/convert/parquet",
        hub_data_dir="iwslt2017-de-en",
        train_size="206k",
        table5=(
            PaperColumn("glove", 300, "25M", 20, 128, "27k/20k", 3.3),
            PaperColumn("mbert", 768, "62M", 20, 128, "15k/16k", 7.8),
            PaperColumn("mt5", 768, "67M", 20, 112, "18k/18k", 9.5),
        ),
    ),
    "sst2": Task(
        "sst2",
        "SST2",
        CLASSIFICATION,
        {
            "train": SplitSource("train", ("train",)),
            "val": SplitSource("validation", ("dev", "val", "validation")),
        },
        min_freq=2,
        epochs=5,
        batch_size=128,
        lr=1e-4,
        seeds=5,
        test="val",  # GLUE's test labels are hidden: the paper reports the dev split
        test_name="dev",
        hub_id="nyu-mll/glue",
        hub_config="sst2",
        src_lang="en",
        fields=(("sentence",),),
        labels=("negative", "positive"),
        train_size="67k",
        table5=(
            PaperColumn("glove", 300, "6M", 5, 128, "13k", 0.5),
            PaperColumn("bert", 768, "18M", 5, 128, "11k", 1),
            PaperColumn("t5", 512, "9M", 5, 128, "8.8k", 0.8),
        ),
    ),
    "mnli": Task(
        "mnli",
        "MNLI",
        CLASSIFICATION,
        {
            "train": SplitSource("train", ("train",)),
            "val_matched": SplitSource(
                "validation_matched", ("dev_matched", "val_matched", "validation_matched")
            ),
            "val_mismatched": SplitSource(
                "validation_mismatched", ("dev_mismatched", "val_mismatched", "validation_mismatched")
            ),
        },
        min_freq=2,
        epochs=10,  # Table 5: 9 with GloVe
        batch_size=128,
        lr=1e-4,
        seeds=3,
        val="val_matched",
        test="val_matched",
        test_name="dev_matched",
        extra_val={"mismatched": "val_mismatched"},
        hub_id="nyu-mll/glue",
        hub_config="mnli",
        src_lang="en",
        fields=(("premise", "sentence1"), ("hypothesis", "sentence2")),
        labels=("entailment", "neutral", "contradiction"),  # GLUE's class ids
        train_size="393k",
        table5=(
            PaperColumn("glove", 300, "26M", 9, 128, "79k", 3.5),
            PaperColumn("bert", 768, "29M", 10, 128, "26k", 11.2),
            PaperColumn("t5", 512, "17M", 10, 128, "23k", 7.2),
        ),
    ),
    # local parallel files (train's --src/--tgt, --val-*, --test-*); the loader is tasks.files
    "files": Task("files", "Files", TRANSLATION, {}, min_freq=2, epochs=20, batch_size=128, lr=2e-4),
}


def get_task(name: str) -> Task:
    """The record of a task, or a BadInput that lists the valid names."""
    try:
        return TASKS[name]
    except KeyError:
        raise BadInput(f"unknown task {name!r}; valid choices: {', '.join(TASKS)}") from None


def task_title(name: str) -> str:
    """The name reports print for a task (its own name when it is not registered)."""
    task = TASKS.get(name)
    return task.title if task else name
