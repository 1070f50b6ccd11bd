"""Run-folder checkpoints: weights as safetensors (config in the metadata), resume state as state.pt.

``state.pt`` holds only tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(..., weights_only=True)`` (no pickled code).
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from embtool._version import __version__
from embtool.core.atomic import atomic_path
from embtool.core.errors import BadInput
from embtool.training.runfolder import METRICS

KEY_MODEL = "embtool.model"  # ModelConfig as JSON
KEY_TRAIN = "embtool.train"  # TrainConfig as JSON
KEY_EPOCH = "embtool.epoch"
KEY_VERSION = "embtool.version"


def save_weights(model: nn.Module, path: Path, meta: dict[str, Any], epoch: int) -> None:
    """Write the model's parameters (fp32, tied weights once) atomically."""
    from safetensors.torch import save_model

    metadata = {
        KEY_MODEL: json.dumps(meta["model"]),
        KEY_TRAIN: json.dumps(meta["train"]),
        KEY_EPOCH: str(epoch),
        KEY_VERSION: __version__,
    }
    with atomic_path(path) as tmp:
        save_model(model, tmp, metadata=metadata)


def load_weights(model: nn.Module, path: Path) -> dict[str, str]:
    """Fill ``model`` from a weights file; returns the file's metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_model

    if not path.is_file():
        raise BadInput(f"{path}: no such checkpoint")
    load_model(model, str(path), strict=True, device=str(next(model.parameters()).device))
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def read_weights_meta(path: Path) -> dict[str, Any]:
    """ModelConfig dict, TrainConfig dict and epoch stored in a weights file."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return {
        "model": json.loads(meta[KEY_MODEL]),
        "train": json.loads(meta[KEY_TRAIN]),
        "epoch": int(meta[KEY_EPOCH]),
    }


# what save_state is given in every epoch (loop.fit); a resume needs all of it
STATE_KEYS = ("epoch", "model", "optimizer", "rng", "best_val_loss", "best_epoch", "metrics")


def save_state(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise BadInput(f"{path}: no resume state; the run has not finished an epoch yet")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file means the same thing here
        # torch's message advises weights_only=False: never relay that for a file embtool did not write
        found = re.search(r"GLOBAL ([\w.]+)", str(e)) if isinstance(e, pickle.UnpicklingError) else None
        if found:  # weights_only refused a pickled object: loading it could run code
            raise BadInput(
                f"{path}: not a plain-tensor checkpoint that embtool wrote: it holds pickled Python objects "
                f"(first: {found.group(1)}), which embtool refuses to load (they can run code); the run "
                "cannot be resumed from it"
            ) from None
        raise BadInput(f"{path}: not a readable resume state ({_torch_reason(str(e))})") from None
    if not isinstance(state, dict) or "epoch" not in state:
        raise BadInput(f"{path}: not an embtool resume state")
    lacking = [k for k in STATE_KEYS if k not in state]
    if lacking:
        raise BadInput(f"{path}: not a complete resume state (no {', '.join(lacking)}); it cannot be resumed")
    return state


def _torch_reason(message: str) -> str:
    """The line of torch.load's error that says what is wrong, without its advice (weights_only,
    the documentation) and without the label before it."""
    advice = ("weights_only", "Weights only load failed", "Check the documentation")
    lines = [x.strip() for x in message.splitlines() if x.strip() and not any(a in x for a in advice)]
    line = lines[0].removeprefix("WeightsUnpickler error:").strip() if lines else "unreadable"
    return line if len(line) <= 160 else line[:157] + "..."


def resume_state(path: Path, done_epochs: int) -> dict[str, Any] | None:
    """state.pt of a resumed run (None: no epoch done, start at 1), read before the run's data, so a
    broken one is said at once; ``check_state_fits`` checks it against the model once that is built.

    state.pt alone is the resume point: one atomic file with weights, optimizer, RNG and metrics,
    so a kill between the writes of an epoch cannot leave a mixed state."""
    if not path.is_file():
        if done_epochs:  # epochs were trained, but their state is gone: starting over would overwrite them
            raise BadInput(
                f"{path}: no resume state, but {METRICS} records {done_epochs} epoch(s); the run cannot "
                "continue: train it again with another --out"
            )
        return None
    return load_state(path)


def check_state_fits(path: Path, state: dict[str, Any], model: torch.nn.Module) -> None:
    """BadInput unless ``state``'s weights are those of ``model`` (built from config.json): same
    tensors, same shapes. A state.pt copied from another run would fail deep inside torch."""
    theirs, mine = state["model"], model.state_dict()
    if not isinstance(theirs, dict) or set(theirs) != set(mine):
        other = sorted(set(theirs) ^ set(mine)) if isinstance(theirs, dict) else ["(not a state dict)"]
        raise BadInput(f"{path}: its weights are not those of this run's model (config.json): {other[0]}")
    for key, tensor in mine.items():
        if tuple(theirs[key].shape) != tuple(tensor.shape):
            raise BadInput(
                f"{path}: holds weights of another model size ({key} is {tuple(theirs[key].shape)}; "
                f"config.json's model has {tuple(tensor.shape)}); it is not this run's state"
            )


def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """The CPU generator's state, and the run's CUDA device's (only that one: a machine with fewer
    GPUs, or none, can still resume the run)."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Put back ``rng_state``'s generators; a CUDA state goes to the run's device when it is on
    one (a state saved by older versions, one per GPU, gives its first)."""
    torch.set_rng_state(state["cpu"])
    cuda = state.get("cuda")
    if cuda is None or device is None or device.type != "cuda":
        return
    if isinstance(cuda, (list, tuple)):
        if not cuda:
            return
        cuda = cuda[0]
    torch.cuda.set_rng_state(cuda, device)
