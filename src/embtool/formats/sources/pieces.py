"""Vocabulary tokens as pieces of a checkpoint's tokenizer, without building the model.

Tokens are looked up as WordPiece (``##``) or SentencePiece (``▁``) pieces; a word that is no piece
can be composed as the mean of its pieces' rows. ``tokenizer.json`` is read with ``json`` (a Unigram
vocabulary is scanned, not parsed), so neither transformers nor torch is imported; checkpoints
without one go through ``transformers.AutoTokenizer``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embtool.core.errors import BadInput
from embtool.formats.sources.huggingface import hub_file
from embtool.text.tokenizer import load_hf_tokenizer

SP_SPACE = "▁"  # SentencePiece's word-initial marker
_SPECIAL = re.compile(r"^(<[^<>\s]+>|\[[A-Za-z_]+\])$")  # <unk>, </s>, [PAD]: never composed


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
                raise BadInput(
                    f"{self.path}: not a readable tokenizer.json ({' '.join(str(e).split())[:200]})"
                ) from None
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
            (
                j
                for form in candidate_forms(token, pieces=pieces, case_fallback=case_fallback)
                if (j := tok.id(form)) is not None
            ),
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
        path = hub_file(location, "tokenizer.json")
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
