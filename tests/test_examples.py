"""examples/*.sh with GloVe (issue 22.4): every example takes the paper's GloVe files through one
variable (VECTORS, or SRC_VECTORS/TGT_VECTORS per side for translation) in place of the word2vec it
trains here. No machine here has GloVe, so the tests write small GloVe-format files (no header line,
one ``word v1 … vD`` a line) for the data's frequent words and run each example at its smallest size.
The examples' default path (word2vec) is run by the tests beside each library module
(test_experiment, test_analogy, test_building, test_doctor, test_train_cli)."""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from conftest import EXAMPLES, run_example, toy_iwslt
from embtool.tables.table import load

# which variables each example reads for GloVe (translation examples: one per side)
VARIABLES = {
    "demo.sh": ("SRC_VECTORS", "TGT_VECTORS"),
    "reproduce_table1_multi30k.sh": ("SRC_VECTORS", "TGT_VECTORS"),
    "reproduce_table3.sh": ("SRC_VECTORS", "TGT_VECTORS"),
    "beyond_vanilla.sh": ("SRC_VECTORS", "TGT_VECTORS"),
    "mt5_iwslt2017.sh": ("SRC_VECTORS", "TGT_VECTORS"),
    "table4_analogy.sh": ("VECTORS",),
    "doctor_export.sh": ("VECTORS",),
}


def test_every_example_is_listed_and_names_its_glove_variables() -> None:
    """A new example comes with its GloVe variable, said in its header comment with a glove: file."""
    assert {p.name for p in EXAMPLES.glob("*.sh")} == set(VARIABLES)
    for name, variables in VARIABLES.items():
        text = (EXAMPLES / name).read_text(encoding="utf-8")
        header = text.split("set -euo pipefail")[0]
        for var in variables:
            assert re.search(rf"{var}=glove:", header), f"{name}: its header does not show {var}=glove:…"
        assert subprocess.run(["bash", "-n", str(EXAMPLES / name)]).returncode == 0


def _frequent_words(path: Path, n: int, lines: int = 3000) -> list[str]:
    """The ``n`` most frequent lower-cased whitespace words of a gzipped text's first lines."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        counts = Counter(w.lower().strip(".,") for _, line in zip(range(lines), f) for w in line.split())
    return [w for w, _ in counts.most_common(n) if w]


def _glove(path: Path, words: list[str], dim: int, seed: int = 0) -> str:
    """A GloVe-format file (no header) of ``words`` at a raw table's scale (σ 0.4); ``glove:PATH``."""
    rows = np.random.default_rng(seed).standard_normal((len(words), dim)) * 0.4
    path.write_text(
        "".join(w + " " + " ".join(f"{v:.5f}" for v in r) + "\n" for w, r in zip(words, rows, strict=True)),
        encoding="utf-8",
    )
    return f"glove:{path}"


def _table_source(path: Path) -> str:
    from embtool.tables.table import read_metadata

    return read_metadata(path)["embtool.source"]


@pytest.mark.slow
def test_demo_takes_glove_per_side_and_trains_at_its_width(tmp_path: Path, shared_data: Path) -> None:
    """TGT_VECTORS alone: English from the GloVe file (width 12), German's word2vec trained at that
    width (DEMO_DIM 16 is word2vec's own), the runs named after the vectors (glove, glove_x …)."""
    en = _glove(tmp_path / "en.txt", _frequent_words(shared_data / "multi30k" / "train.en.gz", 300), 12)
    demo = tmp_path / "demo"
    run_example(
        "demo.sh",
        tmp_path,
        EMBTOOL_DATA_DIR=str(shared_data),
        DEMO_DIR=str(demo),
        DEMO_TRAIN_EXAMPLES="200",
        DEMO_EVAL_EXAMPLES="20",
        DEMO_EPOCHS="1",
        DEMO_DIM="16",
        DEMO_LAYERS="1",
        DEMO_HEADS="2",
        DEMO_W2V_EPOCHS="1",
        DEMO_W2V_EXAMPLES="400",
        TGT_VECTORS=en,
    )
    for name in ("xavier", "glove", "glove_x", "glove_shuf"):
        assert (demo / "runs" / name / "test.json").is_file()
    assert _table_source(demo / "glove.en.safetensors") == "glove:en.txt"
    assert _table_source(demo / "glove.de.safetensors").startswith("word2vec:")
    config = json.loads((demo / "runs" / "glove_x" / "config.json").read_text())
    assert config["model"]["d_model"] == 12
    assert load(demo / "glove.de.safetensors").dim == 12


@pytest.mark.slow
def test_table1_tables_take_glove_on_one_side(tmp_path: Path, shared_data: Path) -> None:
    """SRC_VECTORS alone: the encoder's table from the GloVe file, the decoder's word2vec at its width
    (before: no word2vec was trained for the other side, and its extract failed)."""
    de = _glove(tmp_path / "de.txt", _frequent_words(shared_data / "multi30k" / "train.de.gz", 300), 12)
    out = tmp_path / "t"
    env = {"SIZE": "tiny", "OUT": str(out), "EMBTOOL_DATA_DIR": str(shared_data), "STEP": "tables"}
    run_example("reproduce_table1_multi30k.sh", tmp_path, **env, SRC_VECTORS=de)
    assert _table_source(out / "src.safetensors") == "glove:de.txt"
    assert _table_source(out / "tgt.safetensors").startswith("word2vec:")
    assert load(out / "src.safetensors").dim == load(out / "tgt.safetensors").dim == 12


@pytest.mark.slow
def test_beyond_vanilla_projects_the_glove_width(tmp_path: Path, shared_data: Path) -> None:
    """Both sides GloVe (width 12, not SIZE=tiny's word2vec 16): the --input-dim row projects 12 → 24."""
    data = shared_data / "multi30k"
    de = _glove(tmp_path / "de.txt", _frequent_words(data / "train.de.gz", 300), 12)
    en = _glove(tmp_path / "en.txt", _frequent_words(data / "train.en.gz", 300), 12, seed=1)
    out = tmp_path / "bv"
    run_example(
        "beyond_vanilla.sh",
        tmp_path,
        SIZE="tiny",
        OUT=str(out),
        VARIANTS="standardized",
        EMBTOOL_DATA_DIR=str(shared_data),
        SRC_VECTORS=de,
        TGT_VECTORS=en,
    )
    text = (out / "report.md").read_text()
    assert "GloVe_Xavier [norm=admin]" in text and "| GloVe_Xavier [input-dim 12] |" in text
    run = next((out / "input-dim" / "runs").glob("*/*/config.json"))
    assert json.loads(run.read_text())["model"]["d_model"] == 24


@pytest.mark.slow
def test_table4_takes_glove(tmp_path: Path, shared_data: Path) -> None:
    """VECTORS=glove:…: the seven rows of the table from the GloVe file's vectors, for the paper's
    Multi30k vocabulary (its family words are in the file, so some questions are answered)."""
    words = _frequent_words(shared_data / "multi30k" / "train.en.gz", 400)
    family = ["man", "woman", "boy", "girl", "he", "she", "his", "her", "father", "mother", "son", "daughter"]
    vectors = _glove(tmp_path / "glove.txt", list(dict.fromkeys(family + words)), 20)
    out = tmp_path / "t4"
    proc = run_example(
        "table4_analogy.sh",
        tmp_path,
        SIZE="tiny",
        OUT=str(out),
        EMBTOOL_DATA_DIR=str(shared_data),
        VECTORS=vectors,
    )
    assert _table_source(out / "vectors.safetensors") == "glove:glove.txt"
    assert not (out / "w2v.txt").exists()  # no word2vec trained
    totals = [json.loads(f.read_text())["total"] for f in sorted(out.glob("[1-7]-*.json"))]
    assert len(totals) == 7 and totals[0]["answered"] > 0
    assert "& (position encodings × σ_p/σ_x)" in proc.stdout


@pytest.mark.slow
def test_doctor_export_takes_glove(tmp_path: Path) -> None:
    """VECTORS=glove:…: doctor, the fix and the exports on the file's first 400 words."""
    rng = random.Random(0)
    words = [f"w{i}" for i in range(450)]
    rng.shuffle(words)
    vectors = _glove(tmp_path / "glove.txt", words, 20)
    proc = run_example("doctor_export.sh", tmp_path, VECTORS=vectors)
    assert "400 vectors read back by gensim" in proc.stdout
    table = load(tmp_path / "doctor_export" / "w2v.safetensors")
    assert table.tokens == words[:400] and table.dim == 20
    assert load(tmp_path / "doctor_export" / "w2v30_x.safetensors").dim == 30


@pytest.mark.slow
def test_iwslt_recipe_takes_glove_per_side(tmp_path: Path) -> None:
    """SRC_VECTORS/TGT_VECTORS: spaCy word vocabularies (the task's tokenizer, not MODEL's pieces)
    and the tables from the GloVe files; the report names them GloVe."""
    de, en = toy_iwslt(tmp_path / "data")
    out = tmp_path / "out"
    run_example(
        "mt5_iwslt2017.sh",
        tmp_path,
        OUT=str(out),
        SEEDS="1",
        DEVICE="cpu",
        VARIANTS="xavier,pretrained",
        EMBTOOL_DATA_DIR=str(tmp_path / "data"),
        EXTRA="--epochs 1 --layers 1 --heads 2 --batch-size 32",
        SRC_VECTORS=_glove(tmp_path / "de.txt", de, 8),
        TGT_VECTORS=_glove(tmp_path / "en.txt", en, 8, seed=1),
    )
    assert (out / "src.vocab").read_text().startswith("#embtool tokenizer=spacy:de")
    text = (out / "grid/report.md").read_text()
    assert "| Xavier |" in text and "| GloVe |" in text


def test_iwslt_recipe_wants_both_sides(tmp_path: Path) -> None:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    proc = subprocess.run(
        ["bash", str(EXAMPLES / "mt5_iwslt2017.sh")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": path, "OUT": str(tmp_path / "o"), "SRC_VECTORS": "glove:de.txt"},
        timeout=60,
    )
    assert proc.returncode == 2 and "give both SRC_VECTORS and TGT_VECTORS" in proc.stderr
