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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embtool.errors import BadInput, WorkFailure
from embtool.text.tokenizer import load_hf_tokenizer

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
    """A read-only numpy memory map of one tensor of a safetensors file (torch only for rare dtypes)."""
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
    if dtype not in _NP_DTYPES:  # rare formats: read the tensor through safetensors and torch
        from safetensors.torch import load_file

        return load_file(str(weights.path))[weights.key]
    # The safetensors layout: u64 header size, JSON header (with the tensor's byte offsets), data.
    with open(weights.path, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        start, _ = json.loads(fh.read(size))[weights.key]["data_offsets"]
    return np.memmap(weights.path, dtype=_NP_DTYPES[dtype], mode="r", offset=8 + size + start, shape=shape)


def _check_matrix(shape: tuple[int, ...], wf: WeightFile) -> None:
    if len(shape) != 2:
        raise BadInput(f"{wf.path}: tensor {wf.key} has shape {shape}, not (rows, dim); choose another with --tensor")


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
    """What lookup needs of a tokenizer: piece → id, its size, its unknown token, how it splits a word.

    From ``tokenizer.json`` only the ids of ``wanted`` pieces are kept, read with ``json``: a
    250k-piece vocabulary then leaves no lasting memory behind and neither transformers nor torch
    is imported. Other pieces, and splitting a word, load the ``tokenizers`` tokenizer on first use.
    """

    def __init__(self, path: Path, wanted: Iterable[str]):
        self.path = path
        known: dict[str, int | None] = dict.fromkeys(wanted)  # keys stay our strings, not the parse's
        try:
            data, unigram = _read_tokenizer_json(path, known)
            model = data["model"]
            vocab = model["vocab"]
            added = {str(a["content"]): int(a["id"]) for a in data.get("added_tokens") or []}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise BadInput(f"{path}: not a readable tokenizer.json ({type(e).__name__}: {e})") from None
        unk: str | None = None
        if unigram is not None:  # a Unigram vocabulary, scanned without building it
            size, unk = unigram.size, unigram.piece(model.get("unk_id"))
        elif isinstance(vocab, list):  # Unigram (SentencePiece): [[piece, score], …], id = position
            for i, entry in enumerate(vocab):
                if entry[0] in known:
                    known[entry[0]] = i
            size = len(vocab)
            unk_id = model.get("unk_id")
            unk = vocab[unk_id][0] if isinstance(unk_id, int) and 0 <= unk_id < size else None
        elif isinstance(vocab, dict):  # WordPiece, BPE, WordLevel: {piece: id}
            for piece in known:
                known[piece] = vocab.get(piece)
            size = max(vocab.values(), default=-1) + 1
            unk = model.get("unk_token")
        else:
            raise BadInput(f"{path}: the tokenizer model has no vocabulary")
        for piece in known.keys() & added.keys():  # the tokenizer looks added tokens up first
            known[piece] = added[piece]
        del data, vocab
        self.size = max(size, max(added.values(), default=-1) + 1)
        self.unk = _config_unk(path.parent) or unk
        self._known = known
        self._rust: Any = None

    def id(self, piece: str) -> int | None:
        if piece in self._known:
            return self._known[piece]
        i = self._tokenizer().token_to_id(piece)
        return int(i) if i is not None and i < self.size else None  # T5's padding rows: never

    def split(self, word: str) -> list[str]:
        return list(self._tokenizer().encode(word, add_special_tokens=False).tokens)

    def _tokenizer(self) -> Any:
        if self._rust is None:
            from tokenizers import Tokenizer

            try:
                self._rust = Tokenizer.from_file(str(self.path))
            except Exception as e:  # noqa: BLE001 - the Rust side raises plain Exception
                raise BadInput(f"{self.path}: not a readable tokenizer.json ({' '.join(str(e).split())[:200]})") from None
            self._rust.no_padding()  # a saved tokenizer.json may pad or truncate every encoding
            self._rust.no_truncation()
        return self._rust


# A Unigram vocabulary as tokenizers writes it: "vocab": [["piece", score], …] (id = position).
_UNIGRAM_VOCAB = re.compile(r'"vocab"\s*:\s*\[')
_UNIGRAM_ENTRY = re.compile(r'\s*\[\s*"([^"\\]*(?:\\.[^"\\]*)*)"\s*,\s*[-+0-9.eE]+\s*\]\s*([,\]])')
_LIST_END = re.compile(r"\s*\]")


@dataclass
class UnigramScan:
    """Where a Unigram vocabulary list lies in the text of a tokenizer.json, and its length."""

    text: str
    start: int  # offset of the list's "["
    end: int  # just past its "]"
    size: int

    def entries(self) -> Iterator[tuple[int, str]]:
        """(id, piece) of every entry; sets ``end`` and ``size``; ValueError where the text is no such list."""
        pos = self.start + 1
        end = _LIST_END.match(self.text, pos)
        if end is not None:  # an empty list
            self.end, self.size = end.end(), 0
            return
        for i, m in enumerate(_UNIGRAM_ENTRY.finditer(self.text, pos)):
            if m.start() != pos:  # something else between two entries
                raise ValueError(f"unexpected text at offset {pos}")
            pos = m.end()
            piece = m.group(1)
            yield i, json.loads(f'"{piece}"') if "\\" in piece else piece
            if m.group(2) == "]":
                self.end, self.size = pos, i + 1
                return
        raise ValueError("the list does not end")

    def piece(self, i: Any) -> str | None:
        if not isinstance(i, int) or not 0 <= i < self.size:
            return None
        return next(p for j, p in self.entries() if j == i)


def _read_tokenizer_json(path: Path, known: dict[str, int | None]) -> tuple[Any, UnigramScan | None]:
    """The parsed tokenizer.json; a Unigram vocabulary is scanned instead of parsed.

    250k Python lists, strings and floats would cost 3–4× the file's size in memory: when the
    vocabulary is a list of [piece, score] pairs, the ids of ``known`` pieces are recorded in a
    pass over the text, and the rest of the file is parsed with that list left empty. Any other
    layout is parsed as a whole.
    """
    text = path.read_text(encoding="utf-8")
    m = _UNIGRAM_VOCAB.search(text)
    if m is not None:
        scan = UnigramScan(text, m.end() - 1, -1, 0)
        try:
            found = {piece: i for i, piece in scan.entries() if piece in known}
        except ValueError:
            pass  # not this layout: parse it all
        else:
            data = json.loads(text[: scan.start] + "[]" + text[scan.end :])
            if data.get("model", {}).get("vocab") == [] and scan.size:
                for piece, i in found.items():
                    known[piece] = i  # assigning an existing key keeps our string
                return data, scan
    return json.loads(text), None


class HfPieces(Pieces):
    """The same through ``transformers.AutoTokenizer``, for checkpoints without tokenizer.json."""

    def __init__(self, location: str):
        self._hf = load_hf_tokenizer(location)
        self._vocab: dict[str, int] = self._hf.get_vocab()
        self.size = len(self._hf)
        self.unk = getattr(self._hf, "unk_token", None)

    def id(self, piece: str) -> int | None:
        i = self._vocab.get(piece)
        return i if i is not None and i < self.size else None

    def split(self, word: str) -> list[str]:
        return list(self._hf.tokenize(word))


def candidate_forms(token: str, *, pieces: bool, case_fallback: bool) -> list[str]:
    """The piece spellings a vocabulary token is looked up as, in order.

    ``pieces``: the vocabulary was made with this kind of tokenizer, so its tokens are pieces and
    match exactly. Otherwise tokens are words: SentencePiece's word-initial ``▁w`` is tried before
    ``w`` (a word-internal piece there); in WordPiece ``w`` is word-initial. Then the lower-cased.
    """
    forms = [token] if pieces else [SP_SPACE + token, token]
    if case_fallback and token.lower() != token:
        low = token.lower()
        forms += [low] if pieces else [SP_SPACE + low, low]
    return forms


def lookup_pieces(
    tok: Pieces, tokens: list[str], *, pieces: bool, compose: bool, case_fallback: bool, specials: set[str]
) -> PieceLookup:
    """Map vocabulary tokens to tokenizer ids, as ``candidate_forms`` spells them.

    A token found nowhere is split by the tokenizer and composed from its pieces when ``compose``.
    Ids at or beyond the tokenizer's size (T5's padding rows) are never picked.
    """
    ids: list[int | None] = []
    composed: dict[int, list[int]] = {}
    for n, token in enumerate(tokens):
        i = next(
            (j for form in candidate_forms(token, pieces=pieces, case_fallback=case_fallback) if (j := tok.id(form)) is not None),
            None,
        )
        ids.append(i)
        if i is not None or not compose or token in specials or _SPECIAL.match(token):
            continue
        parts = tok.split(token)
        part_ids = [tok.id(p) for p in parts]
        if parts and tok.unk not in parts and all(p is not None for p in part_ids):
            composed[n] = [int(p) for p in part_ids if p is not None]
    return PieceLookup(ids, composed)


def tokenizer_for(location: str, wanted: Iterable[str] = ()) -> Pieces:
    """The checkpoint's tokenizer, ready to look ``wanted`` pieces up; the model is never built."""
    folder = Path(location)
    path: Path | None = folder / "tokenizer.json" if folder.is_dir() else None
    if path is not None and not path.is_file():
        path = None
    if path is None and not folder.is_dir():
        path = _hub_file(location, "tokenizer.json")
    if path is not None:
        return Pieces(path, wanted)
    return HfPieces(location)


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
