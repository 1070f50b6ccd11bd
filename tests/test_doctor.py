"""doctor: a raw word2vec table is flagged with the fixing command; its standardized version passes."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from embtool.tables.doctor import diagnose
from embtool.tables.table import EmbeddingTable, save
from embtool.tables.transforms import standardize, xavier
from embtool.text.vocabfile import Vocabulary

WORDS = [f"w{i}" for i in range(400)]


@pytest.fixture
def raw_w2v(tmp_path, vocab_file):
    """A word2vec text file at a pretrained table's scale (σ ≈ 0.3, as the paper's Table 2), extracted."""
    rng = np.random.default_rng(0)
    vectors = (rng.standard_normal((len(WORDS), 32)) * 0.3).astype(np.float32)  # (400, 32)
    lines = [f"{len(WORDS)} 32"] + [
        w + " " + " ".join(f"{v:.6f}" for v in row) for w, row in zip(WORDS, vectors)
    ]
    (tmp_path / "w2v.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    vocab = tmp_path / "v.txt"
    vocab.write_text(
        "#embtool tokenizer=whitespace\n" + "\n".join(f"{w}\t{400 - i}" for i, w in enumerate(WORDS))
    )
    return tmp_path / "w2v.txt", vocab


def _levels(d) -> dict[str, str]:
    return {c.name: c.level for c in d.checks}


def test_raw_word2vec_flagged_then_standardized_passes(cli, raw_w2v, tmp_path) -> None:
    w2v, vocab = raw_w2v
    table = tmp_path / "w2v.safetensors"
    assert cli("extract", f"word2vec:{w2v}", "--vocab", str(vocab), "-o", str(table)).code == 0
    r = cli("doctor", str(table))
    assert r.code == 1
    assert re.search(r"✗ scale: σ 0\.29\d+ is 4\.\d+× Xavier's σ_x 0\.068\d+ for 400 × 32", r.text)
    assert "✗ absorption" in r.text and "position signal is drowned" in r.text
    assert f"fix: embtool standardize {table} --to xavier -o w2v_x.safetensors" in r.text
    assert f"embtool stats {table} --plot w2v.png" in r.text
    fixed = tmp_path / "w2v_x.safetensors"
    assert cli("standardize", str(table), "--to", "xavier", "-o", str(fixed)).code == 0
    r = cli("doctor", str(fixed), "--vocab", str(vocab))
    assert r.code == 0, r.text
    assert f"{fixed} (400 × 32): ok" in r.text and "already standardized (to xavier)" in r.text
    assert "400 of 400 tokens" in r.text and "100.0% of its corpus tokens" in r.text


def test_xavier_passes_and_json(cli, tmp_path) -> None:
    save(xavier(WORDS, 64), tmp_path / "x.safetensors")
    r = cli("doctor", str(tmp_path / "x.safetensors"), "--json")
    assert r.code == 0
    d = json.loads(r.text)
    assert d["verdict"] == "ok" and {c["name"] for c in d["checks"]} >= {
        "finite",
        "scale",
        "absorption",
        "duplicates",
    }
    scale = next(c for c in d["checks"] if c["name"] == "scale")
    assert scale["figures"]["std_ratio"] == pytest.approx(1.0, abs=0.02)


def test_bad_rows_found() -> None:
    rng = np.random.default_rng(1)
    v = (rng.standard_normal((50, 8)) * 0.1).astype(np.float32)
    v[3] = 0  # a zero row (not padding)
    v[0] = 0  # <pad>: zero by design
    v[7] = v[5]  # a duplicate
    v[9] *= 100  # an outlier
    v[10:14] = 0.5  # filled rows at another scale (mean fill: equal rows too)
    tokens = ["<pad>"] + [f"t{i}" for i in range(1, 50)]
    d = diagnose(EmbeddingTable(v, tokens, missing=[10, 11, 12, 13]), "t.safetensors")
    levels = _levels(d)
    assert levels["zero_rows"] == "finding" and "'t3'" in next(
        c.message for c in d.checks if c.name == "zero_rows"
    )
    dup = next(c for c in d.checks if c.name == "duplicates")
    assert dup.level == "finding" and dup.figures == {"duplicate_rows": 4, "filled": 3}
    assert levels["outliers"] == "warning" and "'t9'" in next(
        c.message for c in d.checks if c.name == "outliers"
    )
    assert levels["filled_scale"] == "finding"
    assert "--missing normal" in next(c.fix for c in d.checks if c.name == "filled_scale")


def test_nonfinite_dim_and_history(cli, tmp_path) -> None:
    v = np.ones((4, 6), np.float32)
    v[2, 1] = np.nan
    d = diagnose(EmbeddingTable(v, list("abcd"), allow_nonfinite=True), "n.safetensors")
    assert _levels(d)["finite"] == "finding" and "scale" not in _levels(d)
    x = standardize(standardize(xavier(WORDS, 16)))
    d = diagnose(x, "x.safetensors", dim=32)
    dim = next(c for c in d.checks if c.name == "dim")
    assert dim.fix.startswith("embtool resize x.safetensors --dim 32 --method pad")
    assert _levels(d)["history"] == "warning"
    save(x, tmp_path / "x.safetensors")
    assert cli("doctor", str(tmp_path / "x.safetensors")).code == 0
    assert cli("doctor", str(tmp_path / "x.safetensors"), "--strict").code == 1  # the history warning


def test_vocab_of_another_tokenizer_warns_with_coverage() -> None:
    table = xavier(WORDS[:10], 16, tokenizer="hf:bert-base-uncased")
    d = diagnose(
        table, "t", vocab=Vocabulary(["w1", "w2", "zz"], info={"tokenizer": "spacy:en"}), vocab_name="v.txt"
    )
    tok = next(c for c in d.checks if c.name == "tokenizer")
    assert tok.level == "warning" and "66.7% of its tokens" in tok.message
    cov = next(c for c in d.checks if c.name == "coverage")
    assert cov.level == "finding" and cov.fix == "embtool align t --vocab v.txt -o t_aligned.safetensors"


@pytest.mark.slow
def test_example_script_runs(tmp_path) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "doctor_export.sh"
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    proc = subprocess.run(["bash", str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PATH": path})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "400 vectors read back by gensim" in proc.stdout
    assert (tmp_path / "doctor_export" / "w2v.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_bad_input_is_one_line(cli, tmp_path) -> None:
    save(xavier(WORDS, 8), tmp_path / "x.safetensors")
    r = cli("doctor", str(tmp_path / "x.safetensors"), "--vocab", str(tmp_path / "nope.txt"))
    assert r.code == 2 and r.stderr == f"embtool: error: {tmp_path / 'nope.txt'}: no such vocabulary file\n"
    r = cli("doctor", str(tmp_path / "missing.safetensors"))
    assert r.code == 2 and len(r.stderr.splitlines()) == 1


def test_json_has_no_nan() -> None:
    v = np.zeros((4, 3), np.float32)
    v[1:3] = 1.0  # filled rows with σ 0, found rows σ 0: ratio undefined
    d = diagnose(EmbeddingTable(v, list("abcd"), missing=[1, 2]), "t")
    text = json.dumps(d.as_dict(), allow_nan=False)  # raises on NaN/inf
    assert '"verdict": "findings"' in text


ODD = "my $HOME table.safetensors"  # a space and a $: both change what a shell runs when unquoted


def test_fix_commands_quote_file_names_for_the_shell(cli, tmp_path) -> None:
    """Issue: the fix commands printed file names as they are, so a pasted fix ran on other files."""
    import os
    import shlex
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    table = tmp_path / ODD
    save(EmbeddingTable(rng.standard_normal((50, 8)).astype(np.float32), WORDS[:50]), table)  # σ 5× Xavier's
    r = cli("doctor", str(table))
    assert r.code == 1
    fix = f"embtool standardize {shlex.quote(str(table))} --to xavier -o 'my $HOME table_x.safetensors'"
    assert f"fix: {fix}" in r.text
    assert f"embtool stats {shlex.quote(str(table))} --plot 'my $HOME table.png'" in r.text
    # pasted into a shell, the fix reads this table and writes the file it names
    path = f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}"
    done = subprocess.run(["bash", "-c", fix], cwd=tmp_path, env={**os.environ, "PATH": path},
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert cli("doctor", str(tmp_path / "my $HOME table_x.safetensors")).code == 0


def test_every_fix_quotes_its_names() -> None:
    import shlex

    v = np.random.default_rng(2).standard_normal((50, 8)).astype(np.float32)  # σ 5× Xavier's
    v[3] = 0
    table = EmbeddingTable(v, WORDS[:50], history=[{"op": "extract", "args": {"source": "glove:a b$x.txt"}}])
    d = diagnose(table, ODD, dim=16, vocab=Vocabulary(["zz"]), vocab_name="v $1.txt")
    fixes = {c.name: c.fix for c in d.checks if c.fix}
    assert fixes["dim"].startswith(f"embtool resize {shlex.quote(ODD)} --dim 16 --method pad -o ")
    assert fixes["scale"] == (f"embtool resize {shlex.quote(ODD)} --dim 16 --method pad | "
                              "embtool standardize --to xavier -o 'my $HOME table_x.safetensors'")  # fmt: skip
    assert fixes["zero_rows"].startswith("embtool extract 'glove:a b$x.txt' --vocab V ")
    assert fixes["coverage"] == (f"embtool align {shlex.quote(ODD)} --vocab 'v $1.txt' "
                                 "-o 'my $HOME table_aligned.safetensors'")  # fmt: skip
    assert diagnose(table, "-").checks[1].fix == "embtool standardize - --to xavier -o TABLE_x.safetensors"
