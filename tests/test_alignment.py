"""align: reorder to a vocabulary, fill what is lacking, keep history; several tables."""

from __future__ import annotations

import numpy as np
import pytest

from embtool.core.errors import BadInput
from embtool.formats.alignment import align, fill_missing
from embtool.tables.table import load, save
from embtool.text.vocabfile import Vocabulary


def test_reorder_fill_and_history(make_table) -> None:
    t = make_table(
        np.arange(12.0, dtype=np.float32).reshape(4, 3), ["a", "b", "c", "d"], history=[{"op": "init"}]
    )
    v = Vocabulary(["d", "A", "zz", "b"], [4, 3, 2, 1], {"tokenizer": "spacy:en"})
    out, cov = align(t, v, missing="zero")
    assert out.tokens == ["d", "A", "zz", "b"]
    assert np.array_equal(out.vectors, [[9.0, 10, 11], [0, 1, 2], [0, 0, 0], [3, 4, 5]])
    assert out.missing == [2] and out.tokenizer == "spacy:en"
    assert [h["op"] for h in out.history] == ["init", "align"]
    assert (cov.found, cov.missing) == (3, 1) and cov.share == pytest.approx(0.8)
    strict, cov2 = align(t, v, missing="zero", case_fallback=False)
    assert strict.missing == [1, 2] and cov2.found == 2


def test_first_table_wins_and_missing_rows_carry_over(make_table) -> None:
    a = make_table(np.ones((2, 2), np.float32), ["x", "y"], missing=[1])
    b = make_table(np.full((2, 2), 2.0, np.float32), ["y", "z"])
    out, cov = align([a, b], Vocabulary(["z", "y", "x"]))
    assert np.array_equal(out.vectors, [[2.0, 2], [1, 1], [1, 1]])
    assert out.missing == [1] and (cov.found, cov.missing) == (2, 1)  # "y" was filled when a was made


@pytest.mark.parametrize("method", ["normal", "mean", "zero", "xavier"])
def test_fill_is_seeded(method) -> None:
    base = np.random.default_rng(0).standard_normal((6, 4), dtype=np.float32) * 3 + 1
    a, b = base.copy(), base.copy()
    fill_missing(a, [1, 4], method, seed=7)
    fill_missing(b, [1, 4], method, seed=7)
    assert np.array_equal(a, b) and np.array_equal(a[[0, 2, 3, 5]], base[[0, 2, 3, 5]])
    if method in ("normal", "xavier"):  # random: another seed, other rows
        assert not np.array_equal(fill_missing(base.copy(), [1, 4], method, seed=8), a)


def test_normal_fill_keeps_the_scale() -> None:
    v = np.random.default_rng(0).standard_normal((2000, 16), dtype=np.float32) * 11 + 2  # T5-like σ
    fill_missing(v, list(range(1000)), "normal", seed=1)
    filled = v[:1000]
    assert filled.std() == pytest.approx(11, rel=0.05) and filled.mean() == pytest.approx(2, abs=0.5)


@pytest.mark.parametrize(
    "case,message",
    [("dim", "dimension 3 does not match"), ("none", "none of the 2 vocabulary tokens"),
     ("method", "--missing 'ones': valid choices")],
)  # fmt: skip
def test_align_errors(make_table, case, message) -> None:
    a = make_table(np.ones((2, 2), np.float32), ["x", "y"])
    b = make_table(np.ones((2, 3), np.float32), ["x", "y"])
    with pytest.raises(BadInput, match=message):
        if case == "dim":
            align([a, b], Vocabulary(["x"]))
        elif case == "none":
            align(a, Vocabulary(["p", "q"]))
        else:
            align(a, Vocabulary(["x"]), missing="ones")


def test_cli_align_stdin_and_files(embtool, make_table, tmp_path, vocab_file) -> None:
    t = make_table(
        np.arange(6.0, dtype=np.float32).reshape(3, 2), ["cat", "the", "dog"], tokenizer="whitespace"
    )
    save(t, tmp_path / "t.safetensors")
    from embtool.tables.table import dumps

    for args, stdin in ((["-"], dumps(t)), ([str(tmp_path / "t.safetensors")], None)):
        out = tmp_path / "o.safetensors"
        r = embtool("align", *args, "--vocab", str(vocab_file), "--seed", "2", "-o", str(out), stdin=stdin)
        assert r.code == 0, r.stderr
        table = load(out)
        assert table.tokens == ["<pad>", "the", "cat", "sat", "mat"] and table.missing == [0, 3, 4]
        assert np.array_equal(table.vectors[1], [2.0, 3.0])
        assert "2 found, 0 composed, 3 missing of 5 tokens" in r.stderr


@pytest.mark.parametrize(
    "case,message",
    [("dim", "dimension 3 does not match"), ("vocab_empty_line", "empty token"),
     ("vocab_utf8", "not valid UTF-8"), ("missing", "--missing 'ones'")],
)  # fmt: skip
def test_cli_align_errors(embtool, make_table, tmp_path, case, message) -> None:
    save(make_table(np.ones((2, 2), np.float32), ["the", "cat"]), tmp_path / "a.safetensors")
    save(make_table(np.ones((2, 3), np.float32), ["the", "cat"]), tmp_path / "b.safetensors")
    vocab = tmp_path / "v.txt"
    vocab.write_text("the\ncat\n", encoding="utf-8")
    args = [str(tmp_path / "a.safetensors")]
    if case == "dim":
        args.append(str(tmp_path / "b.safetensors"))
    elif case == "vocab_empty_line":
        vocab.write_text("the\n\ncat\n", encoding="utf-8")
    elif case == "vocab_utf8":
        vocab.write_bytes(b"the\n\xc3\x28\n")
    else:
        args += ["--missing", "ones"]
    out = tmp_path / "o.safetensors"
    r = embtool("align", *args, "--vocab", str(vocab), "-o", str(out))
    assert r.code == 2 and r.stderr.startswith("embtool: error: ") and message in r.stderr, r.stderr
    assert not out.exists()


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_align_keeps_the_dtype_and_the_rows_exactly(make_table, dtype) -> None:
    t = make_table(
        np.random.default_rng(1).standard_normal((4, 3), dtype=np.float32), ["a", "b", "c", "d"], dtype=dtype
    )
    out, _ = align(t, Vocabulary(["c", "zz", "a"]), missing="normal", seed=0)
    assert out.dtype == dtype and np.array_equal(out.vectors[[0, 2]], t.vectors[[2, 0]])
    assert out.missing == [1] and np.isfinite(out.vectors).all()
