"""Word-analogy accuracy of a table (Mikolov et al. 2013; the paper's Table 4).

3CosAdd answers exactly as gensim's ``KeyedVectors.evaluate_word_analogies`` with its defaults:
rows are unit-normalised; only the first ``restrict`` rows are candidates and count as known;
words are upper-cased unless ``case_sensitive`` (the first case variant of a word wins); a
question with an unknown word is skipped (``count_oov``: counted wrong, gensim's
``dummy4unknown``); the answer is gensim's: the best of its top five rows that is not a question
word. 3CosMul (Levy & Goldberg 2014) scores cos'(d,b)·cos'(d,c)/(cos'(d,a)+ε), cos' = (cos+1)/2.

How it is fast and still exact. A question "a:b :: c:?" touches three of the ~900 distinct words
of the question set, so one product S = V̂ Ŵᵀ (R × W, float32) replaces the R × 19,544 one; the
3CosAdd score of row r is then S[r,b] − S[r,a] + S[r,c] up to one positive factor per question.
Rows are cut into blocks; the block maxima of S[:,b] − S[:,a] per pair (a, b) and of S[:,c] per
word bound every row of a block, so only blocks that can hold a row within ``δ`` of the best are
read. Rows within ``δ`` (a proven bound on the float32 error of S) are re-scored as gensim scores
them (float32 query, row·q/‖row‖) in float64 with a rigorous error bar; when the best two are
closer than their error bars, or gensim's top-five rule could matter, that one question is
answered by repeating gensim's own float32 computation, so ties break as gensim breaks them.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embtool._version import __version__
from embtool.errors import BadInput

if TYPE_CHECKING:
    from embtool.table import EmbeddingTable

METHODS = ("add", "mul")
DEFAULT_RESTRICT = 300_000  # gensim's restrict_vocab
MUL_EPS = 1e-3  # Levy & Goldberg's ε
BLOCK = 64  # rows per block of the bound (any size gives the same answers; this one is fast)
_U32 = 2.0**-24  # unit roundoff of float32
_GENSIM_TOPN = 5  # evaluate_word_analogies asks most_similar for topn=5 …
_GENSIM_TOP = _GENSIM_TOPN + 3  # … which sorts topn + len(question words) rows


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


def gensim_test_file(name: str) -> Path:
    """A file that gensim ships in ``gensim/test/test_data`` (found without importing gensim)."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise BadInput(f"gensim is not installed, so its {name} is not available; pass the file instead")
    path = Path(next(iter(spec.submodule_search_locations))) / "test" / "test_data" / name
    if not path.is_file():
        raise BadInput(f"{path}: not found in this gensim installation; pass the file instead")
    return path


def default_questions() -> Path:
    """Mikolov's questions-words.txt, as gensim ships it."""
    return gensim_test_file("questions-words.txt")


def read_questions(path: str | Path) -> list[QuestionSection]:
    """Parse a questions file: ``: section`` lines, then lines of four words ``a b c d``."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise BadInput(f"{path}: cannot read the questions file ({e.strerror or e})") from None
    return parse_questions(data, origin=str(path))


def parse_questions(data: bytes, origin: str = "<questions>") -> list[QuestionSection]:
    sections: list[QuestionSection] = []
    for no, raw in enumerate(data.splitlines(), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadInput(f"{origin}, line {no}: not UTF-8 text") from None
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
        sections[-1].questions.append(Question(*words, line=no))
    if not any(s.questions for s in sections):
        raise BadInput(f"{origin}: no questions found (expected ': section' lines and 'a b c d' lines)")
    return sections


# ----------------------------------------------------------------------------- vocabulary


@dataclass
class _Vocab:
    """The first ``restrict`` rows as gensim sees them: a key per row, the first row per key."""

    keys: list[str]  # (R,) token, upper-cased unless case-sensitive
    first: dict[str, int]  # key → its first row (gensim's ok_vocab)
    group: np.ndarray  # (R,) int64: first row of the row's key
    variants: dict[str, list[int]]  # key → all its rows, only for keys with several

    @classmethod
    def build(cls, tokens: Sequence[str], case_sensitive: bool) -> _Vocab:
        keys = list(tokens) if case_sensitive else [t.upper() for t in tokens]
        first: dict[str, int] = {}
        variants: dict[str, list[int]] = {}
        group = np.empty(len(keys), dtype=np.int64)
        for i, k in enumerate(keys):
            f = first.setdefault(k, i)
            group[i] = f
            if f != i:
                variants.setdefault(k, [f]).append(i)
        return cls(keys, first, group, variants)


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
        raise BadInput(f"invalid method {method!r}; valid choices: {', '.join(METHODS)}")
    if restrict < 1:
        raise BadInput(f"--restrict must be at least 1, got {restrict}")
    name = "questions-words.txt"
    if questions is None:
        questions = default_questions()
    if isinstance(questions, (str, Path)):
        name = Path(questions).name
        questions = read_questions(questions)
    r = min(restrict, table.n)
    vocab = _Vocab.build(table.tokens[:r], case_sensitive)
    norm = (lambda w: w) if case_sensitive else str.upper

    scores = [SectionScore(s.name) for s in questions]
    predicted: list[list[str | None]] = [[None] * len(s.questions) for s in questions]
    todo: list[tuple[int, int, int, int, int, str]] = []  # section, index, a, b, c rows, expected
    for si, sec in enumerate(questions):
        for qi, q in enumerate(sec.questions):
            words = [norm(w) for w in (q.a, q.b, q.c, q.d)]
            rows = [vocab.first.get(w, -1) for w in words]
            if min(rows) < 0:
                scores[si].skipped += 1
                scores[si].incorrect += count_oov
                continue
            todo.append((si, qi, rows[0], rows[1], rows[2], words[3]))

    fallbacks = 0
    if todo:
        vectors = np.ascontiguousarray(table.vectors[:r].float().cpu().numpy())  # (R, D)
        a, b, c = (np.array([t[k] for t in todo], dtype=np.int64) for k in (2, 3, 4))
        solve = _solve_add if method == "add" else _solve_mul
        answers, fallbacks = solve(vectors, vocab, a, b, c, device)
        for (si, qi, *_, expected), ans in zip(todo, answers):
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
    return AnalogyResult(scores, total, method, restrict, case_sensitive, count_oov, name, predicted, fallbacks)


# ----------------------------------------------------------------------------- the search


def _row_norms(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """gensim's norms (float32), the unit rows it uses, and which rows have no direction."""
    norms = np.linalg.norm(vectors, axis=1)  # (R,) exactly gensim's fill_norms
    dead = ~(np.isfinite(norms) & (norms > 0))  # zero rows: gensim scores them NaN, i.e. last
    unit = np.divide(vectors, norms[:, None], out=np.zeros_like(vectors), where=~dead[:, None])
    return norms, unit, dead


def _similarities(unit: np.ndarray, words: np.ndarray, device: str) -> np.ndarray:
    """S = Ŵ V̂ᵀ, (W, R) float32: the cosine of every row with every question word."""
    import torch

    dev = torch.device(device)
    rows = torch.from_numpy(unit).to(dev)  # (R, D)
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # the error bound δ assumes true float32
    try:
        sims = rows[torch.from_numpy(words).to(dev)] @ rows.T  # (W, R)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    return sims.cpu().numpy()


def _blockreduce(x: np.ndarray, op: Callable[..., np.ndarray]) -> np.ndarray:
    """(K, R) → (K, ⌈R/BLOCK⌉): ``op`` (np.max or np.min) over each block of BLOCK rows."""
    k, r = x.shape
    full = r // BLOCK
    parts = [op(x[:, : full * BLOCK].reshape(k, full, BLOCK), axis=2)]
    if r % BLOCK:
        parts.append(op(x[:, full * BLOCK :], axis=1, keepdims=True))
    return np.concatenate(parts, axis=1)


def _search(
    bound: np.ndarray,
    score: Callable[[np.ndarray, np.ndarray], np.ndarray],
    excluded: Callable[[np.ndarray, np.ndarray], np.ndarray],
    r: int,
    delta: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (question, row) whose score is within ``delta`` of its question's best.

    ``bound`` (Q, nblocks) bounds the score of every row of a block from above;
    ``score(q, rows)`` gives (K, n) scores of rows (K, n) for questions q (K,);
    ``excluded(q, rows)`` marks rows that may not answer. Returns (question, row, score) arrays.
    """
    nq, nblk = bound.shape
    offs = np.arange(BLOCK)

    def block_scores(q: np.ndarray, blk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = blk[:, None] * BLOCK + offs  # (K, BLOCK)
        outside = rows >= r
        rows = np.minimum(rows, r - 1)
        vals = score(q, rows)
        vals[outside | excluded(q, rows)] = -np.inf
        return rows, vals

    # a first lower bound on each question's best: the rows of its four most promising blocks
    k0 = min(4, nblk)
    top = np.argpartition(-bound, k0 - 1, axis=1)[:, :k0] if nblk > k0 else np.tile(np.arange(nblk), (nq, 1))
    qs = np.repeat(np.arange(nq), k0)
    _, vals = block_scores(qs, top.reshape(-1))
    low = vals.reshape(nq, -1).max(axis=1)  # (Q,)
    # then every block whose bound reaches it, in slices that keep memory small
    q_all, blk_all = np.nonzero(bound >= (low - delta)[:, None])
    best = np.full(nq, -np.inf)
    kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    step = 1 << 16
    for s in range(0, len(q_all), step):
        q, blk = q_all[s : s + step], blk_all[s : s + step]
        rows, vals = block_scores(q, blk)
        vmax = vals.max(axis=1)
        np.maximum.at(best, q, vmax)
        keep = vmax >= low[q] - delta
        kept.append((q[keep], rows[keep], vals[keep]))
    q = np.concatenate([k[0] for k in kept])
    rows = np.concatenate([k[1] for k in kept])
    vals = np.concatenate([k[2] for k in kept])
    i, j = np.nonzero(vals >= (best[q] - delta)[:, None])
    return q[i], rows[i, j], vals[i, j]


def _excluder(vocab: _Vocab, dead: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray):
    group = vocab.group

    def excluded(q: np.ndarray, rows: np.ndarray) -> np.ndarray:
        g = group[rows]  # every case variant of a question word is excluded, as gensim does
        return (g == a[q, None]) | (g == b[q, None]) | (g == c[q, None]) | dead[rows]

    return excluded


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(s, min(s + size, n)) for s in range(0, n, size)]


def _prepare(vectors: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray, device: str):
    norms, unit, dead = _row_norms(vectors)
    words, inv = np.unique(np.concatenate([a, b, c]), return_inverse=True)
    wa, wb, wc = inv.reshape(3, -1)  # question words as rows of S
    sims = _similarities(unit, words, device)  # (W, R)
    return norms, unit, dead, sims, wa, wb, wc


def _solve_mul(vectors: np.ndarray, vocab: _Vocab, a, b, c, device: str) -> tuple[list[str | None], int]:
    """3CosMul: argmax over rows of cos'(d,b)·cos'(d,c)/(cos'(d,a)+ε), lowest row on ties."""
    r = vectors.shape[0]
    _, _, dead, sims, wa, wb, wc = _prepare(vectors, a, b, c, device)
    half = np.float32(0.5)

    def shifted(x: np.ndarray) -> np.ndarray:  # cos' = (cos + 1)/2, kept ≥ 0 so bounds stay monotone
        return np.maximum((x + np.float32(1)) * half, np.float32(0))

    def mul(sb: np.ndarray, sc: np.ndarray, sa: np.ndarray) -> np.ndarray:
        return shifted(sb) * shifted(sc) / (shifted(sa) + np.float32(MUL_EPS))

    hi, lo = _blockreduce(sims, np.max), _blockreduce(sims, np.min)  # (W, nblocks)
    excluded = _excluder(vocab, dead, a, b, c)
    answers: list[str | None] = [None] * len(a)
    for part in _chunks(len(a), 4096):
        pa, pb, pc = wa[part], wb[part], wc[part]
        bound = mul(hi[pb], hi[pc], lo[pa])  # monotone in each cosine: an upper bound per block

        def score(q: np.ndarray, rows: np.ndarray, pa=pa, pb=pb, pc=pc) -> np.ndarray:
            return mul(sims[pb[q, None], rows], sims[pc[q, None], rows], sims[pa[q, None], rows])

        offset = part.start
        q, rows, _ = _search(bound, score, lambda q, rows, o=offset: excluded(q + o, rows), r, 0.0)
        order = np.lexsort((rows, q))  # lowest row first within each question
        q, rows = q[order], rows[order]
        first = np.ones(len(q), dtype=bool)
        first[1:] = q[1:] != q[:-1]
        for qi, row in zip(q[first], rows[first]):
            answers[offset + qi] = vocab.keys[row]
    return answers, 0


def _queries(unit: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """gensim's query per question: unit(mean(b̂, ĉ, −â)), float32, (Q, D).

    gensim adds b̂, then ĉ, then −â into a float32 mean, divides by 3 in float64, scales by the
    reciprocal of the float64 norm and rounds to float32; the same steps give the same bits.
    """
    m = ((unit[b] + unit[c]) - unit[a]).astype(np.float64) / 3.0
    length = np.sqrt(np.einsum("qd,qd->q", m, m))
    scale = np.divide(1.0, length, out=np.ones_like(length), where=length > 0)
    return (m * scale[:, None]).astype(np.float32)


def _rescore(vectors, norms, queries, q, rows) -> tuple[np.ndarray, np.ndarray]:
    """gensim's score row·q/‖row‖ in float64, and a bound on how far gensim's float32 value is.

    A float32 dot product in any order errs by at most D·u·Σ|row_i q_i|; one more u for the
    division, and slack for a one-ulp difference in q: (D + 4)·u·Σ|row_i q_i|/‖row‖ + 2u|t|.
    """
    v = vectors[rows].astype(np.float64)  # (K, D)
    w = queries[q].astype(np.float64)  # (K, D)
    n = norms[rows].astype(np.float64)
    t = np.einsum("kd,kd->k", v, w) / n
    err = (vectors.shape[1] + 4) * _U32 * np.einsum("kd,kd->k", np.abs(v), np.abs(w)) / n + 2 * _U32 * np.abs(t)
    return t, err


def _solve_add(vectors: np.ndarray, vocab: _Vocab, a, b, c, device: str) -> tuple[list[str | None], int]:
    r, dim = vectors.shape
    norms, unit, dead, sims, wa, wb, wc = _prepare(vectors, a, b, c, device)
    # S carries at most D·u error per entry; with the query's own rounding, 3CosAdd scores
    # S[r,b] − S[r,a] + S[r,c] are within E = 6·D·u + 64u of (3‖m‖ ×) gensim's; δ = 4E ≥ 2E.
    delta = 4 * (6 * dim * _U32 + 64 * _U32)
    pairs, pair_of = np.unique(np.stack([wa, wb], axis=1), axis=0, return_inverse=True)
    pair_of = pair_of.reshape(-1)
    pair_hi = np.concatenate(
        [_blockreduce(sims[pairs[s, 1]] - sims[pairs[s, 0]], np.max) for s in _chunks(len(pairs), 64)]
    )  # (pairs, nblocks): block maxima of S[:,b] − S[:,a]
    word_hi = _blockreduce(sims, np.max)  # (W, nblocks)
    queries = _queries(unit, a, b, c)  # (Q, D)
    excluded = _excluder(vocab, dead, a, b, c)

    winner = np.full(len(a), -1, dtype=np.int64)
    unsure = np.zeros(len(a), dtype=bool)
    t_win = np.zeros(len(a))
    e_win = np.zeros(len(a))
    for part in _chunks(len(a), 4096):
        pa, pb, pc, pp = wa[part], wb[part], wc[part], pair_of[part]
        bound = pair_hi[pp] + word_hi[pc]  # (q, nblocks); ≥ every row's score, rounding included

        def score(q: np.ndarray, rows: np.ndarray, pa=pa, pb=pb, pc=pc) -> np.ndarray:
            return (sims[pb[q, None], rows] - sims[pa[q, None], rows]) + sims[pc[q, None], rows]

        o = part.start
        q, rows, _ = _search(bound, score, lambda q, rows, o=o: excluded(q + o, rows), r, delta)
        q = q + o
        t, e = _rescore(vectors, norms, queries, q, rows)
        order = np.lexsort((-t, q))  # per question, best first
        q, rows, t, e = q[order], rows[order], t[order], e[order]
        starts = np.flatnonzero(np.r_[True, q[1:] != q[:-1]])
        head = q[starts]
        winner[head], t_win[head], e_win[head] = rows[starts], t[starts], e[starts]
        rival = t + e
        rival[starts] = -np.inf
        rival_max = np.maximum.reduceat(rival, starts)
        unsure[head] = t[starts] - e[starts] <= rival_max  # too close to call in float32
    unsure |= winner < 0  # nothing but question words in the vocabulary
    unsure |= dead[a] | dead[b] | dead[c]  # gensim's query is NaN then

    answers: list[str | None] = [vocab.keys[w] if w >= 0 else None for w in winner]
    for i in _top5_suspects(vocab, a, b, c):
        if unsure[i]:
            continue
        # gensim takes the best of its first five rows after removing a, b, c themselves;
        # other case variants of a, b, c still take places among those five
        extra = [v for w in (a[i], b[i], c[i]) for v in vocab.variants.get(vocab.keys[w], []) if v not in (a[i], b[i], c[i])]
        extra_rows = np.array(sorted(set(extra)), dtype=np.int64)
        extra_rows = extra_rows[~dead[extra_rows]]
        t, e = _rescore(vectors, norms, queries, np.full(len(extra_rows), i), extra_rows)
        if np.any(np.abs(t - t_win[i]) <= e + e_win[i]):
            unsure[i] = True
        elif np.sum(t > t_win[i]) >= _GENSIM_TOPN:
            unsure[i] = True  # gensim answers with a variant of a question word then
    fallbacks = np.flatnonzero(unsure)
    for i in fallbacks:
        answers[i] = _gensim_answer(vectors, norms, vocab, int(a[i]), int(b[i]), int(c[i]))
    return answers, len(fallbacks)


def _top5_suspects(vocab: _Vocab, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> list[int]:
    """Questions with a word that has other case variants (case-insensitive mode only)."""
    if not vocab.variants:
        return []
    many = np.zeros(len(vocab.keys), dtype=bool)
    many[[rows[0] for rows in vocab.variants.values()]] = True
    return np.flatnonzero(many[a] | many[b] | many[c]).tolist()


def _gensim_answer(vectors: np.ndarray, norms: np.ndarray, vocab: _Vocab, a: int, b: int, c: int) -> str | None:
    """One question answered by gensim's own float32 steps, so near-ties fall gensim's way."""
    from scipy.linalg.blas import dnrm2, dscal

    with np.errstate(all="ignore"):
        mean = np.zeros(vectors.shape[1], dtype=np.float32)
        for row, weight in ((b, 1.0), (c, 1.0), (a, -1.0)):
            mean += np.float64(weight) * (vectors[row] / norms[row])  # float32 sums, as gensim
        m = mean / np.float64(3.0)  # float64
        length = dnrm2(m)
        q = (dscal(1.0 / length, m) if length > 0.0 else m).astype(np.float32)
        dists = np.dot(vectors, q) / norms  # (R,) gensim's sgemv and division
        neg = -dists
        if _GENSIM_TOP >= neg.size:
            top = np.argsort(neg)[:_GENSIM_TOP]
        else:
            part = np.argpartition(neg, _GENSIM_TOP)[:_GENSIM_TOP]
            top = part[np.argsort(neg[part])]
    ignore = {vocab.keys[a], vocab.keys[b], vocab.keys[c]}
    shown = [int(i) for i in top if i not in (a, b, c)][:_GENSIM_TOPN]
    answer = None
    for i in shown:
        answer = vocab.keys[i]
        if answer not in ignore:
            break
    return answer
