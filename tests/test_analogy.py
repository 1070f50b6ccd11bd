"""analogy: gensim's counts exactly (per section, per question), 3CosMul, question files, the CLI."""

from __future__ import annotations

import gzip
import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from embtool.core.errors import BadInput
from embtool.eval import search as analogy_search
from embtool.eval.analogy import default_questions, evaluate_analogies, parse_questions, read_questions
from embtool.tables.table import EmbeddingTable, save

gensim_models = pytest.importorskip("gensim.models")
QUESTIONS = default_questions()
SETTINGS = {  # name → (our keyword arguments, gensim's)
    "defaults": ({}, {}),
    "case-sensitive": ({"case_sensitive": True}, {"case_insensitive": False}),
    "restrict": ({"restrict": 700}, {"restrict_vocab": 700}),
    "count-oov": ({"count_oov": True}, {"dummy4unknown": True}),
    "all": (
        {"case_sensitive": True, "restrict": 1500, "count_oov": True},
        {"case_insensitive": False, "restrict_vocab": 1500, "dummy4unknown": True},
    ),
}


def gensim_counts(
    tokens: list[str], vectors: np.ndarray, questions: Path = QUESTIONS, **kw
) -> tuple[list, list]:
    kv = gensim_models.KeyedVectors(vectors.shape[1])
    kv.add_vectors(tokens, vectors)
    with warnings.catch_warnings():  # zero rows: gensim divides by zero norms
        warnings.simplefilter("ignore")
        _, sections = kv.evaluate_word_analogies(str(questions), **kw)
    counts = [(s["section"], len(s["correct"]), len(s["incorrect"])) for s in sections]
    return counts, [set(s["correct"]) for s in sections[:-1]]


def our_counts(
    tokens: list[str], vectors: np.ndarray, questions: Path = QUESTIONS, **kw
) -> tuple[list, list]:
    result = evaluate_analogies(EmbeddingTable(vectors.copy(), tokens), questions, **kw)
    counts = [(s.name, s.correct, s.incorrect) for s in [*result.sections, result.total]]
    sections = read_questions(questions)
    upper = not kw.get("case_sensitive", False)
    correct = []
    for sec, answers in zip(sections, result.predicted, strict=True):
        got = set()
        for q, answer in zip(sec.questions, answers, strict=True):
            words = tuple(w.upper() if upper else w for w in (q.a, q.b, q.c, q.d))
            if answer is not None and answer == words[3]:
                got.add(words)
        correct.append(got)
    return counts, correct


def assert_parity(tokens: list[str], vectors: np.ndarray, setting: str, questions: Path = QUESTIONS) -> None:
    ours, gensims = SETTINGS[setting]
    counts, correct = our_counts(tokens, vectors, questions, **ours)
    g_counts, g_correct = gensim_counts(tokens, vectors, questions, **gensims)
    assert counts == g_counts
    assert correct == g_correct  # the same questions right, not just as many


# ----------------------------------------------------------------------------- tables


def gensim_file(name: str) -> tuple[list[str], np.ndarray]:
    from gensim.test.utils import datapath

    kv = gensim_models.KeyedVectors.load_word2vec_format(datapath(name), no_header=name == "test_glove.txt")
    return list(kv.index_to_key), np.array(kv.vectors, dtype=np.float32)


@pytest.fixture(scope="module")
def trained() -> tuple[list[str], np.ndarray]:
    """word2vec trained here on real, cased English (Multi30k captions, or gensim's Lee corpus)."""
    from gensim.test.utils import datapath

    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "multi30k" / "train.en.gz"
    if path.is_file():
        with gzip.open(path, "rt", encoding="utf-8") as f:
            sentences = [line.split() for _, line in zip(range(12000), f)]
    else:
        sentences = [line.split() for line in open(datapath("lee_background.cor"), encoding="utf-8")]
    model = gensim_models.Word2Vec(sentences, vector_size=24, min_count=2, workers=1, seed=1, epochs=3)
    return list(model.wv.index_to_key), np.array(model.wv.vectors, dtype=np.float32)


def adversarial(seed: int, n: int = 2500, dim: int = 16) -> tuple[list[str], np.ndarray]:
    """Every question word, planted offsets, case variants, duplicate rows (exact ties), zero rows."""
    rng = np.random.default_rng(seed)
    sections = read_questions(QUESTIONS)
    words = sorted({w for s in sections for q in s.questions for w in (q.a, q.b, q.c, q.d)})
    picked = rng.choice(len(words), 250, replace=False)
    variants = [words[i].lower() if words[i] != words[i].lower() else words[i].upper() for i in picked]
    tokens = list(dict.fromkeys(words + variants + [words[i].capitalize() for i in picked[:80]]))
    tokens += [f"w{i}" for i in range(n - len(tokens))]
    tokens = [tokens[i] for i in rng.permutation(len(tokens))]
    vectors = rng.standard_normal((len(tokens), dim)).astype(np.float32)
    row = {t: i for i, t in enumerate(tokens)}
    for s in sections:
        offset = rng.standard_normal(dim).astype(np.float32) * 1.5
        for q in s.questions[::5]:
            vectors[row[q.b]] = vectors[row[q.a]] + offset + 0.3 * rng.standard_normal(dim)
    for i in rng.choice(len(tokens), 150):
        vectors[rng.integers(len(tokens))] = vectors[i]
    vectors[rng.choice(len(tokens), 10)] = 0.0
    return tokens, vectors


# ----------------------------------------------------------------------------- parity


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("name", ["lee_fasttext.vec", "test_glove.txt"])
def test_parity_on_gensims_vector_files(name: str, setting: str) -> None:
    assert_parity(*gensim_file(name), setting)


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_parity_on_a_trained_word2vec_table(trained, setting: str) -> None:
    assert_parity(*trained, setting)


@pytest.fixture(scope="module")
def some_questions(tmp_path_factory) -> Path:
    """Every fourth question of each section (gensim is slow on all 19,544)."""
    lines, n = [], 0
    for line in QUESTIONS.read_text(encoding="utf-8").splitlines():
        n = n + 1 if not line.startswith(":") else 0
        if line.startswith(":") or n % 4 == 1:
            lines.append(line)
    path = tmp_path_factory.mktemp("questions") / "some-questions.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("setting", ["defaults", "case-sensitive", "all"])
@pytest.mark.parametrize("seed", [0, 1])
def test_parity_with_case_variants_ties_and_zero_rows(some_questions: Path, seed: int, setting: str) -> None:
    assert_parity(*adversarial(seed), setting, some_questions)


@pytest.mark.parametrize("block", [1, 7, 5000])
@pytest.mark.parametrize("method", ["add", "mul"])
def test_answers_do_not_depend_on_the_block_size(monkeypatch, trained, block: int, method: str) -> None:
    table = EmbeddingTable(trained[1].copy(), trained[0])
    expected = evaluate_analogies(table, method=method).predicted
    monkeypatch.setattr(analogy_search, "BLOCK", block)
    assert evaluate_analogies(table, method=method).predicted == expected


def test_mul_without_pruning_is_brute_force_argmax(trained) -> None:
    tokens, vectors = trained
    result = evaluate_analogies(EmbeddingTable(vectors.copy(), tokens), method="mul")
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    first = {}
    for i, t in enumerate(tokens):
        first.setdefault(t.upper(), i)
    sims = read_questions(QUESTIONS)
    checked = 0
    for sec, answers in zip(sims, result.predicted, strict=True):
        for q, answer in zip(sec.questions, answers, strict=True):
            if answer is None or checked >= 200:
                continue
            a, b, c = (first[w.upper()] for w in (q.a, q.b, q.c))
            cos = (unit @ unit[[b, c, a]].T + 1) / 2  # (N, 3)
            score = cos[:, 0] * cos[:, 1] / (cos[:, 2] + 1e-3)
            own = {tokens[i].upper() for i in (a, b, c)}
            score[[i for i, t in enumerate(tokens) if t.upper() in own]] = -np.inf
            assert tokens[int(np.argmax(score))].upper() == answer
            checked += 1
    assert checked > 20


@pytest.mark.parametrize("case_sensitive", [False, True])
def test_tiny_table_of_question_words_only(tmp_path: Path, case_sensitive: bool) -> None:
    # gensim's top-five rule: with nothing else left, a case variant of a question word answers
    tokens = ["a", "b", "c", "A"]
    vectors = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    questions = tmp_path / "q.txt"
    questions.write_text(": s\na b c a\na b c A\nb c a b\n", encoding="utf-8")
    counts, _ = our_counts(tokens, vectors, questions, case_sensitive=case_sensitive)
    g_counts, _ = gensim_counts(tokens, vectors, questions, case_insensitive=not case_sensitive)
    assert counts == g_counts
    table = EmbeddingTable(vectors, tokens)
    mul = evaluate_analogies(table, questions, method="mul", case_sensitive=case_sensitive)
    assert mul.total.answered == 3


HELD_AS = {  # name → (torch, float32 rows) → (rows for the table layer, the same rows as a torch tensor)
    "float32": lambda torch, v: (v, torch.from_numpy(v)),
    "float16": lambda torch, v: (v.astype(np.float16), torch.from_numpy(v).half()),
    "bfloat16": lambda torch, v: (torch.from_numpy(v).bfloat16(),) * 2,  # numpy has no bfloat16
}


@pytest.mark.parametrize("method", ["add", "mul"])
@pytest.mark.parametrize("dtype", list(HELD_AS))
def test_rows_held_by_numpy_or_torch_answer_alike(dtype: str, method: str) -> None:
    torch = pytest.importorskip("torch")
    tokens, vectors = gensim_file("lee_fasttext.vec")
    for_table, as_torch = HELD_AS[dtype](torch, vectors)
    table = EmbeddingTable(for_table, tokens)  # whatever array type the table layer keeps
    raw = SimpleNamespace(vectors=as_torch, tokens=tokens)  # all that eval reads
    expected = evaluate_analogies(table, method=method)
    assert evaluate_analogies(raw, method=method).predicted == expected.predicted
    assert expected.total.answered > 90


# ----------------------------------------------------------------------------- 3CosMul by hand


def test_3cosmul_finds_the_planted_answer() -> None:
    # man : king :: woman : ?  — queen is king − man + woman; the distractor is close to king only
    tokens = ["man", "king", "woman", "queen", "prince", "apple"]
    vectors = np.array(
        [
            [1.0, 0.0, 0.2],  # man
            [1.0, 1.0, 0.2],  # king
            [0.0, 0.0, 1.0],  # woman
            [0.0, 1.0, 1.0],  # queen
            [1.0, 1.2, 0.0],  # prince
            [-1.0, -1.0, -1.0],  # apple
        ],
        dtype=np.float32,
    )
    questions = parse_questions(b": family\nman king woman queen\nking man queen woman\n")
    for method in ("add", "mul"):
        result = evaluate_analogies(EmbeddingTable(vectors, tokens), questions, method=method)
        assert result.predicted == [["QUEEN", "WOMAN"]], method
        assert (result.total.correct, result.total.answered) == (2, 2)


def test_oov_questions_are_skipped_or_counted_wrong() -> None:
    tokens = ["a", "b", "c", "d", "e"]
    vectors = np.eye(5, dtype=np.float32)
    questions = parse_questions(b": s\na b c d\na b c zzz\nzzz b c d\n")
    skip = evaluate_analogies(EmbeddingTable(vectors, tokens), questions)
    count = evaluate_analogies(EmbeddingTable(vectors, tokens), questions, count_oov=True)
    assert (skip.total.answered, skip.total.skipped) == (1, 2)
    assert (count.total.answered, count.total.incorrect - skip.total.incorrect, count.total.skipped) == (
        3,
        2,
        2,
    )


def test_no_answerable_question_is_an_error_as_in_similarity() -> None:
    """Issue 14.7: 0/0 says nothing; like `similarity`, no usable item is an error (unless counted wrong)."""
    table = EmbeddingTable(np.eye(5, dtype=np.float32), ["a", "b", "c", "d", "e"])
    questions = parse_questions(b": s\na b c zzz\n")
    with pytest.raises(BadInput, match="no question has all four words in the table.s first 300000 rows"):
        evaluate_analogies(table, questions)
    counted = evaluate_analogies(table, questions, count_oov=True)
    assert (counted.total.answered, counted.total.correct) == (1, 0)


# ----------------------------------------------------------------------------- question files


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b": s\na b c\n", "line 2: expected four words"),
        (b": s\na b c d\na b c d e\n", "line 3: expected four words"),
        (b"a b c d\n", "line 1: a question before the first ': section' line"),
        (b": s\na b \xff d\n", "line 2: not UTF-8"),
        (b"", "no questions found"),
        (b": only a section\n\n", "no questions found"),
    ],
    ids=["three-words", "five-words", "no-section", "not-utf8", "empty", "only-header"],
)
def test_bad_question_files_name_the_line(text: bytes, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        parse_questions(text, origin="q.txt")


def test_sections_and_blank_lines_parse_like_gensim() -> None:
    sections = parse_questions(b": capital-x \n\nAthens Greece Oslo Norway\n: gram1\nA b C d\n")
    assert [(s.name, len(s.questions)) for s in sections] == [("capital-x", 1), ("gram1", 1)]
    assert sections[1].questions[0].line == 5
    assert sum(len(s.questions) for s in read_questions(QUESTIONS)) == 19544


# ----------------------------------------------------------------------------- the command


@pytest.fixture
def lee_table(tmp_path: Path) -> Path:
    tokens, vectors = gensim_file("lee_fasttext.vec")
    path = tmp_path / "lee.safetensors"
    save(EmbeddingTable(vectors, tokens), path)
    return path


def test_cli_json_matches_the_library(cli, lee_table: Path) -> None:
    r = cli("analogy", str(lee_table), "--json", "--restrict", "1000")
    assert r.code == 0, r.stderr
    out = json.loads(r.text)
    tokens, vectors = gensim_file("lee_fasttext.vec")
    g_counts, _ = gensim_counts(tokens, vectors, restrict_vocab=1000)
    assert [(s["section"], s["correct"], s["incorrect"]) for s in out["sections"]] == g_counts[:-1]
    assert (out["total"]["correct"], out["total"]["incorrect"]) == g_counts[-1][1:]
    assert out["total"]["skipped"] == 19544 - out["total"]["answered"]
    assert out["signature"].startswith("analogy|method:add|restrict:1000|case:insensitive|oov:skip")


def test_cli_reads_stdin_and_prints_table4_cells(embtool, lee_table: Path) -> None:
    r = embtool("analogy", "--method", "mul", stdin=lee_table.read_bytes())
    assert r.code == 0, r.stderr
    assert "Total accuracy" in r.text and "/98 (" in r.text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--questions", "{bad}"], "line 2: expected four words"),
        (["--questions", "{missing}"], "cannot read the questions file"),
        (["--method", "sub"], "valid choices: add, mul"),
        (["--restrict", "0"], "--restrict"),
        (["--device", "tpu:x"], "--device"),
    ],
    ids=["malformed", "missing", "method", "restrict", "device"],
)
def test_cli_errors_are_one_line_exit_2(
    cli, tmp_path: Path, lee_table: Path, args: list[str], message: str
) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text(": s\nking queen man\n", encoding="utf-8")
    args = [a.format(bad=bad, missing=tmp_path / "nope.txt") for a in args]
    r = cli("analogy", str(lee_table), *args)
    assert r.code == 2
    assert r.stderr.startswith("embtool: error: ") and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- the Table 4 example

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "table4_analogy.sh"


def test_example_is_valid_bash() -> None:
    import subprocess

    assert subprocess.run(["bash", "-n", str(EXAMPLE)]).returncode == 0


@pytest.mark.slow
def test_example_table4_end_to_end(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    data = Path(__file__).resolve().parents[2] / "shared" / "data"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "SIZE": "tiny",
        "OUT": str(tmp_path / "t4"),
        "EMBTOOL_DATA_DIR": str(data),
    }
    proc = subprocess.run(
        ["bash", str(EXAMPLE)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    totals = [json.loads(f.read_text())["total"] for f in sorted((tmp_path / "t4").glob("[1-7]-*.json"))]
    assert len(totals) == 7 and len({t["answered"] for t in totals}) == 1
    if (data / "multi30k" / "train.en.gz").is_file():
        assert totals[0]["answered"] == 1631  # the paper's lower-cased Multi30k vocabulary (A.2)
    assert abs(totals[0]["correct"] - totals[1]["correct"]) <= 1  # scaling cannot change accuracy
    assert abs(totals[3]["correct"] - totals[4]["correct"]) <= 1
    assert (
        "& (position encodings × σ_p/σ_x)" in proc.stdout
        and "& Xavier-std. & position encodings" in proc.stdout
    )
