"""vocab: counting, the min-freq cut, specials first, the header, and the real Multi30k vocabulary."""

from __future__ import annotations

from collections import Counter

import pytest

from embtool.core.errors import BadInput
from embtool.text.vocab import build_vocab, count_tokens, parse_specials
from embtool.text.vocabfile import read_vocab


def test_build_vocab_order_and_cut() -> None:
    counts = count_tokens([["b", "a", "c"], ["a", "b"], ["a", "d", "<pad>"]])
    v = build_vocab(counts, min_freq=2, specials=("<unk>", "<pad>"), info={"tokenizer": "whitespace"})
    assert v.tokens == ["<unk>", "<pad>", "a", "b"]  # specials first, then by count; ties by token
    assert v.counts == [0, 1, 3, 2]
    assert build_vocab(counts, 1, (), max_size=3).tokens == ["a", "b", "<pad>"]


@pytest.mark.parametrize(
    "kwargs,message",
    [({"min_freq": 0}, "--min-freq must be at least 1"), ({"min_freq": 9, "specials": ()}, "lower --min-freq"),
     ({"max_size": -1}, "--max-size must not be negative")],
)  # fmt: skip
def test_build_vocab_errors(kwargs, message) -> None:
    with pytest.raises(BadInput, match=message):
        build_vocab(Counter({"a": 1}), **kwargs)


@pytest.mark.parametrize(
    "text,specials", [("<unk>,<pad>", ("<unk>", "<pad>")), ("", ()), (" <s> , </s> ", ("<s>", "</s>"))]
)
def test_parse_specials(text, specials) -> None:
    assert parse_specials(text) == specials


@pytest.mark.parametrize("text", ["<a>,,<b>", "<a> <b>", "<a>,<a>"])
def test_bad_specials(text) -> None:
    with pytest.raises(BadInput, match="--specials"):
        parse_specials(text)


def test_cli_vocab_text_files(embtool, tmp_path) -> None:
    (tmp_path / "a.txt").write_text("The cat sat\nthe cat\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("THE end\n", encoding="utf-8")
    out = tmp_path / "v.txt"
    r = embtool("vocab", "--text", str(tmp_path / "a.txt"), "--text", str(tmp_path / "b.txt"), "--lower",
                "--min-freq", "2", "--specials", "<pad>", "-o", str(out))  # fmt: skip
    assert r.code == 0, r.stderr
    assert out.read_text(encoding="utf-8").splitlines() == [
        "#embtool tokenizer=whitespace+lower min_freq=2 specials=<pad>", "<pad>\t0", "the\t3", "cat\t2"]  # fmt: skip
    assert "3 tokens (1 specials)" in r.stderr


def test_cli_vocab_to_stdout(embtool, tmp_path) -> None:
    (tmp_path / "a.txt").write_text("x y x\n", encoding="utf-8")
    r = embtool("vocab", "--text", str(tmp_path / "a.txt"), "--specials", "")
    assert r.code == 0 and r.text.splitlines()[1:] == ["x\t2", "y\t1"]


@pytest.mark.parametrize(
    "args,message",
    [
        ([], "give a TASK or --text FILE"),
        (["multi30k", "--text", "{a}"], "give a TASK or --text FILE"),
        (["multi30k", "--data-dir", "{tmp}", "--side", "src"], "no train split for multi30k"),
        (["multi30k", "--data-dir", "{tmp}/nope"], "no such folder"),
        (["--text", "{a}", "--tokenizer", "bpe"], "--tokenizer 'bpe'"),
        (["--text", "{tmp}/nope.txt"], "nope.txt: no such file"),
        (["--text", "{a}", "--min-freq", "0"], "--min-freq must be at least 1"),
    ],
)
def test_cli_vocab_errors(embtool, tmp_path, args, message) -> None:
    (tmp_path / "a.txt").write_text("x\n", encoding="utf-8")
    out = tmp_path / "v.txt"
    r = embtool("vocab", *[a.format(tmp=tmp_path, a=tmp_path / "a.txt") for a in args], "-o", str(out))
    assert r.code == 2, r.stderr
    assert r.stderr.startswith("embtool: error: ") and message in r.stderr
    assert not out.exists()


def test_cli_vocab_unreachable_hub(embtool, tmp_path) -> None:
    r = embtool("vocab", "sst2", "-o", str(tmp_path / "v.txt"))  # conftest: offline, no EMBTOOL_DATA_DIR
    if "EMBTOOL_DATA_DIR" in __import__("os").environ:
        pytest.skip("EMBTOOL_DATA_DIR is set")
    assert r.code == 1 and "--data-dir DIR or EMBTOOL_DATA_DIR=DIR" in r.stderr


@pytest.mark.slow  # spaCy over the 29,000 real training sentences: about 8 s
def test_cli_vocab_multi30k_german_spacy(embtool, shared_data, tmp_path) -> None:
    out = tmp_path / "de.vocab"
    r = embtool("vocab", "multi30k", "--data-dir", str(shared_data / "multi30k"), "--side", "src",
                "--tokenizer", "spacy:de", "--min-freq", "2", "-o", str(out))  # fmt: skip
    assert r.code == 0, r.stderr
    v = read_vocab(out)
    # 8,008 German tokens seen at least twice in the 29,000 training sentences, plus 4 specials
    assert len(v) == 8012
    assert v.tokens[:5] == ["<unk>", "<pad>", "<bos>", "<eos>", "."]
    assert v.info == {"tokenizer": "spacy:de", "min_freq": "2", "task": "multi30k", "split": "train",
                      "side": "src", "specials": "<unk>,<pad>,<bos>,<eos>"}  # fmt: skip
    assert v.counts is not None and min(v.counts[4:]) == 2


@pytest.mark.slow
@pytest.mark.parametrize(("side", "size"), [("tgt", 5892), ("src", 7851)])
def test_multi30k_defaults_to_the_papers_lower_cased_vocabularies(tmp_path, shared_data, side, size) -> None:
    """No flag: the registry's lower-cased spaCy tokens, min-freq 2 — the paper's 5,893 English
    tokens less spaCy's one whitespace-only token, and its 7.8k German ones."""
    from conftest import run_in_process

    out = tmp_path / f"{side}.vocab"
    r = run_in_process(
        "vocab", "multi30k", "--data-dir", str(shared_data / "multi30k"), "--side", side, "-o", str(out)
    )
    assert r.code == 0, r.stderr
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith(f"#embtool tokenizer=spacy:{'en' if side == 'tgt' else 'de'}+lower min_freq=2")
    assert len(lines) - 1 == size


def _tiny_multi30k(tmp_path) -> str:
    folder = tmp_path / "multi30k"
    folder.mkdir()
    (folder / "train.de").write_text("ein hund\nein haus\n", encoding="utf-8")
    (folder / "train.en").write_text("a dog\na house ein\n", encoding="utf-8")
    return str(folder)


def test_cli_vocab_side_both_is_one_joint_list_with_summed_counts(embtool, tmp_path) -> None:
    """Issue 15: one vocabulary for both sides (the table of `train --emb`), counts summed."""
    data = _tiny_multi30k(tmp_path)
    out = tmp_path / "both.vocab"
    r = embtool("vocab", "multi30k", "--data-dir", data, "--side", "both", "--tokenizer", "whitespace",
                "--min-freq", "1", "--specials", "<pad>", "-o", str(out))  # fmt: skip
    assert r.code == 0, r.stderr
    v = read_vocab(out)
    counts = dict(zip(v.tokens, v.counts or [], strict=True))
    assert counts == {"<pad>": 0, "ein": 3, "a": 2, "dog": 1, "haus": 1, "house": 1, "hund": 1}
    assert v.info["side"] == "both" and v.tokenizer == "whitespace"


@pytest.mark.parametrize(
    ("args", "message"),
    [([], "--side both: the sides' tokenizers differ (spacy:de+lower, spacy:en+lower); give one --tokenizer"),
     (["--side", "left"], "--side 'left': valid choices: src, tgt, both")],
    ids=["both-without-tokenizer", "unknown-side"],
)  # fmt: skip
def test_cli_vocab_side_errors(embtool, tmp_path, args, message) -> None:
    args = args or ["--side", "both"]
    out = tmp_path / "v.txt"
    r = embtool("vocab", "multi30k", "--data-dir", _tiny_multi30k(tmp_path), *args, "-o", str(out))
    assert r.code == 2 and r.stderr.startswith("embtool: error: ") and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()
