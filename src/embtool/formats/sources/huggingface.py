"""Input-embedding rows from a Hugging Face checkpoint, without instantiating the model.

Only the embedding tensor is read: from ``model.safetensors`` (memory-mapped through numpy, only
the rows asked for are copied), from the shard that ``model.safetensors.index.json`` names, or from
``pytorch_model.bin`` via ``torch.load(weights_only=True, mmap=True)`` (the one use of torch here).
Vocabulary tokens are looked up as pieces of the checkpoint's tokenizer: see ``pieces``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embtool.core.errors import BadInput, WorkFailure

if TYPE_CHECKING:
    import numpy as np

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PYTORCH_BIN = "pytorch_model.bin"
PYTORCH_BIN_INDEX = "pytorch_model.bin.index.json"
WEIGHT_FILES = (SAFETENSORS_INDEX, SAFETENSORS, PYTORCH_BIN_INDEX, PYTORCH_BIN)
# Input-embedding key suffixes, most specific first: BERT/mBERT/XLM-R, T5/mT5, BART/LLaMA, GPT-2,
# BLOOM, GPT-NeoX. Position and token-type embeddings never end with these.
EMBEDDING_SUFFIXES = (
    "embeddings.word_embeddings.weight",
    "shared.weight",
    "embed_tokens.weight",
    "wte.weight",
    "word_embeddings.weight",
    "embed_in.weight",
)
_NP_DTYPES = {"F32": "float32", "F16": "float16", "F64": "float64", "BF16": "uint16"}


@dataclass
class WeightFile:
    """Where the embedding tensor lives: a file and the tensor's key in it."""

    path: Path
    key: str


def locate_weights(location: str, tensor: str | None = None) -> WeightFile:
    """Find the file holding the input embedding in a local folder or a hub repository."""
    folder = Path(location)
    if folder.is_dir():

        def fetch(name: str) -> Path | None:
            return folder / name if (folder / name).is_file() else None
    else:

        def fetch(name: str) -> Path | None:
            return hub_file(location, name)

    for name in WEIGHT_FILES:
        path = fetch(name)
        if path is None:
            continue
        if name.endswith(".index.json"):
            weight_map = _read_index(path)
            key = pick_tensor(list(weight_map), tensor, str(path))
            parts = Path(weight_map[key]).parts
            if not parts or Path(weight_map[key]).is_absolute() or ".." in parts:
                raise BadInput(
                    f"{path}: names shard {weight_map[key]!r} for {key}, outside the checkpoint folder; "
                    "shards must be files in the folder"
                )
            shard = fetch(weight_map[key])
            if shard is None:
                raise BadInput(f"{path}: names shard {weight_map[key]!r} for {key}, which is not there")
            return WeightFile(shard, key)
        keys = _safetensors_keys(path) if name == SAFETENSORS else list(_torch_state(path))
        return WeightFile(path, pick_tensor(keys, tensor, str(path)))
    raise BadInput(
        f"{location}: no weights found (looked for {', '.join(WEIGHT_FILES)}); give a checkpoint folder "
        "written by save_pretrained"
    )


def pick_tensor(keys: list[str], tensor: str | None, origin: str) -> str:
    """The input-embedding key: ``tensor`` (exact or suffix) if given, else by known suffixes."""
    wanted = (tensor,) if tensor else EMBEDDING_SUFFIXES
    for suffix in wanted:
        matches = [k for k in keys if k == suffix or k.endswith("." + suffix)]
        if matches:
            return min(matches, key=len)  # "shared.weight" before "model.decoder.shared.weight"
    near = [k for k in keys if "embed" in k or "shared" in k] or keys[:8]
    what = f"no tensor named {tensor!r}" if tensor else "no input-embedding tensor"
    raise BadInput(
        f"{origin}: {what} (candidates: {', '.join(near) or 'none'}); pass --tensor NAME with one of them"
    )


class EmbeddingRows:
    """The checkpoint's embedding tensor (V, D), read a few rows at a time as float32 numpy arrays.

    safetensors files are memory-mapped through numpy, so torch is never imported (it would cost
    more time and memory than the whole extraction); ``pytorch_model.bin`` needs torch.
    """

    def __init__(self, weights: WeightFile):
        self.weights = weights
        if weights.path.name.endswith(".safetensors"):
            self._table: Any = _memmap_tensor(weights)
        else:
            self._table = _torch_state(weights.path)[weights.key]  # memory-mapped when the file allows it
        self.shape: tuple[int, ...] = tuple(self._table.shape)
        _check_matrix(self.shape, weights)

    def take(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Rows ``ids`` (K, D) as float32; ids are checked against the tensor's row count."""
        import numpy as np

        index = np.asarray(ids, dtype=np.int64)
        if len(index) and int(index.max()) >= self.shape[0]:
            raise BadInput(
                f"{self.weights.path}: the tokenizer has id {int(index.max())} but tensor {self.weights.key} has only "
                f"{self.shape[0]} rows; is it the input embedding of this checkpoint? (--tensor)"
            )
        if not isinstance(self._table, np.ndarray):  # a torch tensor
            import torch

            return self._table.index_select(0, torch.from_numpy(index)).float().numpy()
        rows = self._table[index]  # (K, D), a copy of just these rows
        if self._table.dtype == np.uint16:  # bfloat16: the high half of a float32
            return (rows.astype(np.uint32) << 16).view(np.float32)
        return rows.astype(np.float32, copy=False)


def _memmap_tensor(weights: WeightFile) -> Any:
    """A read-only numpy memory map of one tensor of a safetensors file."""
    import numpy as np
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights.path), framework="np") as f:  # the header, validated
            piece = f.get_slice(weights.key)
            shape = tuple(piece.get_shape())
            dtype = piece.get_dtype()
    except SafetensorError as e:
        raise BadInput(f"{weights.path}: not a readable safetensors file ({e})") from None
    _check_matrix(shape, weights)
    if dtype not in _NP_DTYPES:
        raise BadInput(
            f"{weights.path}: tensor {weights.key} has dtype {dtype}; embeddings are read from F32, F16, BF16 "
            "or F64 tensors (--tensor chooses another)"
        )
    # The safetensors layout: u64 header size, JSON header (with the tensor's byte offsets), data.
    with open(weights.path, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        start, _ = json.loads(fh.read(size))[weights.key]["data_offsets"]
    return np.memmap(weights.path, dtype=_NP_DTYPES[dtype], mode="r", offset=8 + size + start, shape=shape)


def _check_matrix(shape: tuple[int, ...], wf: WeightFile) -> None:
    if len(shape) != 2:
        raise BadInput(
            f"{wf.path}: tensor {wf.key} has shape {shape}, not (rows, dim); choose another with --tensor"
        )


def _safetensors_keys(path: Path) -> list[str]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            return list(f.keys())
    except (SafetensorError, OSError) as e:
        raise BadInput(f"{path}: not a readable safetensors file ({e})") from None


def _torch_state(path: Path) -> dict[str, Any]:
    import pickle
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # torch warns (with a source line) before it refuses
            warnings.simplefilter("ignore")
            try:  # the zip format memory-maps: only the tensors touched are read
                state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # the legacy format cannot be memory-mapped
                state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refused a pickled object (code could run)
        what = _unsafe_global(str(e))
        raise BadInput(
            f"{path}: not a weights-only checkpoint: it holds pickled Python objects{what}, which embtool "
            "does not load (they can run code); convert it to safetensors where you trust it"
        ) from None
    except (RuntimeError, OSError, EOFError) as e:
        raise BadInput(f"{path}: not a loadable PyTorch state dict ({_first_line(str(e))})") from None
    if not isinstance(state, dict):
        raise BadInput(f"{path}: holds a {type(state).__name__}, not a state dict of tensors")
    return state


def _unsafe_global(message: str) -> str:
    """`` (first: NAME)`` from torch's weights-only refusal, naming the global it met, or ''."""
    import re

    found = re.search(r"GLOBAL ([\w.]+)", message)  # every torch wording names it after "GLOBAL"
    return f" (first: {found.group(1)})" if found else ""


def _first_line(message: str) -> str:
    line = next((x.strip() for x in message.splitlines() if x.strip()), "")
    return line if len(line) <= 160 else line[:157] + "..."


def _read_index(path: Path) -> dict[str, str]:
    try:
        weight_map = json.loads(path.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BadInput(f"{path}: not a weight index with a 'weight_map' ({e})") from None
    if not isinstance(weight_map, dict):
        raise BadInput(f"{path}: 'weight_map' is not a JSON object")
    return {str(k): str(v) for k, v in weight_map.items()}


def hub_file(repo: str, name: str) -> Path | None:
    """One file of a hub repository (cached by huggingface_hub), or None if the repo lacks it."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    from embtool.core import hub

    local = hub.offline()  # offline: the cache only, no minute of retries
    try:
        return Path(hf_hub_download(repo, name, local_files_only=local))
    except EntryNotFoundError:
        return None
    except RepositoryNotFoundError:
        raise BadInput(f"{repo}: no such model on the Hugging Face hub, and no such local folder") from None
    except Exception as e:  # noqa: BLE001 - offline, unreachable, gated: all end the same way
        if type(e).__name__ == "LocalEntryNotFoundError" and _cached_repo(repo):
            return None  # offline with a cached snapshot that lacks this file
        if local:
            raise hub.unreachable(repo, "give a local checkpoint folder (save_pretrained) instead") from None
        raise WorkFailure(
            f"could not fetch {name} of {repo} from the Hugging Face hub ({type(e).__name__}); "
            "without network, give a local checkpoint folder (save_pretrained) instead"
        ) from None


def _cached_repo(repo: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, "config.json"), str)


def hf_spec(location: str) -> str:
    """``hf:<id>`` or ``hf:<absolute folder>`` for the table's source and tokenizer metadata."""
    return "hf:" + (os.path.abspath(location) if os.path.isdir(location) else location)


def release_memory() -> None:
    """Hand freed heap pages back to the system (glibc), so that a large tokenizer's memory
    does not stay resident under what comes next; a no-op elsewhere."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
