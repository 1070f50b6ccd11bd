"""Input-embedding rows from a Hugging Face checkpoint, without instantiating the model.

Only the embedding tensor is read: from ``model.safetensors`` (memory-mapped, only the rows
asked for are copied), from the shard that ``model.safetensors.index.json`` names, or from
``pytorch_model.bin`` via ``torch.load(weights_only=True, mmap=True)``. Vocabulary tokens are
looked up as pieces of the checkpoint's tokenizer (WordPiece ``##``, SentencePiece ``▁``); a word
that is no piece can be composed as the mean of its pieces' rows.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embtool.errors import BadInput, WorkFailure
from embtool.tokenizer import load_hf_tokenizer

if TYPE_CHECKING:
    import torch

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
SP_SPACE = "▁"  # SentencePiece's word-initial marker
_SPECIAL = re.compile(r"^(<[^<>\s]+>|\[[A-Za-z_]+\])$")  # <unk>, </s>, [PAD]: never composed
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
            return _hub_file(location, name)

    for name in WEIGHT_FILES:
        path = fetch(name)
        if path is None:
            continue
        if name.endswith(".index.json"):
            weight_map = _read_index(path)
            key = pick_tensor(list(weight_map), tensor, str(path))
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


def read_rows(weights: WeightFile, ids: list[int]) -> tuple[torch.Tensor, int]:
    """Rows ``ids`` of the embedding as float32 (len(ids), D), and the tensor's row count."""
    import torch

    if weights.path.name.endswith(".safetensors"):
        return _safetensors_rows(weights.path, weights.key, ids)
    state = _torch_state(weights.path)
    table = state[weights.key]  # (V, D), memory-mapped when the file allows it
    _check_matrix(tuple(table.shape), weights)
    index = torch.tensor(ids, dtype=torch.long)
    _check_ids(ids, int(table.shape[0]), weights)
    return table.index_select(0, index).float(), int(table.shape[0])


def _safetensors_rows(path: Path, key: str, ids: list[int]) -> tuple[torch.Tensor, int]:
    import numpy as np
    from safetensors import SafetensorError, safe_open

    wf = WeightFile(path, key)
    try:
        with safe_open(str(path), framework="np") as f:  # the header, validated; no torch yet
            piece = f.get_slice(key)
            shape = tuple(piece.get_shape())
            dtype = piece.get_dtype()
    except SafetensorError as e:
        raise BadInput(f"{path}: not a readable safetensors file ({e})") from None
    _check_matrix(shape, wf)
    _check_ids(ids, shape[0], wf)
    if dtype not in _NP_DTYPES:  # rare formats: read the tensor through safetensors
        import torch
        from safetensors.torch import load_file

        return load_file(str(path))[key][torch.tensor(ids, dtype=torch.long)].float(), shape[0]
    # Memory-map the tensor's bytes and copy only the wanted rows: the header gives its offsets
    # (safetensors layout: u64 header size, JSON header, then the data block).
    with open(path, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(size))
    start, _ = header[key]["data_offsets"]
    mm = np.memmap(path, dtype=_NP_DTYPES[dtype], mode="r", offset=8 + size + start, shape=shape)
    picked = mm[np.asarray(ids, dtype=np.int64)]  # (K, D), a copy of just these rows
    del mm
    import torch

    rows = torch.from_numpy(picked)
    if dtype == "BF16":
        rows = rows.view(torch.bfloat16)
    return (rows if rows.dtype == torch.float32 else rows.float()), shape[0]


def _check_matrix(shape: tuple[int, ...], wf: WeightFile) -> None:
    if len(shape) != 2:
        raise BadInput(f"{wf.path}: tensor {wf.key} has shape {shape}, not (rows, dim); choose another with --tensor")


def _check_ids(ids: list[int], rows: int, wf: WeightFile) -> None:
    if ids and max(ids) >= rows:
        raise BadInput(
            f"{wf.path}: the tokenizer has id {max(ids)} but tensor {wf.key} has only {rows} rows; "
            "is it the input embedding of this checkpoint? (--tensor)"
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

    import torch

    try:
        try:  # the zip format memory-maps: only the tensors touched are read
            state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # the legacy format cannot be memory-mapped
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError) as e:
        raise BadInput(f"{path}: not a loadable PyTorch state dict ({' '.join(str(e).split())[:200]})") from None
    if not isinstance(state, dict):
        raise BadInput(f"{path}: holds a {type(state).__name__}, not a state dict of tensors")
    return state


def _read_index(path: Path) -> dict[str, str]:
    try:
        weight_map = json.loads(path.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BadInput(f"{path}: not a weight index with a 'weight_map' ({e})") from None
    if not isinstance(weight_map, dict):
        raise BadInput(f"{path}: 'weight_map' is not a JSON object")
    return {str(k): str(v) for k, v in weight_map.items()}


def _hub_file(repo: str, name: str) -> Path | None:
    """One file of a hub repository (cached by huggingface_hub), or None if the repo lacks it."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(hf_hub_download(repo, name))
    except EntryNotFoundError:
        return None
    except RepositoryNotFoundError:
        raise BadInput(f"{repo}: no such model on the Hugging Face hub, and no such local folder") from None
    except Exception as e:  # noqa: BLE001 - offline, unreachable, gated: all end the same way
        if type(e).__name__ == "LocalEntryNotFoundError" and _cached_repo(repo):
            return None  # offline with a cached snapshot that lacks this file
        raise WorkFailure(
            f"could not fetch {name} of {repo} from the Hugging Face hub ({type(e).__name__}); "
            "without network, give a local checkpoint folder (save_pretrained) instead"
        ) from None


def _cached_repo(repo: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, "config.json"), str)


# ----------------------------------------------------------------------------- token lookup


@dataclass
class PieceLookup:
    """Per vocabulary token: a row id, a list of piece ids to average, or nothing."""

    ids: list[int | None]
    compose: dict[int, list[int]]


class Pieces:
    """What lookup needs of a tokenizer: piece → id, its size, and how it splits a word.

    Built on the ``tokenizers`` library straight from ``tokenizer.json`` when the checkpoint has
    one (no transformers import, no Python copy of a 250k-piece vocabulary), else on
    ``transformers.AutoTokenizer``.
    """

    def __init__(self, tok: Any, rust: bool, unk: str | None):
        self._tok = tok
        self._rust = rust
        self.unk = unk
        self.size = int(tok.get_vocab_size(with_added_tokens=True) if rust else len(tok))
        self._vocab: dict[str, int] | None = None if rust else tok.get_vocab()

    def id(self, piece: str) -> int | None:
        i = self._tok.token_to_id(piece) if self._vocab is None else self._vocab.get(piece)
        return int(i) if i is not None and i < self.size else None  # T5's padding rows: never

    def split(self, word: str) -> list[str]:
        if self._rust:
            return list(self._tok.encode(word, add_special_tokens=False).tokens)
        return list(self._tok.tokenize(word))


def lookup_pieces(
    tok: Pieces, tokens: list[str], *, pieces: bool, compose: bool, case_fallback: bool, specials: set[str]
) -> PieceLookup:
    """Map vocabulary tokens to tokenizer ids.

    ``pieces``: the vocabulary was made with this kind of tokenizer, so its tokens are pieces
    and match exactly. Otherwise tokens are words: SentencePiece's word-initial ``▁w`` is tried
    before ``w`` (which is a word-internal piece there), and in WordPiece ``w`` is word-initial.
    A token found nowhere is split by the tokenizer and composed from its pieces when ``compose``.
    Ids at or beyond the tokenizer's size (T5's padding rows) are never picked.
    """

    def piece_id(token: str) -> int | None:
        forms = [token] if pieces else [SP_SPACE + token, token]
        if case_fallback and token.lower() != token:
            low = token.lower()
            forms += [low] if pieces else [SP_SPACE + low, low]
        for form in forms:
            i = tok.id(form)
            if i is not None:
                return i
        return None

    ids: list[int | None] = []
    composed: dict[int, list[int]] = {}
    for n, token in enumerate(tokens):
        i = piece_id(token)
        ids.append(i)
        if i is not None or not compose or token in specials or _SPECIAL.match(token):
            continue
        parts = tok.split(token)
        part_ids = [tok.id(p) for p in parts]
        if parts and tok.unk not in parts and all(p is not None for p in part_ids):
            composed[n] = [int(p) for p in part_ids if p is not None]
    return PieceLookup(ids, composed)


def tokenizer_for(location: str) -> Pieces:
    """The checkpoint's tokenizer; the model is never built."""
    folder = Path(location)
    path: Path | None = folder / "tokenizer.json" if folder.is_dir() else None
    if path is not None and not path.is_file():
        path = None
    if path is None and not folder.is_dir():
        path = _hub_file(location, "tokenizer.json")
    if path is not None:
        from tokenizers import Tokenizer

        try:
            rust = Tokenizer.from_file(str(path))
        except Exception as e:  # noqa: BLE001 - the Rust side raises plain Exception
            raise BadInput(f"{path}: not a readable tokenizer.json ({' '.join(str(e).split())[:200]})") from None
        rust.no_padding()  # a saved tokenizer.json may pad or truncate every encoding
        rust.no_truncation()
        unk = _config_unk(path.parent) or getattr(rust.model, "unk_token", None)
        return Pieces(rust, True, unk)
    hf = load_hf_tokenizer(location)
    return Pieces(hf, False, getattr(hf, "unk_token", None))


def _config_unk(folder: Path) -> str | None:
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        try:
            value = json.loads((folder / name).read_text(encoding="utf-8")).get("unk_token")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            return value
    return None


def source_name(location: str) -> str:
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
