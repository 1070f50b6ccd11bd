"""The run folder (DESIGN §4): its file names, and reading and writing what `train` leaves there.

```
runs/<name>/
  config.json        every setting (the TrainConfig, the ModelConfig), versions, input tables
  vocab.json         the vocabularies, in row order
  metrics.jsonl      one line per epoch
  best.safetensors   the model with the lowest validation loss
  last.safetensors + state.pt   what --resume needs (state.pt is the commit point)
  test.json          the result; a run is complete iff it exists
  hyps.test.txt      detokenized test translations (translation tasks)
```

test.json's ``status``, when it has one, says the result is no ordinary one: ``"diverged"`` (a step's
loss was not finite or exploded; no result) or ``"stalled"`` (finite, but it learned nothing:
``stalled`` holds the rule's reading, ``STALL_RULE`` the rule).

No torch here: `report` and `experiment --dry-run` read run folders without it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embtool._version import __version__
from embtool.core import atomic, jsonout
from embtool.core.errors import BadInput
from embtool.training.tracking import TENSORBOARD_DIR, TRACKING, WANDB_DIR

if TYPE_CHECKING:
    from embtool.training.config import TrainConfig
    from embtool.training.setup import Prepared
    from embtool.training.spec import RunSpec

CONFIG = "config.json"
VOCAB = "vocab.json"
METRICS = "metrics.jsonl"
BEST = "best.safetensors"
LAST = "last.safetensors"
STATE = "state.pt"
TEST = "test.json"
HYPS = "hyps.test.txt"

LOCK = ".lock"  # held (flock) while a process trains in the folder
RUN_FILES = (CONFIG, VOCAB, METRICS, BEST, LAST, STATE, TEST, HYPS, LOCK)

DONE, RESUME, TODO = "done", "resume", "todo"
# the figures of a metrics.jsonl line (and val_acc_<split>)
_FIGURES = ("epoch", "train_loss", "val_loss", "val_bleu", "val_acc", "seconds", "tokens_per_s")
# config.json's layout: ``config_version`` says which; a folder written before it had one is 1
CONFIG_VERSION = 2

# A stalled run (Liu et al.'s deep Post-LN without warm-up): every loss finite, nothing learned.
STALL_LOSS_DROP = 0.02  # a run that ends less than 2% below its first validation loss made no progress
# BLEU or accuracy points above what a model that learned nothing scores: an untrained model scores
# BLEU ≈ 1 on a 10-word toy task (chance n-grams), and the loss rule above is the main test
STALL_MARGIN = 2.0
STALL_RULE = (
    f"a run of 2 or more epochs whose validation loss ended above the first epoch's or less than "
    f"{STALL_LOSS_DROP:.0%} below it, and whose validation metric never rose more than {STALL_MARGIN:g} "
    "points above what a model that learned nothing scores (BLEU 0; accuracy: always answering the "
    "validation set's most common label)"
)


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from a file; ValueError when it is not one (OSError when unreadable)."""
    value = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


@dataclass
class RunResult:
    """What a finished run gives back: its folder, test.json and the metrics of every epoch."""

    path: Path
    test: dict[str, Any]
    metrics: list[dict[str, Any]] = field(default_factory=list)

    @property
    def best_epoch(self) -> int:
        return int(self.test["best_epoch"])

    def summary(self) -> str:
        """One line: test BLEU (translation) or the best validation accuracy (classification)."""
        t = self.test
        if t.get("status") == "diverged":
            return f"diverged at epoch {t['epoch']}, step {t['step']} → {self.path}"
        if "bleu" in t:
            text = f"test BLEU {t['bleu']:.2f} (best epoch {t['best_epoch']}, {t['split']})"
        else:
            text = f"best val acc {t['best_val_acc']:.2f}"
            if "best_val_acc_mismatched" in t:
                text += f" / mismatched {t['best_val_acc_mismatched']:.2f}"
            text += f" (epoch {t['best_epoch']})"
        if t.get("status") == "stalled":
            text += f"; stalled, it learned nothing ({t.get('stalled')})"
        return f"{text} → {self.path}"


def stalled(metrics: Sequence[dict[str, Any]], labels: Sequence[int] | None = None) -> str | None:
    """Why a run whose metrics.jsonl lines are ``metrics`` stalled (``STALL_RULE``), or None when it
    learned (or cannot be judged: fewer than 2 epochs, a loss that is not finite). ``labels``: the
    validation labels of a classification run (its floor: the most common one's share); None for
    translation (the floor: BLEU 0)."""
    rows = [m for m in metrics if "status" not in m]  # a diverged line is no epoch's figures
    key = "val_bleu" if labels is None else "val_acc"
    if len(rows) < 2 or not all(_finite(m.get("val_loss")) and _finite(m.get(key)) for m in rows):
        return None
    first, last = float(rows[0]["val_loss"]), float(rows[-1]["val_loss"])
    floor = 100.0 * max(Counter(labels).values()) / len(labels) if labels else 0.0
    best = max(float(m[key]) for m in rows)
    if last < first * (1 - STALL_LOSS_DROP) or best > floor + STALL_MARGIN:
        return None
    floor_is = f"the most common label's {floor:.1f}%" if labels else "0"
    return (
        f"validation loss {last:.3g} at epoch {rows[-1]['epoch']}, {first:.3g} at epoch {rows[0]['epoch']}; "
        f"{key} at most {best:.1f} (a model that learned nothing: {floor_is})"
    )


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


class RunFolder:
    """One run folder: paths by role, and its files read and written (atomically)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def state(self) -> str:
        """ "done" (test.json, and epochs in metrics.jsonl), "resume" (config.json, not done) or "todo"
        (neither): a test.json beside an empty metrics.jsonl is no finished run, as ``report`` says."""
        metrics = self.file(METRICS)
        if self.file(TEST).is_file() and metrics.is_file() and metrics.read_bytes().strip():
            return DONE
        if self.file(CONFIG).is_file():
            return RESUME
        return TODO

    # -- reading

    def read_config(self) -> dict[str, Any]:
        """config.json; ValueError/OSError when it is not a readable JSON object."""
        return read_json_object(self.file(CONFIG))

    def read_metrics(self) -> list[dict[str, Any]]:
        """metrics.jsonl's lines ([] when absent); ValueError naming the first bad line."""
        path = self.file(METRICS)
        if not path.is_file():
            return []
        rows: list[dict[str, Any]] = []
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise ValueError(f"{METRICS} line {lineno} is not valid JSON") from None
            if not isinstance(row, dict) or "epoch" not in row:
                raise ValueError(f"{METRICS} line {lineno} has no 'epoch'")
            for key, value in row.items():  # a figure is a number, or null (a NaN loss is written as null)
                if not (key in _FIGURES or key.startswith("val_acc_")):
                    continue
                number = isinstance(value, (int, float)) and not isinstance(value, bool)
                if not number and (value is not None or key == "epoch"):
                    raise ValueError(f"{METRICS} line {lineno}: {key} {json.dumps(value)} is not a number")
            rows.append(row)
        return rows

    def read_test(self) -> dict[str, Any]:
        """test.json; ValueError/OSError when it is not a readable JSON object."""
        return read_json_object(self.file(TEST))

    def end_status(self) -> str | None:
        """test.json's ``status`` ("diverged", "stalled"); None for an ordinary result, or none readable."""
        try:
            status = self.read_test().get("status")
        except (OSError, ValueError):
            return None
        return str(status) if status else None

    def done_epochs(self) -> int:
        return max((int(x["epoch"]) for x in self.read_metrics()), default=0)

    def result(self) -> RunResult:
        return RunResult(self.path, self.read_test(), self.read_metrics())

    # -- writing

    def write_json(self, name: str, value: Any, indent: int | None = 2) -> None:
        atomic.write_text(self.file(name), jsonout.dumps(value, indent=indent, ensure_ascii=False) + "\n")

    def write_metrics(self, lines: list[dict[str, Any]]) -> None:
        atomic.write_text(self.file(METRICS), "".join(jsonout.dumps(x) + "\n" for x in lines))

    def write_hyps(self, hyps: list[str]) -> None:
        atomic.write_text(self.file(HYPS), "".join(h + "\n" for h in hyps))

    def discard(self) -> None:
        """Remove what a run that failed to start wrote (its files, then the folder if it is empty)."""
        for name in (*RUN_FILES, TRACKING):
            self.file(name).unlink(missing_ok=True)
        for name in (TENSORBOARD_DIR, WANDB_DIR):  # --report-to's: a failed start's points go too
            if self.file(name).is_dir() and not self.file(name).is_symlink():
                shutil.rmtree(self.file(name))
        atomic.remove_stale_temporaries(self.path)
        try:
            self.path.rmdir()
        except OSError:  # not empty: the user's own files stay
            pass

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder for one training process; BadInput when another holds it."""
        import fcntl

        path = self.file(LOCK)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                owner = path.read_text(encoding="utf-8").strip() if path.is_file() else "?"
                raise BadInput(
                    f"run folder {self.path} is in use by another embtool process (pid {owner or '?'}); "
                    "wait for it, or give another --out"
                ) from None
            if path.exists() and os.fstat(fd).st_ino == path.stat().st_ino:
                break  # else the holder removed the file as we opened it: take the new one
            os.close(fd)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            yield
        finally:
            path.unlink(missing_ok=True)
            os.close(fd)

    def clear_result(self) -> None:
        """Remove test.json and the hypotheses: a run is complete iff test.json exists, not while it continues."""
        for name in (TEST, HYPS):
            self.file(name).unlink(missing_ok=True)


# ----------------------------------------------------------------------------- config.json


def config_json(
    spec: RunSpec,
    prep: Prepared,
    model: dict[str, Any],
    parameters: dict[str, int],
    init: dict[str, Any],
    where: dict[str, Any],
    admin: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """config.json (DESIGN §4): the run (``spec``: its settings and Table 5 column), the model and its
    parameter counts, the tables and vocabularies (``prep``), how the embeddings started (``init``),
    where and how it runs (``where``: device, amp, amp_why, world_size, sdpa) and Admin's profile."""
    cfg = spec.cfg
    config: dict[str, Any] = {
        "config_version": CONFIG_VERSION,
        "embtool": __version__,
        "task": cfg.task,
        "kind": cfg.kind,
        "seed": cfg.seed,
        "model": model,
        "parameters": parameters,
        "paper": spec.paper,
        "train": cfg.to_dict(),
        "tables": {"src": prep.src.table_info, "tgt": prep.tgt.table_info if prep.tgt else None},
        "vocab": {
            "src_size": len(prep.src.vocab),
            "tgt_size": len(prep.tgt.vocab) if prep.tgt else None,
            "src_missing": prep.src.missing,
            "tgt_missing": prep.tgt.missing if prep.tgt else None,
        },
        "init": init,
        **where,
        "dropped_train_examples": prep.dropped,
        "train_examples": len(prep.train),
    }
    if admin is not None:
        config["admin_profile"] = admin
    if prep.out is not None:
        config["out_emb"] = {"table": prep.out.table_info, "missing": prep.out.missing}
    return config


def _v1_to_v2(config: dict[str, Any]) -> dict[str, Any]:
    """Folders written before config_version: the train settings of three earlier layouts."""
    train = config.get("train")
    if not isinstance(train, dict):
        return config  # resume_config names the problem
    # before the train options and TrainConfig fields shared one name
    train = {{"n_heads": "heads", "n_layers": "layers", "d_ff": "ff"}.get(k, k): v for k, v in train.items()}
    train.setdefault("preset", "fast")  # before the presets: what is now --preset fast (FFN 4·D)
    if train.get("output_dim"):  # before issue 25, --output-dim built the linear head
        train.setdefault("output_head", "linear")
    return {**config, "train": train}


MIGRATIONS = {1: _v1_to_v2}  # config_version n → n + 1


def migrate(config: dict[str, Any]) -> dict[str, Any]:
    """config.json of any version as the current one reads it (an old run folder still reports and
    resumes); ValueError for a version newer than this embtool's."""
    version = config.get("config_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= CONFIG_VERSION:
        raise ValueError(
            f"config_version {version!r}: this embtool reads 1 to {CONFIG_VERSION}; a newer one wrote it"
        )
    while version < CONFIG_VERSION:
        config = {**MIGRATIONS[version](config), "config_version": version + 1}
        version += 1
    return config


# ----------------------------------------------------------------------------- resuming


def resume_config(run_dir: str | os.PathLike[str]) -> TrainConfig:
    """The TrainConfig stored in a run folder (of any config_version), set to resume it (``out`` =
    the folder)."""
    from embtool.training.config import TrainConfig

    folder = RunFolder(run_dir)
    path = folder.file(CONFIG)
    if not path.is_file():
        raise BadInput(f"--resume {run_dir}: no {CONFIG}; is it a run folder made by `embtool train`?")
    try:
        stored = migrate(folder.read_config())["train"]
        if not isinstance(stored, dict):
            raise ValueError("'train' is not an object")
    except (ValueError, KeyError, OSError) as e:
        raise BadInput(f"{path}: not a readable run config ({e})") from None
    stored.update(out=str(run_dir), resume=True)
    return TrainConfig.from_dict(stored, origin=str(path))


def merge_on_resume(stored: TrainConfig, given: dict[str, Any]) -> tuple[TrainConfig, list[str], list[str]]:
    """The stored run with the ``given`` settings applied by each field's ``on_resume`` role, a note
    per change, and the given settings refused because they would change the run (KEEPS).

    FOLLOWS takes the given value (where and how the run executes); GROWS the larger (epochs: a
    run may train more); BOOKKEEPING (the folder, the act of resuming) is the caller's.
    """
    import dataclasses

    from embtool.training.config import BOOKKEEPING, FOLLOWS, GROWS, on_resume

    changes: dict[str, Any] = {}
    notes: list[str] = []
    refused: list[str] = []
    for name, value in sorted(given.items()):
        role, old = on_resume(name), getattr(stored, name)
        if role == BOOKKEEPING or value == old:
            continue
        flag = "--" + name.replace("_", "-")
        if role in (FOLLOWS, GROWS):
            changes[name] = max(old, value) if role == GROWS else value
            notes.append(f"{flag} {value} (was {old})")
        else:
            refused.append(f"{flag} {value} (the run has {old})")
    return dataclasses.replace(stored, **changes), notes, refused


def resumed(cfg: TrainConfig) -> TrainConfig:
    """The run stored in ``cfg.out``, continued as ``cfg`` asks: its epochs if more (0: the
    stored ones) and where and how it runs (FOLLOWS); every other setting is the folder's."""
    from embtool.training.config import FOLLOWS, fields_on_resume

    given = {name: getattr(cfg, name) for name in fields_on_resume(FOLLOWS)}
    if cfg.epochs:
        given["epochs"] = cfg.epochs
    return merge_on_resume(resume_config(cfg.out or ""), given)[0]


def resume_with(run_dir: str | os.PathLike[str], given: dict[str, Any]) -> tuple[TrainConfig, list[str]]:
    """The stored TrainConfig with the allowed ``given`` settings applied, and a note per change.

    BadInput for a setting that would change what the run learns (or fewer epochs than it has
    done): a run folder holds one run; a changed one is a new run in another folder.
    """
    from embtool.training.config import FOLLOWS, GROWS, fields_on_resume

    out = given.get("out")
    moved = out is not None and Path(out).resolve() != Path(run_dir).resolve()
    cfg, notes, refused = merge_on_resume(resume_config(run_dir), given)
    if moved:
        refused.insert(0, f"--out {out} (the run is in {run_dir})")
    if refused:
        may = ", ".join("--" + n.replace("_", "-") for n in fields_on_resume(GROWS, FOLLOWS))
        raise BadInput(
            f"--resume {run_dir}: {', '.join(sorted(refused))} would change the run; a run continues with "
            f"its own settings, and only {may} may change (give another --out for a new run)"
        )
    done = RunFolder(run_dir).done_epochs()
    if "epochs" in given and given["epochs"] < done:
        raise BadInput(
            f"--resume {run_dir}: --epochs {given['epochs']}: the run has trained {done} epoch(s) already"
        )
    return cfg, notes
