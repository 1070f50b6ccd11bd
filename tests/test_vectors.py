"""Word-vector files (GloVe, word2vec text/binary, fastText): rows equal gensim's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embtool.core.errors import BadInput
from embtool.formats.sources import extract
from embtool.text.vocabfile import Vocabulary


def _gensim_data(name: str) -> str:
    from gensim.test.utils import datapath

    return datapath(name)


def _reference(name: str, tmp_path: Path):
    """The file's path for embtool and gensim's own KeyedVectors of it."""
    from gensim.models import KeyedVectors
    from gensim.models.fasttext import load_facebook_vectors

    if name == "w2v.bin":  # a word2vec binary file, written here from gensim's toy model
        kv = KeyedVectors.load_word2vec_format(_gensim_data("toy-model.vec"))
        path = str(tmp_path / name)
        kv.save_word2vec_format(path, binary=True)
        return path, kv
    path = _gensim_data(name)
    if name == "toy-model.bin":  # a Facebook fastText model
        return path, load_facebook_vectors(path)
    return path, KeyedVectors.load_word2vec_format(path, no_header=name == "test_glove.txt")


@pytest.mark.parametrize(
    "prefix,name",
    [("glove:", "test_glove.txt"), ("", "test_glove.txt"), ("word2vec:", "toy-model.vec"), ("", "toy-model.vec"),
     ("fasttext:", "toy-model.vec"), ("word2vec:", "w2v.bin"), ("", "w2v.bin"), ("fasttext:", "toy-model.bin"),
     ("", "toy-model.bin")],
)  # fmt: skip
def test_vector_files_equal_gensim(prefix, name, tmp_path) -> None:
    path, kv = _reference(name, tmp_path)
    words = list(kv.index_to_key[:5])
    vocab = Vocabulary(["<unk>", *words, words[0].upper() + "QQ", words[1].upper()])
    table, cov = extract(prefix + path, vocab, seed=1, compose="none")
    assert np.array_equal(table.vectors[1:6], kv.vectors[:5])
    assert np.array_equal(table.vectors[7], kv.vectors[1])  # lower-cased fallback
    assert table.missing == [0, 6] and (cov.found, cov.missing) == (6, 2)
    assert table.tokenizer == "whitespace" and table.source.endswith(name)
    _, no_case = extract(prefix + path, vocab, case_fallback=False, compose="none")
    assert no_case.found == 5 or words[1].upper() == words[1]


def test_fasttext_bin_composes_unseen_words(tmp_path) -> None:
    from gensim.models import FastText
    from gensim.models.fasttext import save_facebook_model

    sentences = [["the", "cat", "sat", "on", "the", "mat"], ["a", "dog", "ran", "in", "the", "park"]] * 20
    model = FastText(vector_size=8, window=2, min_count=1, epochs=2, seed=1, workers=1, bucket=1000)
    model.build_vocab(sentences)
    model.train(sentences, total_examples=len(sentences), epochs=2)
    path = tmp_path / "ft.bin"
    save_facebook_model(model, str(path))
    vocab = Vocabulary(["cat", "cats", "dogs"])
    table, cov = extract(str(path), vocab)
    assert (cov.found, cov.composed, cov.missing) == (1, 2, 0)
    np.testing.assert_allclose(table.vectors[1], model.wv["cats"], atol=1e-6)
    _, no = extract(f"fasttext:{path}", vocab, compose="none")
    assert (no.found, no.composed, no.missing) == (1, 0, 2)


@pytest.mark.parametrize(
    "source,message",
    [("word2vec:test_glove.txt", "no 'count dim' header"), ("glove:toy-model.vec", "use word2vec:"),
     ("word2vec:toy-model.bin", "use fasttext:"), ("glove:toy-data.txt", "not a readable glove")],
)  # fmt: skip
def test_vector_file_format_errors(source, message) -> None:
    prefix, name = source.split(":")
    with pytest.raises(BadInput, match=message):
        extract(f"{prefix}:{_gensim_data(name)}", Vocabulary(["the"]))


@pytest.mark.parametrize(
    "source,content,message",
    [("glove:empty.txt", b"", "the vector file is empty"), ("glove:blank.txt", b"\n \n", "the vector file is empty"),
     ("word2vec:header.txt", b"3 4\n", "has a 'count dim' header line but no vectors"),
     ("detected:header.txt", b"3 4\n", "has a 'count dim' header line but no vectors")],
    ids=["empty", "blank-lines", "header-only", "header-only-detected"],
)  # fmt: skip
def test_vector_file_without_vectors_is_named(tmp_path, source, content, message) -> None:
    """Issue 14.6: an empty or header-only vector file is a named error, not a TypeError."""
    prefix, name = source.split(":")
    (tmp_path / name).write_bytes(content)
    spec = str(tmp_path / name) if prefix == "detected" else f"{prefix}:{tmp_path / name}"
    with pytest.raises(BadInput, match=f"{name}: {message}"):
        extract(spec, Vocabulary(["the"]))
