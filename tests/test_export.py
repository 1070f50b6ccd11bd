"""export: round trips through gensim (text and binary), fairseq's header rule, npy, refused tokens."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from embtool.core.errors import BadInput, UsageError
from embtool.formats.export import FORMATS, export, format_rows, tokens_for
from embtool.tables.table import EmbeddingTable, save


@pytest.fixture
def table() -> EmbeddingTable:
    rng = np.random.default_rng(0)
    vectors = (rng.standard_normal((6, 5)) * 0.3).astype(np.float32)  # (6, 5)
    vectors[2, 0] = 1e-7  # a tiny value: printed with an exponent
    return EmbeddingTable(vectors, ["the", "Cat", "ünï", "<pad>", "1.5", "##s"], origin="t.safetensors")


@pytest.mark.parametrize("fmt, binary", [("word2vec", False), ("word2vec-binary", True), ("fairseq", False)])
def test_gensim_reads_back_equal_rows(table, tmp_path, fmt, binary) -> None:
    from gensim.models import KeyedVectors

    path = tmp_path / "t.vec"
    export(table, fmt, str(path))
    kv = KeyedVectors.load_word2vec_format(str(path), binary=binary)
    assert kv.index_to_key == table.tokens
    np.testing.assert_array_equal(kv.vectors, table.vectors)  # bit for bit: 9 digits round-trip float32


def test_glove_has_no_header_and_gensim_reads_it(table, tmp_path) -> None:
    from gensim.models import KeyedVectors

    path = tmp_path / "t.txt"
    export(table, "glove", str(path))
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.split(" ")[0] == "the" and len(first.split(" ")) == 6
    kv = KeyedVectors.load_word2vec_format(str(path), binary=False, no_header=True)
    np.testing.assert_array_equal(kv.vectors, table.vectors)


def _fairseq_parse_embedding(path) -> dict[str, list[float]]:
    """fairseq.utils.parse_embedding, as fairseq reads --encoder-embed-path: the first line is skipped."""
    out = {}
    with open(path, encoding="utf-8") as f:
        next(f)
        for line in f:
            pieces = line.rstrip().split(" ")
            out[pieces[0]] = [float(w) for w in pieces[1:]]
    return out


@pytest.mark.parametrize("fmt, kept", [("fairseq", 6), ("glove", 5)])
def test_fairseq_header_rule(table, tmp_path, fmt, kept) -> None:
    # fairseq keeps every row of its own format; a GloVe file given to it loses the first vector
    path = tmp_path / "t.txt"
    export(table, fmt, str(path))
    got = _fairseq_parse_embedding(path)
    assert len(got) == kept
    if fmt == "fairseq":
        np.testing.assert_array_equal(np.array([got[t] for t in table.tokens], np.float32), table.vectors)


def test_opennmt_reads_glove_text_and_prints_flags(table, tmp_path) -> None:
    path = tmp_path / "t.onmt.txt"
    done = export(table, "opennmt", str(path))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 6 and lines[1].split(" ")[0] == "Cat"  # GloVe text: no header
    text = "\n".join(done.flags())
    assert (
        f"src_embeddings: {path}" in text
        and 'embeddings_type: "GloVe"' in text
        and "word_vec_size: 5" in text
    )


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_npy_and_tokens_file(table, tmp_path, dtype) -> None:
    t = EmbeddingTable(table.vectors, table.tokens, dtype=dtype)
    done = export(t, "npy", str(tmp_path / "e.npy"))
    assert done.files == [str(tmp_path / "e.npy"), str(tmp_path / "e.tokens.txt")]
    got = np.load(tmp_path / "e.npy")
    assert got.dtype == (np.float16 if dtype == "float16" else np.float32)
    np.testing.assert_array_equal(got.astype(np.float32), t.vectors.astype(np.float32))
    assert (tmp_path / "e.tokens.txt").read_text(encoding="utf-8").splitlines() == t.tokens


def test_pending_map_streams_the_same_values(table, tmp_path) -> None:
    from embtool.tables.transforms import standardize

    x = standardize(table)  # pending Affine: export computes it block by block
    export(x, "glove", str(tmp_path / "a.txt"))
    export(EmbeddingTable(x.vectors, x.tokens), "glove", str(tmp_path / "b.txt"))
    assert (tmp_path / "a.txt").read_bytes() == (tmp_path / "b.txt").read_bytes()


@pytest.mark.parametrize("token, fmt", [("new york", "word2vec"), ("a\tb", "glove"), ("x\ny", "npy"),
                                        ("two words", "word2vec-binary")])  # fmt: skip
def test_unholdable_token_is_named_and_nothing_written(tmp_path, token, fmt) -> None:
    t = EmbeddingTable(np.ones((2, 3), np.float32), ["ok", token], origin="t.safetensors")
    out = tmp_path / "out"
    with pytest.raises(BadInput, match=r"row 1 token .* cannot be written as " + fmt):
        export(t, fmt, str(out))
    assert list(tmp_path.iterdir()) == []


def test_space_as_escapes_and_checks_collisions(tmp_path) -> None:
    t = EmbeddingTable(np.ones((3, 2), np.float32), ["new york", "a", "b c"])
    assert tokens_for(t, "word2vec", "_") == (["new_york", "a", "b_c"], 2)
    assert tokens_for(t, "npy") == (["new york", "a", "b c"], 0)  # npy's token file holds spaces
    clash = EmbeddingTable(np.ones((2, 2), np.float32), ["a b", "a_b"])
    with pytest.raises(BadInput, match="makes two tokens the same"):
        tokens_for(clash, "glove", "_")


def test_bad_format_and_options(table) -> None:
    with pytest.raises(BadInput, match="valid choices: " + ", ".join(FORMATS)):
        export(table, "fasttext", "x")
    with pytest.raises(UsageError, match="--tokens FILE"):
        export(table, "npy", "-")
    with pytest.raises(UsageError, match="npy only"):
        export(table, "glove", "x", tokens_out="t")


def test_cli_pipes_and_errors(cli, table, tmp_path) -> None:
    save(table, tmp_path / "t.safetensors")
    data = (tmp_path / "t.safetensors").read_bytes()
    r = cli("export", "--format", "word2vec", stdin=data)
    assert r.code == 0, r.stderr
    assert r.text.splitlines()[0] == "6 5" and r.text.splitlines()[1].startswith("the ")
    r = cli("export", str(tmp_path / "t.safetensors"), "--format", "opennmt", "-o", str(tmp_path / "o.txt"))
    assert r.code == 0 and "word_vec_size: 5" in r.stderr
    r = cli("export", str(tmp_path / "t.safetensors"), "--format", "csv")
    assert r.code == 2 and r.stderr.startswith("embtool: error: --format 'csv' is not known")
    bad = EmbeddingTable(np.ones((1, 2), np.float32), ["a b"])
    save(bad, tmp_path / "b.safetensors")
    r = cli("export", str(tmp_path / "b.safetensors"), "-f", "glove", "-o", str(tmp_path / "b.txt"))
    assert r.code == 2 and "'a b' cannot be written as glove" in r.stderr and len(r.stderr.splitlines()) == 1
    assert not (tmp_path / "b.txt").exists()


# every character str.splitlines() ends a line at (\r\n is \r then \n): readers that split lines so
LINE_BREAKS = ["\n", "\r", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


def test_line_breaks_are_what_splitlines_splits_on() -> None:
    assert all(f"a{c}b".splitlines() == ["a", "b"] for c in LINE_BREAKS)
    assert sorted(
        c for c in map(chr, range(sys.maxunicode + 1)) if len(f"a{c}b".splitlines()) == 2
    ) == sorted(LINE_BREAKS)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("char", LINE_BREAKS)
def test_line_break_token_is_refused_like_whitespace(tmp_path, fmt, char) -> None:
    t = EmbeddingTable(np.ones((2, 3), np.float32), ["ok", f"a{char}b"], origin="t.safetensors")
    with pytest.raises(BadInput, match=r"^t\.safetensors: row 1 token .* cannot be written as " + fmt):
        export(t, fmt, str(tmp_path / "out"))
    assert list(tmp_path.iterdir()) == []
    assert tokens_for(t, fmt, "_") == (["ok", "a_b"], 1)


def test_npy_tokens_file_keeps_one_line_per_row_with_space_as(tmp_path) -> None:
    t = EmbeddingTable(np.ones((3, 2), np.float32), ["a b", "c\u2028d", "e\x85f"])
    done = export(t, "npy", str(tmp_path / "e.npy"), space_as="▁")
    assert done.renamed == 2  # the space stays: the tokens file is split on lines only
    assert (tmp_path / "e.tokens.txt").read_text(encoding="utf-8").splitlines() == ["a b", "c▁d", "e▁f"]


def test_a_lone_surrogate_token_never_reaches_an_export(tmp_path) -> None:
    """A table cannot hold one (table.py refuses it by row), so no format meets it half-written."""
    with pytest.raises(BadInput, match=r"^t\.safetensors: token 'caf\\udc80' at row 2 is a lone surrogate"):
        EmbeddingTable(np.ones((3, 2), np.float32), ["ok", "fine", "caf\udc80"], origin="t.safetensors")


def _save_with_ascii_tokens(table: EmbeddingTable, path, tokens: list[str] | None = None) -> None:
    """A table file whose tokens JSON escapes non-ASCII (\\udc80), as another writer may store it."""
    import json

    from safetensors.numpy import save_file

    from embtool.tables.table import KEY_TOKENS, TENSOR_NAME

    meta = {**table.metadata(), KEY_TOKENS: json.dumps(table.tokens if tokens is None else tokens)}
    save_file({TENSOR_NAME: table.vectors}, str(path), metadata=meta)


@pytest.mark.parametrize("fmt, token", [("word2vec", "caf\udc80"), ("glove", "caf\udc80"), ("npy", "a\u2028b"),
                                        ("word2vec-binary", "caf\udc80")])  # fmt: skip
def test_cli_refuses_unwritable_token_in_one_line(cli, tmp_path, fmt, token) -> None:
    src = tmp_path / "t.safetensors"
    _save_with_ascii_tokens(EmbeddingTable(np.ones((2, 3), np.float32), ["ok", "x"]), src, ["ok", token])
    out = tmp_path / "out" / "e.txt"
    out.parent.mkdir()
    r = cli("export", str(src), "-f", fmt, "-o", str(out))
    assert r.code == 2, r.stderr
    said = "row 1 token " if fmt == "npy" else "token 'caf\\udc80' at row 1 is a lone surrogate"
    assert r.stderr.startswith(f"embtool: error: {src}: {said}") and len(r.stderr.splitlines()) == 1
    assert list(out.parent.iterdir()) == []


def _awkward_float32() -> np.ndarray:
    """Values where %g's choices turn: powers of ten and their neighbours, the switch to e-notation,
    rounding that carries into the exponent, ties, subnormals, the extremes; then random bit patterns."""
    edges = [0.0, -0.0, 1.0, -1.0, 0.5, 100.0, 1e8, 99999999.5, 999999999.0, 1e9, 123456789.0, 1234567890.0,
             1e-4, 9.9999999e-5, 1e-5, 0.00012345, 9.9999999, 9.99999999, 3.4028235e38, -3.4028235e38, 1e-45,
             1.17549435e-38, 1e-7, 0.3, 2.5, 0.125, 16777216.0, 16777217.0, 1e38, 1e-38]  # fmt: skip
    powers = np.array([10.0**k for k in range(-45, 39)], np.float32)
    near = np.concatenate(
        [np.nextafter(powers, np.float32(0)), powers, np.nextafter(powers, np.float32(np.inf))]
    )
    bits = (
        np.random.default_rng(1)
        .integers(0, 2**32, 300_000, dtype=np.uint64)
        .astype(np.uint32)
        .view(np.float32)
    )
    normal = np.random.default_rng(2).standard_normal(50_000).astype(np.float32) * np.float32(0.37)
    v = np.concatenate([np.array(edges, np.float32), near, -near, bits[np.isfinite(bits)], normal])
    return v[np.isfinite(v)]


@pytest.mark.parametrize("digits", range(1, 10))
def test_format_rows_prints_what_percent_g_prints(digits) -> None:
    v = _awkward_float32()
    v = v[: len(v) // 10 * 10].reshape(-1, 10)  # (B, 10)
    got = format_rows(v, digits)
    want = [("".join(f" %.{digits}g" % x for x in row)).encode() for row in v.tolist()]
    assert len(got) == len(want)
    bad = [(g, w) for g, w in zip(got, want) if g != w]
    assert bad == [], bad[:3]


@pytest.mark.parametrize("digits", [9, 12, 17])
def test_format_rows_with_nonfinite_values_and_many_digits(digits) -> None:
    v = np.array([[np.nan, np.inf, -np.inf, 0.1], [1.5, -0.0, 1e-7, 3.0]], np.float32)  # (2, 4)
    want = [("".join(f" %.{digits}g" % x for x in row)).encode() for row in v.tolist()]
    assert format_rows(v, digits) == want


def test_text_export_of_many_blocks_reads_back_bit_for_bit(tmp_path) -> None:
    from gensim.models import KeyedVectors

    v = _awkward_float32()[:300_000].reshape(-1, 30)  # (10000, 30): over one block (2¹⁸ values)
    t = EmbeddingTable(v, [f"w{i}" for i in range(len(v))])
    export(t, "word2vec", str(tmp_path / "t.vec"))
    kv = KeyedVectors.load_word2vec_format(str(tmp_path / "t.vec"), binary=False)
    assert kv.index_to_key == t.tokens
    np.testing.assert_array_equal(kv.vectors, v)


@pytest.mark.parametrize(
    "fmt, token, said", [("glove", "a b", "whitespace"), ("npy", "a\u2028b", "line breaks")]
)
def test_cli_says_what_space_as_replaced(cli, tmp_path, fmt, token, said) -> None:
    _save_with_ascii_tokens(
        EmbeddingTable(np.ones((2, 3), np.float32), ["ok", token]), tmp_path / "t.safetensors"
    )
    r = cli(
        "export", str(tmp_path / "t.safetensors"), "-f", fmt, "-o", str(tmp_path / "e"), "--space-as", "_"
    )
    assert r.code == 0 and f"1 token(s) with {said} replaced" in r.stderr, r.stderr


def test_npy_and_its_tokens_file_may_not_be_one_file(tmp_path, cli) -> None:
    from embtool.tables.table import EmbeddingTable, save

    save(EmbeddingTable(np.ones((2, 3), np.float32), ["a", "b"]), tmp_path / "t.safetensors")
    (tmp_path / "o.npy").write_bytes(b"keep")
    (tmp_path / "link").symlink_to(tmp_path / "o.npy")
    for tokens in ("o.npy", "link"):
        r = cli("export", str(tmp_path / "t.safetensors"), "-f", "npy", "-o", str(tmp_path / "o.npy"),
                "--tokens", str(tmp_path / tokens))  # fmt: skip
        assert r.code == 2 and "is the output file -o" in r.stderr and len(r.stderr.splitlines()) == 1
        assert (tmp_path / "o.npy").read_bytes() == b"keep"


# ----------------------------------------------------------------------------- TensorBoard's projector


def projector_served(logdir) -> tuple[list[str], dict]:
    """What TensorBoard's projector plugin serves the browser for ``logdir``: its runs, and per
    embedding of the run "." its config, tensor (float32, N × D) and metadata lines."""
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.projector.projector_plugin import ProjectorPlugin
    from werkzeug.test import Client
    from werkzeug.wrappers import Response

    mux = EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    apps = ProjectorPlugin(base_plugin.TBContext(logdir=str(logdir), multiplexer=mux)).get_plugin_apps()

    def get(route: str, query: str = "") -> bytes:
        response = Client(apps[route], Response).get(route + query)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_data()

    runs = json.loads(get("/runs"))
    served = {}
    for emb in json.loads(get("/info", "?run=.")).get("embeddings", []):
        name = emb["tensorName"]
        shape = [int(x) for x in emb["tensorShape"]]
        tensor = np.frombuffer(get("/tensor", f"?run=.&name={name}"), np.float32).reshape(shape)
        labels = get("/metadata", f"?run=.&name={name}").decode("utf-8").split("\n")
        served[name] = {"tensor": tensor, "labels": labels[: shape[0]], "config": emb}
    return runs, served


def test_tensorboard_projector_serves_the_rows_and_tokens(table, tmp_path) -> None:
    done = export(table, "tensorboard", str(tmp_path / "proj"))
    assert done.files == [
        str(tmp_path / "proj" / f) for f in ("tensors.tsv", "metadata.tsv", "projector_config.pbtxt")
    ]
    runs, served = projector_served(tmp_path / "proj")
    assert runs == ["."] and list(served) == ["t"]  # named by the table's file
    np.testing.assert_array_equal(served["t"]["tensor"], table.vectors)  # bit for bit: 9 digits
    assert served["t"]["labels"] == table.tokens  # one column: no header row
    assert "tensorboard --logdir" in done.flags()[0]


@pytest.mark.parametrize(
    "token, ok", [("new york", True), ("a\tb", False), ("x\ny", False), ("r\rs", False), ("ünï ä", True)]
)
def test_tensorboard_holds_spaces_but_not_tabs_or_line_breaks(tmp_path, token, ok) -> None:
    t = EmbeddingTable(np.ones((2, 3), np.float32), ["ok", token], origin="t.safetensors")
    out = tmp_path / "proj"
    if ok:
        export(t, "tensorboard", str(out))
        assert (out / "metadata.tsv").read_text(encoding="utf-8").split("\n")[:2] == ["ok", token]
        return
    with pytest.raises(
        BadInput, match=r"row 1 token .* cannot be written as tensorboard: its readers split on tabs"
    ):
        export(t, "tensorboard", str(out))
    assert list(tmp_path.iterdir()) == []  # nothing written, no folder made
    assert tokens_for(t, "tensorboard", "_")[0] == ["ok", token.replace(token[1], "_")]


def test_tensorboard_config_names_any_table_in_protobuf_text(tmp_path) -> None:
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    t = EmbeddingTable(np.ones((2, 3), np.float32), ["a", "b"], origin='odd "name\\".v2.safetensors')
    export(t, "tensorboard", str(tmp_path / "p"))
    config = text_format.Parse(
        (tmp_path / "p" / "projector_config.pbtxt").read_text("utf-8"), ProjectorConfig()
    )
    (emb,) = config.embeddings
    assert emb.tensor_name == 'odd "name\\".v2' and list(emb.tensor_shape) == [2, 3]
    assert (emb.tensor_path, emb.metadata_path) == ("tensors.tsv", "metadata.tsv")


def test_tensorboard_needs_a_folder(table, tmp_path, cli) -> None:
    with pytest.raises(UsageError, match="give -o DIR"):
        export(table, "tensorboard", "-")
    (tmp_path / "f").write_text("x")
    with pytest.raises(BadInput, match="is a file"):
        export(table, "tensorboard", str(tmp_path / "f"))
    save(table, tmp_path / "t.safetensors")
    r = cli(
        "export", str(tmp_path / "t.safetensors"), "--format", "tensorboard", "-o", str(tmp_path / "proj")
    )
    assert r.code == 0, r.stderr
    assert "export: 6 × 5 as tensorboard →" in r.stderr and "tensorboard --logdir" in r.stderr
    assert (tmp_path / "proj" / "metadata.tsv").read_text(encoding="utf-8").splitlines() == table.tokens
    r = cli("export", str(tmp_path / "t.safetensors"), "--format", "tensorboard")
    assert (
        r.code == 2
        and r.stderr == "embtool: error: --format tensorboard writes a folder of three files: give -o DIR\n"
    )
