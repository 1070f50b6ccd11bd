"""Run-folder checkpoints: weights as safetensors (config in the metadata), resume state as state.pt.

``state.pt`` holds only tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(..., weights_only=True)`` (no pickled code).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from embtool._version import __version__
from embtool.atomic import atomic_path
from embtool.errors import BadInput

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


def save_state(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise BadInput(f"{path}: no resume state; the run has not finished an epoch yet")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file means the same thing here
        raise BadInput(f"{path}: not a readable resume state ({e})") from None
    if not isinstance(state, dict) or "epoch" not in state:
        raise BadInput(f"{path}: not an embtool resume state")
    return state


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
