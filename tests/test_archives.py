"""Vector files read as downloaded: .gz and .zip streamed to gensim, the same rows as the plain file."""

from __future__ import annotations

import gzip
import zipfile

import numpy as np
import pytest

from embtool.errors import BadInput
from embtool.sources import archives
from embtool.sources.vectors import load_vector_file

WORDS = [f"w{i}" for i in range(50)]


@pytest.fixture
def files(tmp_path):
    rows = np.random.default_rng(0).standard_normal((len(WORDS), 6)).astype(np.float32)
    body = "".join(w + " " + " ".join(f"{v:.6f}" for v in r) + "\n" for w, r in zip(WORDS, rows))
    (tmp_path / "g.txt").write_text(body, encoding="utf-8")
    (tmp_path / "w.txt").write_text(f"{len(WORDS)} 6\n" + body, encoding="utf-8")
    for name in ("g.txt", "w.txt"):
        (tmp_path / f"{name}.gz").write_bytes(gzip.compress((tmp_path / name).read_bytes()))
        with zipfile.ZipFile(tmp_path / f"{name}.zip", "w", zipfile.ZIP_DEFLATED) as z:
            z.write(tmp_path / name, name)
    with zipfile.ZipFile(tmp_path / "both.zip", "w") as z:
        z.write(tmp_path / "g.txt", "glove/g.txt")
        z.write(tmp_path / "w.txt", "w.txt")
    return tmp_path


@pytest.mark.parametrize("kind, name", [("glove", "g.txt.gz"), ("glove", "g.txt.zip"), ("word2vec", "w.txt.gz"),
                                        ("word2vec", "w.txt.zip"), ("glove", "both.zip#glove/g.txt"),
                                        (None, "w.txt.zip"), (None, "g.txt.gz")])  # fmt: skip
def test_archives_give_the_plain_files_rows(files, kind, name) -> None:
    plain = load_vector_file("glove", str(files / "g.txt")).kv
    got = load_vector_file(kind, str(files / name))
    assert got.kv.index_to_key == WORDS
    np.testing.assert_array_equal(got.kv.vectors, plain.vectors)


def test_progress_hears_the_bytes(files, monkeypatch) -> None:
    monkeypatch.setattr(archives, "PROGRESS_BYTES", 0)  # stream the plain file too
    heard: list[tuple[int, int]] = []
    vf = load_vector_file("word2vec", str(files / "w.txt"), progress=lambda d, t: heard.append((d, t)))
    assert len(vf.kv) == len(WORDS)
    size = (files / "w.txt").stat().st_size
    assert heard[-1] == (size, size) and all(t == size for _, t in heard)


@pytest.mark.parametrize("name, message", [("both.zip", r"holds 2 files \(glove/g.txt, w.txt\); name one"),
                                           ("g.txt.zip#nope.txt", "no member 'nope.txt'")])  # fmt: skip
def test_archive_members_are_named(files, name, message) -> None:
    with pytest.raises(BadInput, match=message):
        load_vector_file("glove", str(files / name))


def test_broken_content_in_an_archive_is_bad_input_not_a_hang(tmp_path) -> None:
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as z:
        z.writestr("bad.txt", "3 4\na 1 2 3 4\nb 1 2\n")  # a short row, and a row missing
    with pytest.raises(BadInput, match="not a readable word2vec vector file"):
        load_vector_file("word2vec", str(tmp_path / "bad.zip"))
    (tmp_path / "fake.zip").write_bytes(b"not a zip")
    with pytest.raises(BadInput, match="not a readable .zip archive"):
        load_vector_file("glove", str(tmp_path / "fake.zip"))


def test_cli_extract_from_a_zip(cli, files, tmp_path) -> None:
    (tmp_path / "v.txt").write_text("w1\nw2\nzebra\n", encoding="utf-8")
    r = cli(
        "extract",
        f"glove:{files / 'g.txt.zip'}",
        "--vocab",
        str(tmp_path / "v.txt"),
        "-o",
        str(tmp_path / "t"),
    )
    assert r.code == 0 and "2 found, 0 composed, 1 missing" in r.stderr
