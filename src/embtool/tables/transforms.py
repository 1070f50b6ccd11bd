"""Pure functions on tables: xavier, standardize, shuffle, scale, posenc.

Each returns a new EmbeddingTable (the input is left as it was) whose history ends with the step
that made it. Values are computed in float32 and stored in the input's dtype. Every random step
takes ``seed`` and its own ``numpy.random.Generator``, never global state. ``standardize`` and
``scale`` return their elementwise map pending (``table.Affine``): ``save`` streams it from the
input, ``vectors`` computes it when asked.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from embtool.core.errors import BadInput
from embtool.tables.positional import DEFAULT_BASE, DEFAULT_MAX_LEN, check_max_len, encodings
from embtool.tables.stats import table_moments, xavier_bound, xavier_std
from embtool.tables.table import Affine, EmbeddingTable, history_entry
from embtool.text.vocabfile import Vocabulary

SHUFFLE_AXES = ("both", "rows", "cols", "all")


MAX_DIM = 1 << 16  # D of a table: far above any model's width, low enough that a typo is named


def xavier(
    vocab: Vocabulary | list[str], dim: int, seed: int = 0, tokenizer: str | None = None
) -> EmbeddingTable:
    """The random baseline (N, D) float32: rows drawn from U(−a, a), a = √(6/(N+D)) (Glorot & Bengio)."""
    tokens = list(vocab.tokens if isinstance(vocab, Vocabulary) else vocab)
    if not 1 <= dim <= MAX_DIM:
        raise BadInput(f"--dim must be between 1 and {MAX_DIM:,}, got {dim:,}")
    if not tokens:
        raise BadInput("the vocabulary is empty")
    if tokenizer is None:
        tokenizer = (vocab.tokenizer if isinstance(vocab, Vocabulary) else None) or "whitespace"
    a = xavier_bound(len(tokens), dim)
    vectors = np.random.default_rng(seed).random((len(tokens), dim), dtype=np.float32)  # (N, D) U[0, 1)
    vectors *= np.float32(2 * a)
    vectors -= np.float32(a)  # U[−a, a)
    entry = history_entry("init", {"method": "xavier", "dim": dim, "seed": seed})
    return EmbeddingTable(vectors, tokens, source="xavier", tokenizer=tokenizer, history=[entry])


def parse_target(to: str) -> tuple[str, float | None]:
    """Split a ``--to`` value into ("xavier", None), ("normal", STD) or ("table", None)."""
    if to == "xavier":
        return "xavier", None
    if to.startswith("normal:"):
        text = to.removeprefix("normal:")
        try:
            std = float(text)
        except ValueError:
            raise BadInput(f"--to normal:STD needs a number, got {text!r}") from None
        if not std > 0 or not math.isfinite(std):
            raise BadInput(f"--to normal:STD needs a positive σ, got {text}")
        return "normal", std
    return "table", None


def standardize(
    table: EmbeddingTable, to: str | EmbeddingTable = "xavier", fan: int | None = None
) -> EmbeddingTable:
    """Shift and scale all values to a target mean and σ, with the table's global mean and σ.

    ``to="xavier"``: Eq. 1, x* = (x − mean(X)) · σ_x/σ(X), σ_x = √(2/(N+D)), N = ``fan`` or the
    row count. ``to="normal:STD"``: mean 0, σ = STD. ``to=<EmbeddingTable>``: that table's mean
    and σ (Eq. 4, the paper's Xavier_Pre-trained when the input is a Xavier table).
    """
    mean, std = table_moments(table)
    if std == 0.0:
        raise BadInput(f"{table.origin}: all values are equal (σ = 0); cannot standardize")
    args: dict[str, Any] = {}
    if isinstance(to, EmbeddingTable):
        target_mean, target_std = table_moments(to)
        if target_std == 0.0:  # every row would become the same vector, its mean
            raise BadInput(
                f"--to {to.origin}: all values are equal (σ = 0); there is no spread to match: give a "
                "table whose values vary, or --to xavier / normal:STD"
            )
        args["to"] = to.origin
        args["to_source"] = to.source
    else:
        kind, value = parse_target(to)
        if kind == "table":
            raise BadInput(f"--to {to!r}: pass the table itself (load it first)")
        if fan is not None and fan < 1:
            raise BadInput(f"--fan must be a positive row count, got {fan}")
        target_mean = 0.0
        target_std = value if value is not None else xavier_std(fan or table.n, table.dim)
        args["to"] = to
    if fan is not None:
        args["fan"] = fan
    args.update(from_mean=mean, from_std=std, to_mean=target_mean, to_std=target_std)
    # Eq. 1 / Eq. 4: x* = (x − mean) · σ_target/σ + mean_target
    return table.derive_map("standardize", args, Affine(target_std / std, shift=mean, add=target_mean))


def shuffle(table: EmbeddingTable, axis: str = "both", seed: int = 0) -> EmbeddingTable:
    """Permute values without moving tokens: row i keeps token i, semantics are destroyed.

    "both" permutes rows, then columns (the paper's Pre-trained_Shuffled); "rows" or "cols"
    only one; "all" every element. The multiset of values is kept exactly.
    """
    if axis not in SHUFFLE_AXES:
        raise BadInput(f"--axis {axis!r} is not valid; choose one of: {', '.join(SHUFFLE_AXES)}")
    rng = np.random.default_rng(seed)
    x = table.vectors  # (N, D)
    n, d = x.shape
    if axis == "all":
        out = x.reshape(-1)[rng.permutation(n * d)].reshape(n, d)
        return table.derive(out, "shuffle", {"axis": axis, "seed": seed})
    rows = rng.permutation(n) if axis in ("both", "rows") else None  # (N,)
    cols = rng.permutation(d) if axis in ("both", "cols") else None  # (D,)
    out = np.empty_like(x)  # (N, D): out[i, j] = x[rows[i], cols[j]]
    step = max(
        1, (1 << 20) // max(1, d * x.itemsize)
    )  # rows per 1 MiB block: gathered into cache, then their columns
    for start in range(0, n, step):
        stop = min(start + step, n)
        block = x[rows[start:stop]] if rows is not None else x[start:stop]  # (B, D)
        if cols is None:
            out[start:stop] = block
        else:
            np.take(block, cols, axis=1, out=out[start:stop])
    return table.derive(out, "shuffle", {"axis": axis, "seed": seed})


def finite_factor(text: str | float, option: str, hint: str) -> float:
    """``text`` as a finite float, else a one-line error naming ``option`` (``hint``: what to give)."""
    try:
        value = float(text)
    except ValueError:
        raise BadInput(f"{option} {text!r}: {hint}") from None
    if not math.isfinite(value):
        raise BadInput(f"{option} {text!r}: the factor must be finite")
    return value


def scale(table: EmbeddingTable, by: str | float = "sqrt-dim") -> EmbeddingTable:
    """Multiply every value by √D (``"sqrt-dim"``, the transformer's input scaling) or a number."""
    factor = (
        math.sqrt(table.dim) if by == "sqrt-dim" else finite_factor(by, "--by", "give sqrt-dim or a number")
    )
    _check_no_overflow(table, factor, f"--by {by}")
    args = {"by": by if by == "sqrt-dim" else factor, "factor": factor}
    return table.derive_map("scale", args, Affine(factor))


def posenc_factor(table: EmbeddingTable, factor: str | float) -> float:
    """The number ``posenc --factor`` means: a number, or ``sigma-ratio``: σ_p/σ_x, the table's σ over
    Xavier's σ for its N × D (Eq. 1), Table 4's last row (GloVe & (Pos. Enc. × σ_p/σ_x))."""
    if factor == "sigma-ratio":
        _, std = table_moments(table)
        return std / xavier_std(table.n, table.dim)
    return finite_factor(factor, "--factor", "give a number or sigma-ratio")


def _check_no_overflow(table: EmbeddingTable, factor: float, option: str) -> None:
    """BadInput naming the option (not the table) when finite values times ``factor`` leave the dtype."""
    if table.allow_nonfinite or not table.n:
        return
    largest = max(abs(v) for v in table.value_range())
    limit = float(np.finfo(np.float16 if table.dtype == "float16" else np.float32).max)
    if abs(factor) > limit or largest * abs(factor) > limit:
        raise BadInput(
            f"{option}: the result would overflow {table.dtype} (largest value {largest:.4g} × {factor:.4g} "
            f"> {limit:.4g})"
        )


def posenc(
    table: EmbeddingTable,
    max_len: int = DEFAULT_MAX_LEN,
    base: float = DEFAULT_BASE,
    seed: int = 0,
    factor: str | float = 1.0,
) -> EmbeddingTable:
    """Add to each row the encoding of one uniformly drawn position (the paper's footnote 6), times
    ``factor`` (a number, or ``"sigma-ratio"``: σ_p/σ_x, see ``posenc_factor``)."""
    check_max_len(max_len)
    if not 1 < base < math.inf:
        raise BadInput(f"--base must be a finite number greater than 1, got {base}")
    scale_by = posenc_factor(table, factor)
    positions = np.random.default_rng(seed).integers(0, max_len, size=table.n)  # (N,)
    x = table.vectors  # (N, D)
    out = np.empty(x.shape, np.float32)  # (N, D)
    step = max(1, (1 << 20) // max(1, table.dim))  # rows per block: the encodings stay small
    for start in range(0, table.n, step):
        drawn, back = np.unique(positions[start : start + step], return_inverse=True)  # (U,), (B,)
        pe = encodings(drawn, table.dim, base)  # (U, D)
        if scale_by != 1.0:
            pe *= np.float32(scale_by)
        np.add(x[start : start + step], pe[back.reshape(-1)], out=out[start : start + step])
    args: dict[str, Any] = {"max_len": max_len, "base": base, "seed": seed}
    if factor != 1.0:
        args.update(factor=factor, scale=scale_by)
    return table.derive(out, "posenc", args)  # stored in the input's dtype
