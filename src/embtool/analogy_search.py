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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from embtool.analogy import MUL_EPS

if TYPE_CHECKING:
    import torch

BLOCK = 64  # rows per block of the bound (any size gives the same answers; this one is fast)
_U32 = 2.0**-24  # unit roundoff of float32
_GENSIM_TOPN = 5  # evaluate_word_analogies asks most_similar for topn=5 …
_GENSIM_TOP = _GENSIM_TOPN + 3  # … which sorts topn + len(question words) rows


@dataclass
class Vocab:
    """The first ``restrict`` rows as gensim sees them: a key per row, the first row per key."""

    keys: list[str]  # (R,) token, upper-cased unless case-sensitive
    first: dict[str, int]  # key → its first row (gensim's ok_vocab)
    group: np.ndarray  # (R,) int64: first row of the row's key
    variants: dict[str, list[int]]  # key → all its rows, only for keys with several

    @classmethod
    def build(cls, tokens: Sequence[str], case_sensitive: bool) -> Vocab:
        keys = list(tokens) if case_sensitive else [t.upper() for t in tokens]
        first: dict[str, int] = {}
        variants: dict[str, list[int]] = {}
        group: list[int] = []
        for i, k in enumerate(keys):
            f = first.setdefault(k, i)
            group.append(f)
            if f != i:
                variants.setdefault(k, [f]).append(i)
        return cls(keys, first, np.array(group, dtype=np.int64), variants)


Answers = tuple[list["str | None"], int]  # the key each question answers with, and fallbacks


def solve(
    vectors: torch.Tensor,
    vocab: Vocab,
    a: Sequence[int],
    b: Sequence[int],
    c: Sequence[int],
    *,
    method: str = "add",
    device: str = "cpu",
) -> Answers:
    """Answer "a : b :: c : ?" for rows a, b, c of ``vectors`` (R, D): the key of each answer
    (None when every row is a question word), and how many questions needed gensim's own steps."""
    rows = np.ascontiguousarray(vectors.detach().float().cpu().numpy())  # (R, D) float32, as gensim
    qa, qb, qc = (np.asarray(x, dtype=np.int64) for x in (a, b, c))
    return (_solve_add if method == "add" else _solve_mul)(rows, vocab, qa, qb, qc, device)


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
    i, j = np.nonzero((vals >= (best[q] - delta)[:, None]) & (vals > -np.inf))
    return q[i], rows[i, j], vals[i, j]


Arrays = np.ndarray  # (Q,) int64 rows of the question words


def _excluder(
    vocab: Vocab, dead: np.ndarray, a: Arrays, b: Arrays, c: Arrays
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    group = vocab.group

    def excluded(q: np.ndarray, rows: np.ndarray) -> np.ndarray:
        g = group[rows]  # every case variant of a question word is excluded, as gensim does
        return (g == a[q, None]) | (g == b[q, None]) | (g == c[q, None]) | dead[rows]

    return excluded


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(s, min(s + size, n)) for s in range(0, n, size)]


def _prepare(
    vectors: np.ndarray, a: Arrays, b: Arrays, c: Arrays, device: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Arrays, Arrays, Arrays]:
    norms, unit, dead = _row_norms(vectors)
    words, inv = np.unique(np.concatenate([a, b, c]), return_inverse=True)
    wa, wb, wc = inv.reshape(3, -1)  # question words as rows of S
    sims = _similarities(unit, words, device)  # (W, R)
    return norms, unit, dead, sims, wa, wb, wc


def _solve_mul(vectors: np.ndarray, vocab: Vocab, a: Arrays, b: Arrays, c: Arrays, device: str) -> Answers:
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

        def skip(q: np.ndarray, rows: np.ndarray, o: int = offset) -> np.ndarray:
            return excluded(q + o, rows)

        q, rows, _ = _search(bound, score, skip, r, 0.0)
        order = np.lexsort((rows, q))  # lowest row first within each question
        q, rows = q[order], rows[order]
        first = np.ones(len(q), dtype=bool)
        first[1:] = q[1:] != q[:-1]
        for qi, row in zip(q[first], rows[first], strict=True):
            answers[offset + qi] = vocab.keys[row]
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
    err = (vectors.shape[1] + 4) * _U32 * np.einsum("kd,kd->k", np.abs(v), np.abs(w)) / n + 2 * _U32 * np.abs(t)
    return t, err


def _solve_add(vectors: np.ndarray, vocab: Vocab, a: Arrays, b: Arrays, c: Arrays, device: str) -> Answers:
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

        def skip(q: np.ndarray, rows: np.ndarray, o: int = o) -> np.ndarray:
            return excluded(q + o, rows)

        q, rows, _ = _search(bound, score, skip, r, delta)
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


def _top5_suspects(vocab: Vocab, a: Arrays, b: Arrays, c: Arrays) -> list[int]:
    """Questions with a word that has other case variants (case-insensitive mode only)."""
    if not vocab.variants:
        return []
    many = np.zeros(len(vocab.keys), dtype=bool)
    many[[rows[0] for rows in vocab.variants.values()]] = True
    return np.flatnonzero(many[a] | many[b] | many[c]).tolist()


def _gensim_answer(vectors: np.ndarray, norms: np.ndarray, vocab: Vocab, a: int, b: int, c: int) -> str | None:
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
