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

No torch here: `report` and `experiment --dry-run` read run folders without it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embtool import atomic
from embtool.errors import BadInput

CONFIG = "config.json"
VOCAB = "vocab.json"
METRICS = "metrics.jsonl"
BEST = "best.safetensors"
LAST = "last.safetensors"
STATE = "state.pt"
TEST = "test.json"
HYPS = "hyps.test.txt"

DONE, RESUME, TODO = "done", "resume", "todo"
# config.json of runs made before the train options and TrainConfig fields shared one name
_OLD_KEYS = {"n_heads": "heads", "n_layers": "layers", "d_ff": "ff"}


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
            return f"test BLEU {t['bleu']:.2f} (best epoch {t['best_epoch']}, {t['split']}) → {self.path}"
        acc = f"val acc {t['best_val_acc']:.2f}"
        if "best_val_acc_mismatched" in t:
            acc += f" / mismatched {t['best_val_acc_mismatched']:.2f}"
        return f"best {acc} (epoch {t['best_epoch']}) → {self.path}"


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
        """ "done" (test.json), "resume" (config.json, no test.json) or "todo" (neither)."""
        if self.file(TEST).is_file():
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
            rows.append(row)
        return rows

    def read_test(self) -> dict[str, Any]:
        """test.json; ValueError/OSError when it is not a readable JSON object."""
        return read_json_object(self.file(TEST))

    def done_epochs(self) -> int:
        return max((int(x["epoch"]) for x in self.read_metrics()), default=0)

    def result(self) -> RunResult:
        return RunResult(self.path, self.read_test(), self.read_metrics())

    # -- writing

    def write_json(self, name: str, value: Any, indent: int | None = 2) -> None:
        atomic.write_text(self.file(name), json.dumps(value, indent=indent, ensure_ascii=False) + "\n")

    def write_metrics(self, lines: list[dict[str, Any]]) -> None:
        atomic.write_text(self.file(METRICS), "".join(json.dumps(x) + "\n" for x in lines))

    def write_hyps(self, hyps: list[str]) -> None:
        atomic.write_text(self.file(HYPS), "".join(h + "\n" for h in hyps))

    def clear_result(self) -> None:
        """Remove test.json and the hypotheses: a run is complete iff test.json exists, not while it continues."""
        for name in (TEST, HYPS):
            self.file(name).unlink(missing_ok=True)


def resume_config(run_dir: str | os.PathLike[str]) -> Any:
    """The TrainConfig stored in a run folder, set to resume it (``out`` = the folder)."""
    from embtool.training.config import TrainConfig

    folder = RunFolder(run_dir)
    path = folder.file(CONFIG)
    if not path.is_file():
        raise BadInput(f"--resume {run_dir}: no {CONFIG}; is it a run folder made by `embtool train`?")
    try:
        stored = folder.read_config()["train"]
        if not isinstance(stored, dict):
            raise ValueError("'train' is not an object")
    except (ValueError, KeyError, OSError) as e:
        raise BadInput(f"{path}: not a readable run config ({e})") from None
    stored = {_OLD_KEYS.get(k, k): v for k, v in stored.items()}
    # a run from before the presets was trained with what is now --preset fast (FFN 4·D)
    stored.setdefault("preset", "fast")
    stored.update(out=str(run_dir), resume=True)
    return TrainConfig.from_dict(stored, origin=str(path))
