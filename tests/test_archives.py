"""Vector files read as downloaded: .gz and .zip streamed to gensim, the same rows as the plain file."""

from __future__ import annotations

import gzip
import zipfile

import numpy as np
import pytest

from embtool.core.errors import BadInput
from embtool.formats.sources import archives
from embtool.formats.sources.vectors import load_vector_file

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


# ----------------------------------------------------------------------------- damaged archives


def _flip_a_byte(archive, member: str) -> None:
    """Flip one bit in the middle of ``member``'s compressed data (its headers stay whole). A stored
    member's byte is a digit's, which stays a digit: the text still parses, only the CRC tells."""
    import struct

    with zipfile.ZipFile(archive) as z:
        info = z.getinfo(member)
    data = bytearray(archive.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len  # the local header, then the data
    at = start + info.compress_size // 2
    while info.compress_type == zipfile.ZIP_STORED and not chr(data[at]).isdigit():
        at += 1
    data[at] ^= 0x01
    archive.write_bytes(bytes(data))


def _vector_text(n: int, header: bool) -> str:
    rows = np.random.default_rng(1).standard_normal((n, 10))
    body = "".join(f"v{i} " + " ".join(f"{x:.6f}" for x in r) + "\n" for i, r in enumerate(rows))
    return (f"{n} 10\n" if header else "") + body


STORED, DEFLATED = zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED
# archives._CHUNK: the pipe's thread reads the member at once, or in parts
ONE_READ, MANY_READS = 1 << 20, 4096


# small: read whole by the format sniffing; large: by the counting pass (glove) or the pipe's thread (word2vec)
@pytest.mark.parametrize(
    ("kind", "n", "method", "chunk"),
    [("glove", 40, STORED, ONE_READ), ("glove", 40, DEFLATED, ONE_READ),
     ("glove", 3000, STORED, ONE_READ), ("glove", 3000, DEFLATED, ONE_READ),
     ("word2vec", 3000, STORED, ONE_READ), ("word2vec", 3000, DEFLATED, ONE_READ),
     ("word2vec", 3000, STORED, MANY_READS)],
    ids=["small-stored", "small-deflated", "glove-stored", "glove-deflated", "word2vec-stored",
         "word2vec-deflated", "word2vec-stored-in-parts"],
)  # fmt: skip
def test_a_member_with_a_bad_crc_is_one_line_bad_input(tmp_path, monkeypatch, kind, n, method, chunk) -> None:
    """Issue: a damaged member crashed with zipfile.BadZipFile (or zlib.error), or read as a short file.
    In parts: the pipe's thread has handed gensim most rows when the bad CRC shows at the end."""
    monkeypatch.setattr(archives, "_CHUNK", chunk)
    archive = tmp_path / "vectors.zip"
    with zipfile.ZipFile(archive, "w", method) as z:
        z.writestr("d/vecs.txt", _vector_text(n, header=kind == "word2vec"))
    _flip_a_byte(archive, "d/vecs.txt")
    with pytest.raises(BadInput) as refused:
        load_vector_file(kind, f"{archive}#d/vecs.txt")
    message = str(refused.value)
    assert message.startswith(f"{archive}#d/vecs.txt: damaged in the archive (") and "\n" not in message
    assert message.endswith("; download it again")


def test_a_damaged_gz_file_is_one_line_bad_input(tmp_path) -> None:
    path = tmp_path / "vectors.txt.gz"
    data = bytearray(gzip.compress(_vector_text(3000, header=True).encode()))
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BadInput, match=r"vectors.txt.gz: damaged \(.+\); download it again$"):
        load_vector_file("word2vec", str(path))
    path.write_bytes(gzip.compress(_vector_text(3000, header=True).encode())[:-5000])  # cut short
    with pytest.raises(BadInput, match=r"vectors.txt.gz: damaged \(.+\); download it again$"):
        load_vector_file("word2vec", str(path))


@pytest.mark.parametrize("spec", ["glove:{zip}#d/vecs.txt", "{zip}#d/vecs.txt"], ids=["glove", "sniffed"])
def test_cli_extract_from_a_damaged_member_is_exit_2(cli, tmp_path, spec) -> None:
    archive = tmp_path / "vectors.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("d/vecs.txt", _vector_text(3000, header=False))
    _flip_a_byte(archive, "d/vecs.txt")
    (tmp_path / "v.txt").write_text("v1\nv2\n", encoding="utf-8")
    r = cli(
        "extract", spec.format(zip=archive), "--vocab", str(tmp_path / "v.txt"), "-o", str(tmp_path / "t")
    )
    assert r.code == 2 and not (tmp_path / "t").exists()
    assert r.stderr.startswith(f"embtool: error: {archive}#d/vecs.txt: damaged in the archive (")
    assert len(r.stderr.splitlines()) == 1, r.stderr
