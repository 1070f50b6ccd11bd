"""Word-analogy accuracy of a table (Mikolov et al. 2013; the paper's Table 4).

3CosAdd answers exactly as gensim's ``KeyedVectors.evaluate_word_analogies`` with its defaults:
rows are unit-normalised; only the first ``restrict`` rows are candidates and count as known;
words are upper-cased unless ``case_sensitive`` (the first case variant of a word wins); a
question with an unknown word is skipped (``count_oov``: counted wrong, gensim's
``dummy4unknown``); the answer is gensim's: the best of its top five rows that is not a question
word. 3CosMul (Levy & Goldberg 2014) scores cos'(d,b)·cos'(d,c)/(cos'(d,a)+ε), cos' = (cos+1)/2.

The search itself lives in :mod:`embtool.eval.search`, gensim's view of the table's keys in
:mod:`embtool.eval.keyed`, and reading benchmark files in :mod:`embtool.eval.benchmarks`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embtool._version import __version__
from embtool.core.errors import BadInput
from embtool.eval import search
from embtool.eval.benchmarks import DEFAULT_RESTRICT, gensim_test_file, numbered_lines, read_bytes
from embtool.eval.keyed import Keys

if TYPE_CHECKING:
    from embtool.tables.table import EmbeddingTable

METHODS = ("add", "mul")


@dataclass(frozen=True)
class Question:
    a: str
    b: str
    c: str
    d: str  # expected answer
    line: int  # 1-based line in the questions file


@dataclass
class QuestionSection:
    name: str
    questions: list[Question] = field(default_factory=list)


@dataclass
class SectionScore:
    """One section's counts; ``answered = correct + incorrect`` (gensim's denominator)."""

    name: str
    correct: int = 0
    incorrect: int = 0
    skipped: int = 0  # questions with a word outside the first `restrict` rows

    @property
    def answered(self) -> int:
        return self.correct + self.incorrect

    @property
    def accuracy(self) -> float:
        return self.correct / self.answered if self.answered else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "section": self.name,
            "correct": self.correct,
            "incorrect": self.incorrect,
            "answered": self.answered,
            "skipped": self.skipped,
            "accuracy": self.accuracy,
        }


@dataclass
class AnalogyResult:
    sections: list[SectionScore]
    total: SectionScore
    method: str
    restrict: int
    case_sensitive: bool
    count_oov: bool
    questions: str  # file name of the question set
    predicted: list[list[str | None]]  # per section, per question: the answer given (None: skipped)
    fallbacks: int = 0  # questions answered by repeating gensim's computation (near-ties)

    @property
    def signature(self) -> str:
        """sacrebleu-style: every setting that changes the numbers."""
        return (
            f"analogy|method:{self.method}|restrict:{self.restrict}"
            f"|case:{'sensitive' if self.case_sensitive else 'insensitive'}"
            f"|oov:{'wrong' if self.count_oov else 'skip'}|questions:{self.questions}"
            f"|version:{__version__}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "signature": self.signature,
            "sections": [s.as_dict() for s in self.sections],
            "total": self.total.as_dict(),
        }


# ----------------------------------------------------------------------------- question files


def default_questions() -> Path:
    """Mikolov's questions-words.txt, as gensim ships it."""
    return gensim_test_file("questions-words.txt")


def read_questions(path: str | Path) -> list[QuestionSection]:
    """Parse a questions file: ``: section`` lines, then lines of four words ``a b c d``."""
    return parse_questions(read_bytes(path, "questions"), origin=str(path))


def parse_questions(data: bytes, origin: str = "<questions>") -> list[QuestionSection]:
    sections: list[QuestionSection] = []
    for no, line in numbered_lines(data, origin):
        if line.startswith(": "):  # gensim's section marker
            sections.append(QuestionSection(line.lstrip(": ").strip()))
            continue
        words = line.split()
        if not words:
            continue
        if len(words) != 4:
            raise BadInput(
                f"{origin}, line {no}: expected four words 'a b c d' or a ': section' line, "
                f"got {len(words)} word(s): {line.strip()[:60]!r}"
            )
        if not sections:
            raise BadInput(f"{origin}, line {no}: a question before the first ': section' line")
        sections[-1].questions.append(Question(words[0], words[1], words[2], words[3], no))
    if not any(s.questions for s in sections):
        raise BadInput(f"{origin}: no questions found (expected ': section' lines and 'a b c d' lines)")
    return sections


# ----------------------------------------------------------------------------- evaluation


def evaluate_analogies(
    table: EmbeddingTable,
    questions: str | Path | list[QuestionSection] | None = None,
    *,
    method: str = "add",
    restrict: int = DEFAULT_RESTRICT,
    case_sensitive: bool = False,
    count_oov: bool = False,
    device: str = "cpu",
) -> AnalogyResult:
    """Analogy accuracy per section and in total (3CosAdd: gensim's counts exactly)."""
    if method not in METHODS:
        raise BadInput(f"--method {method!r} is not a method; valid choices: {', '.join(METHODS)}")
    if restrict < 1:
        raise BadInput(f"--restrict must be at least 1, got {restrict}")
    name = "questions-words.txt"
    if questions is None:
        questions = default_questions()
    if isinstance(questions, (str, Path)):
        name = Path(questions).name
        questions = read_questions(questions)
    r = min(restrict, len(table.tokens))
    vocab = Keys.build(table.tokens[:r], case_sensitive)
    row_of: dict[str, int] = {}  # question word → its row (-1: unknown), looked up once

    def row(word: str) -> int:
        if word not in row_of:
            row_of[word] = vocab.row(word)
        return row_of[word]

    scores = [SectionScore(s.name) for s in questions]
    predicted: list[list[str | None]] = [[None] * len(s.questions) for s in questions]
    todo: list[tuple[int, int, str]] = []  # section, index, expected answer's key
    a: list[int] = []  # rows of the answered questions' words
    b: list[int] = []
    c: list[int] = []
    d: list[int] = []
    for si, sec in enumerate(questions):
        for qi, q in enumerate(sec.questions):
            ra, rb, rc, rd = row(q.a), row(q.b), row(q.c), row(q.d)
            if min(ra, rb, rc, rd) < 0:
                scores[si].skipped += 1
                scores[si].incorrect += count_oov
                continue
            todo.append((si, qi, vocab.keys[rd]))
            a.append(ra)
            b.append(rb)
            c.append(rc)
            d.append(rd)

    if not todo and not count_oov:  # as `similarity` does: a 0/0 accuracy says nothing
        raise BadInput(f"{name}: no question has all four words in the table's first {restrict} rows")
    fallbacks = 0
    if todo:
        answers, fallbacks = search.solve(table.vectors[:r], vocab, a, b, c, d, method=method, device=device)
        for (si, qi, expected), ans in zip(todo, answers, strict=True):
            predicted[si][qi] = ans
            if ans == expected:
                scores[si].correct += 1
            else:
                scores[si].incorrect += 1
    total = SectionScore(
        "Total accuracy",
        sum(s.correct for s in scores),
        sum(s.incorrect for s in scores),
        sum(s.skipped for s in scores),
    )
    return AnalogyResult(
        scores, total, method, restrict, case_sensitive, count_oov, name, predicted, fallbacks
    )
