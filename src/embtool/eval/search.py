"""The search behind `embtool analogy`: every answer gensim gives, without scoring every row.

How it is fast and still exact. A question "a:b :: c:?" touches three of the ~900 distinct words
of the question set, so one product S = V̂ Ŵᵀ (R × W, float32) replaces the R × 19,544 one; the
3CosAdd score of row r is then S[r,b] − S[r,a] + S[r,c] up to one positive factor per question.
Rows are cut into blocks; the block maxima of S[:,b] − S[:,a] per pair (a, b) and of S[:,c] per
word bound every row of a block, so only blocks that can hold a row within ``δ`` of the best are
read. Rows within ``δ`` (a proven bound on the float32 error of S) are re-scored as gensim scores
them (float32 query, row·q/‖row‖) in float64 with a rigorous error bar; when the best two are
closer than their error bars, or gensim's top-five rule could matter, that one question is
answered by repeating gensim's own float32 computation, so ties break as gensim breaks them.
The one product runs in :mod:`embtool.eval.product` (numpy on the CPU, torch on CUDA).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from embtool.eval.keyed import Keys, as_float32
from embtool.eval.product import cosines, cuda_device

MUL_EPS = 1e-3  # Levy & Goldberg's ε in 3CosMul
BLOCK = 64  # rows per block of the bound (any size gives the same answers; this one is fast)
DENSE = 0.15  # score a question against every row when its bound leaves more of the blocks
_U32 = 2.0**-24  # unit roundoff of float32
_GENSIM_TOPN = 5  # evaluate_word_analogies asks most_similar for topn=5 …
_GENSIM_TOP = _GENSIM_TOPN + 3  # … which sorts topn + len(question words) rows


Answers = tuple[list["str | None"], int]  # the key each question answers with, and fallbacks


def solve(
    vectors: Any,
    vocab: Keys,
    a: Sequence[int],
    b: Sequence[int],
    c: Sequence[int],
    d: Sequence[int],
    *,
    method: str = "add",
    device: str = "cpu",
) -> Answers:
    """Answer "a : b :: c : ?" for rows a, b, c of ``vectors`` (R, D), a numpy array or a torch
    tensor: the key of each answer (None when every row is a question word), and how many
    questions needed gensim's own steps. The expected answers ``d`` only speed the search up;
    they never change an answer. ``device``: where the similarity product runs (cpu: numpy)."""
    cuda = cuda_device(device)
    rows = as_float32(vectors)  # (R, D) float32, as gensim
    qa, qb, qc, qd = (np.asarray(x, dtype=np.int64) for x in (a, b, c, d))
    return (_solve_add if method == "add" else _solve_mul)(rows, vocab, qa, qb, qc, qd, cuda)


def _row_norms(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """gensim's norms (float32), the unit rows it uses, and which rows have no direction."""
    norms = np.linalg.norm(vectors, axis=1)  # (R,) exactly gensim's fill_norms
    dead = ~(np.isfinite(norms) & (norms > 0))  # zero rows: gensim scores them NaN, i.e. last
    unit = np.divide(vectors, norms[:, None], out=np.zeros_like(vectors), where=~dead[:, None])
    return norms, unit, dead


def _blockreduce(x: np.ndarray, op: str) -> np.ndarray:
    """(K, R) → (K, ⌈R/BLOCK⌉): the max (``op="max"``) or min of each block of BLOCK rows."""
    k, r = x.shape
    full = r // BLOCK
    reduce = np.max if op == "max" else np.min
    parts = [reduce(x[:, : full * BLOCK].reshape(k, full, BLOCK), axis=2)]
    if r % BLOCK:
        parts.append(reduce(x[:, full * BLOCK :], axis=1, keepdims=True))
    return np.concatenate(parts, axis=1)


Arrays = np.ndarray  # (Q,) int64 rows of the question words
Combine = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (S_b, S_c, S_a) → scores


@dataclass
class _Problem:
    """One slice of questions: their words as table rows and as rows of S, and the score."""

    sims: np.ndarray  # (W, R) cosines of the question words with every row
    wa: Arrays  # (Q,) rows of `sims` for a, b, c
    wb: Arrays
    wc: Arrays
    a: Arrays  # (Q,) table rows of a, b, c
    b: Arrays
    c: Arrays
    vocab: Keys
    dead: np.ndarray  # (R,) rows without a direction
    combine: Combine  # elementwise, float32; the block bounds use the same operations

    def score(self, q: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """(K, n) scores of rows (K, n) for questions q (K,); rows that may not answer: −inf."""
        s = self.sims
        vals = self.combine(s[self.wb[q, None], rows], s[self.wc[q, None], rows], s[self.wa[q, None], rows])
        g = self.vocab.group[rows]  # every case variant of a question word is left out, as gensim does
        own = (g == self.a[q, None]) | (g == self.b[q, None]) | (g == self.c[q, None]) | self.dead[rows]
        vals[own] = -np.inf
        return vals

    def score_all(self, q: np.ndarray) -> np.ndarray:
        """(K, R) scores of every row for questions q (K,), −inf where a row may not answer."""
        s = self.sims
        vals = self.combine(s[self.wb[q]], s[self.wc[q]], s[self.wa[q]])
        variants, keys = self.vocab.variants, self.vocab.keys
        for k, i in enumerate(q):
            for w in (self.a[i], self.b[i], self.c[i]):
                vals[k, variants.get(keys[w], [w])] = -np.inf
        vals[:, self.dead] = -np.inf
        return vals


def _search(p: _Problem, bound: np.ndarray, delta: float, hint: Arrays) -> tuple[Arrays, Arrays]:
    """Every (question, row) whose score is within ``delta`` of its question's best.

    ``bound`` (Q, nblocks) bounds the score of every row of a block from above; ``hint`` (Q,) is
    a row likely to score well (the expected answer), used only to start from a good lower bound.
    A question whose bound rules out too few blocks is scored against every row instead.
    """
    nq, nblk = bound.shape
    r = p.sims.shape[1]
    offs = np.arange(BLOCK)

    def block_scores(q: np.ndarray, blk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = blk[:, None] * BLOCK + offs  # (K, BLOCK)
        outside = rows >= r
        rows = np.minimum(rows, r - 1)
        vals = p.score(q, rows)
        vals[outside] = -np.inf
        return rows, vals

    # a first lower bound on each question's best: the hinted row and its most promising block
    qs = np.arange(nq)
    low = np.maximum(block_scores(qs, bound.argmax(axis=1))[1].max(axis=1), p.score(qs, hint[:, None])[:, 0])
    selected = bound >= (low - delta)[:, None]  # (Q, nblocks): blocks that may hold a candidate
    dense = selected.sum(axis=1) > DENSE * nblk
    selected[dense] = False
    found: list[tuple[np.ndarray, np.ndarray]] = []
    for part in _chunks(int(dense.sum()), 64):  # few blocks ruled out: score every row
        q = np.flatnonzero(dense)[part]
        vals = p.score_all(q)  # (K, R)
        i, rows = np.nonzero((vals >= (vals.max(axis=1) - delta)[:, None]) & (vals > -np.inf))
        found.append((q[i], rows))
    q_all, blk_all = np.nonzero(selected)
    best = np.full(nq, -np.inf, dtype=np.float32)
    kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for part in _chunks(len(q_all), 1 << 15):
        q, blk = q_all[part], blk_all[part]
        rows, vals = block_scores(q, blk)
        vmax = vals.max(axis=1)
        np.maximum.at(best, q, vmax)
        keep = vmax >= low[q] - delta
        kept.append((q[keep], rows[keep], vals[keep]))
    for q, rows, vals in kept:
        i, j = np.nonzero((vals >= (best[q] - delta)[:, None]) & (vals > -np.inf))
        found.append((q[i], rows[i, j]))
    if not found:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found])


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(s, min(s + size, n)) for s in range(0, n, size)]


def _prepare(
    vectors: np.ndarray, a: Arrays, b: Arrays, c: Arrays, cuda: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Arrays, Arrays, Arrays]:
    norms, unit, dead = _row_norms(vectors)
    words, inv = np.unique(np.concatenate([a, b, c]), return_inverse=True)
    wa, wb, wc = inv.reshape(3, -1)  # question words as rows of S
    sims = cosines(unit, words, cuda)  # (W, R)
    return norms, unit, dead, sims, wa, wb, wc


def _solve_mul(
    vectors: np.ndarray, vocab: Keys, a: Arrays, b: Arrays, c: Arrays, d: Arrays, cuda: str | None
) -> Answers:
    """3CosMul: argmax over rows of cos'(d,b)·cos'(d,c)/(cos'(d,a)+ε), lowest row on ties."""
    _, _, dead, sims, wa, wb, wc = _prepare(vectors, a, b, c, cuda)
    half = np.float32(0.5)

    def shifted(x: np.ndarray) -> np.ndarray:  # cos' = (cos + 1)/2, kept ≥ 0 so bounds stay monotone
        return np.maximum((x + np.float32(1)) * half, np.float32(0))

    def mul(sb: np.ndarray, sc: np.ndarray, sa: np.ndarray) -> np.ndarray:
        return shifted(sb) * shifted(sc) / (shifted(sa) + np.float32(MUL_EPS))

    hi, lo = _blockreduce(sims, "max"), _blockreduce(sims, "min")  # (W, nblocks)
    answers: list[str | None] = [None] * len(a)
    for part in _chunks(len(a), 4096):
        p = _Problem(sims, wa[part], wb[part], wc[part], a[part], b[part], c[part], vocab, dead, mul)
        bound = mul(hi[p.wb], hi[p.wc], lo[p.wa])  # monotone in each cosine: an upper bound per block
        q, rows = _search(p, bound, 0.0, d[part])
        order = np.lexsort((rows, q))  # lowest row first within each question
        q, rows = q[order], rows[order]
        first = np.r_[True, q[1:] != q[:-1]] if len(q) else np.zeros(0, dtype=bool)
        for qi, row in zip(q[first], rows[first], strict=True):
            answers[part.start + qi] = vocab.keys[row]
    return answers, 0


def _queries(unit: np.ndarray, a: Arrays, b: Arrays, c: Arrays) -> np.ndarray:
    """gensim's query per question: unit(mean(b̂, ĉ, −â)), float32, (Q, D).

    gensim adds b̂, then ĉ, then −â into a float32 mean, divides by 3 in float64, scales by the
    reciprocal of the float64 norm and rounds to float32; the same steps give the same bits.
    """
    m = ((unit[b] + unit[c]) - unit[a]).astype(np.float64) / 3.0
    length = np.sqrt(np.einsum("qd,qd->q", m, m))
    scale = np.divide(1.0, length, out=np.ones_like(length), where=length > 0)
    return (m * scale[:, None]).astype(np.float32)


def _rescore(
    vectors: np.ndarray, norms: np.ndarray, queries: np.ndarray, q: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """gensim's score row·q/‖row‖ in float64, and a bound on how far gensim's float32 value is.

    A float32 dot product in any order errs by at most D·u·Σ|row_i q_i|; one more u for the
    division, and slack for a one-ulp difference in q: (D + 4)·u·Σ|row_i q_i|/‖row‖ + 2u|t|.
    """
    v = vectors[rows].astype(np.float64)  # (K, D)
    w = queries[q].astype(np.float64)  # (K, D)
    n = norms[rows].astype(np.float64)
    t = np.einsum("kd,kd->k", v, w) / n
    dots = np.einsum("kd,kd->k", np.abs(v), np.abs(w))  # (K,) Σ|row_i q_i|
    err = (vectors.shape[1] + 4) * _U32 * dots / n + 2 * _U32 * np.abs(t)
    return t, err


def _solve_add(
    vectors: np.ndarray, vocab: Keys, a: Arrays, b: Arrays, c: Arrays, d: Arrays, cuda: str | None
) -> Answers:
    dim = vectors.shape[1]
    norms, unit, dead, sims, wa, wb, wc = _prepare(vectors, a, b, c, cuda)
    # S carries at most D·u error per entry; with the query's own rounding, 3CosAdd scores
    # S[r,b] − S[r,a] + S[r,c] are within E = 6·D·u + 64u of (3‖m‖ ×) gensim's; δ = 4E ≥ 2E.
    delta = 4 * (6 * dim * _U32 + 64 * _U32)
    pairs, pair_of = np.unique(np.stack([wa, wb], axis=1), axis=0, return_inverse=True)
    pair_of = pair_of.reshape(-1)
    pair_hi = np.concatenate(
        [_blockreduce(sims[pairs[s, 1]] - sims[pairs[s, 0]], "max") for s in _chunks(len(pairs), 64)]
    )  # (pairs, nblocks): block maxima of S[:,b] − S[:,a]
    word_hi = _blockreduce(sims, "max")  # (W, nblocks)
    queries = _queries(unit, a, b, c)  # (Q, D)

    def add(sb: np.ndarray, sc: np.ndarray, sa: np.ndarray) -> np.ndarray:
        return (sb - sa) + sc  # the order the pair bound assumes

    winner = np.full(len(a), -1, dtype=np.int64)
    unsure = np.zeros(len(a), dtype=bool)
    t_win = np.zeros(len(a))
    e_win = np.zeros(len(a))
    for part in _chunks(len(a), 4096):
        p = _Problem(sims, wa[part], wb[part], wc[part], a[part], b[part], c[part], vocab, dead, add)
        bound = pair_hi[pair_of[part]] + word_hi[p.wc]  # (q, nblocks) ≥ every row's score, rounding included
        q, rows = _search(p, bound, delta, d[part])
        if not len(q):
            continue  # only question words to choose from: gensim's own steps below
        q = q + part.start
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
        own = (int(a[i]), int(b[i]), int(c[i]))
        extra = {v for w in own for v in vocab.variants.get(vocab.keys[w], []) if v not in own}
        extra_rows = np.array(sorted(extra), dtype=np.int64)
        extra_rows = extra_rows[~dead[extra_rows]]
        t, e = _rescore(vectors, norms, queries, np.full(len(extra_rows), i), extra_rows)
        if np.any(np.abs(t - t_win[i]) <= e + e_win[i]):
            unsure[i] = True
        elif np.sum(t > t_win[i]) >= _GENSIM_TOPN:
            unsure[i] = True  # gensim answers with a variant of a question word then
    fallbacks = np.flatnonzero(unsure).tolist()
    for i in fallbacks:
        answers[i] = _gensim_answer(vectors, norms, vocab, int(a[i]), int(b[i]), int(c[i]))
    return answers, len(fallbacks)


def _top5_suspects(vocab: Keys, a: Arrays, b: Arrays, c: Arrays) -> list[int]:
    """Questions with a word that has other case variants (case-insensitive mode only)."""
    if not vocab.variants:
        return []
    many = np.zeros(len(vocab.keys), dtype=bool)
    many[[rows[0] for rows in vocab.variants.values()]] = True
    return np.flatnonzero(many[a] | many[b] | many[c]).tolist()


def _gensim_answer(vectors: np.ndarray, norms: np.ndarray, vocab: Keys, a: int, b: int, c: int) -> str | None:
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
