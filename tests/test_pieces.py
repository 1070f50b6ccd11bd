"""Vocabulary tokens as tokenizer pieces (sources.pieces): tokenizer.json read with json, a Unigram
vocabulary scanned instead of parsed, ids held against the tokenizers library's own."""

from __future__ import annotations

import json

import pytest

from embtool.core.errors import BadInput
from embtool.formats.sources.pieces import Pieces, _read_tokenizer_json, candidate_forms


def _unigram_tokenizer(pieces: list[str]):
    from tokenizers import Tokenizer, models

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(p, -1.5 - i) for i, p in enumerate(pieces)]
    return Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))


ODD_PIECES = ["▁the", 'quo"te', "back\\slash", "tab\there", "▁∑", "[", "]", "],[", "1e-5", "\u2028"]


@pytest.mark.parametrize("pretty", [True, False])
def test_unigram_scan_gives_the_tokenizers_ids(tmp_path, pretty) -> None:
    """The Unigram vocabulary is scanned, not parsed: ids must be what the tokenizers library says."""
    tok = _unigram_tokenizer(ODD_PIECES)
    tok.add_special_tokens(["<extra>"])
    path = tmp_path / "tokenizer.json"
    path.write_text(tok.to_str(pretty=pretty), encoding="utf-8")
    wanted = [*ODD_PIECES, "<extra>", "<unk>", "absent"]
    _, scan = _read_tokenizer_json(path, dict.fromkeys(wanted))
    assert scan is not None and scan.size == len(ODD_PIECES) + 3  # the fast path was taken
    pieces = Pieces(path, wanted)
    assert {p: pieces.id(p) for p in wanted} == {p: tok.token_to_id(p) for p in wanted}
    assert pieces.unk == "<unk>" and pieces.size == tok.get_vocab_size(with_added_tokens=True)
    assert pieces.id("</s>") == 1 and pieces.split("back\\slash") == ["back\\slash"]  # loads the tokenizer


def test_unexpected_tokenizer_json_layout_is_parsed_whole(tmp_path) -> None:
    tok = _unigram_tokenizer(["▁a", "▁b"])
    data = json.loads(tok.to_str())
    data["model"]["vocab"] = [[p, s, "extra field"] for p, s in data["model"]["vocab"]]  # not [piece, score]
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert _read_tokenizer_json(path, {})[1] is None
    assert Pieces(path, ["▁b"]).id("▁b") == 4


def test_broken_tokenizer_json_names_the_file(tmp_path) -> None:
    path = tmp_path / "tokenizer.json"
    path.write_text('{"model": {"type": "Unigram", "vocab": [["a", 0.0], ', encoding="utf-8")
    with pytest.raises(BadInput, match=r"tokenizer\.json: not a readable tokenizer\.json"):
        Pieces(path, ["a"])


@pytest.mark.parametrize(
    "token,pieces,forms",
    [
        ("The", False, ["▁The", "The", "▁the", "the"]),
        ("The", True, ["The", "the"]),
        ("the", False, ["▁the", "the"]),
    ],
)
def test_candidate_forms(token, pieces, forms) -> None:
    assert candidate_forms(token, pieces=pieces, case_fallback=True) == forms
