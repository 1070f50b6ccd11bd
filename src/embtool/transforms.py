"""Pure functions on tables: xavier, standardize, shuffle, scale, posenc.

Each returns a new EmbeddingTable (the input is left as it was) whose history ends with the
step that made it. Every random step takes ``seed`` and its own ``torch.Generator``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from embtool.errors import BadInput
from embtool.stats import moments, xavier_bound, xavier_std
from embtool.table import EmbeddingTable, history_entry
from embtool.text.vocabfile import Vocabulary

SHUFFLE_AXES = ("both", "rows", "cols", "all")
DEFAULT_BASE = 10000.0  # Vaswani et al.; the paper's Eq. 2 misprints it as 1000


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def xavier(vocab: Vocabulary | list[str], dim: int, seed: int = 0, tokenizer: str | None = None) -> EmbeddingTable:
    """The random baseline: rows drawn from U(−a, a), a = √(6/(N+D)) (Glorot & Bengio)."""
    tokens = list(vocab.tokens if isinstance(vocab, Vocabulary) else vocab)
    if dim < 1:
        raise BadInput(f"--dim must be at least 1, got {dim}")
    if not tokens:
        raise BadInput("the vocabulary is empty")
    if tokenizer is None:
        tokenizer = (vocab.tokenizer if isinstance(vocab, Vocabulary) else None) or "whitespace"
    a = xavier_bound(len(tokens), dim)
    vectors = torch.empty(len(tokens), dim).uniform_(-a, a, generator=_generator(seed))  # (N, D)
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
    table: EmbeddingTable,
    to: str | EmbeddingTable = "xavier",
    fan: int | None = None,
    inplace: bool = False,
) -> EmbeddingTable:
    """Shift and scale all values to a target mean and σ, with the table's global mean and σ.

    ``to="xavier"``: Eq. 1, x* = (x − mean(X)) · σ_x/σ(X), σ_x = √(2/(N+D)), N = ``fan`` or the
    row count. ``to="normal:STD"``: mean 0, σ = STD. ``to=<EmbeddingTable>``: that table's mean
    and σ (Eq. 4, the paper's Xavier_Pre-trained when the input is a Xavier table).
    ``inplace=True`` reuses the input's float32 tensor (for callers that discard the input).
    """
    args, rows = _standardize_plan(table, to, fan)
    x = table.vectors
    out = rows(x if inplace and x.dtype == torch.float32 else x.to(torch.float32, copy=True))
    return table.derive(out.to(x.dtype), "standardize", args)


def standardize_rows(
    table: EmbeddingTable, to: str | EmbeddingTable = "xavier", fan: int | None = None
) -> tuple[EmbeddingTable, Callable[[torch.Tensor], torch.Tensor]]:
    """``standardize`` as a table header plus a map of row blocks, for streaming it to a file.

    Returns the table with the standardize step in its history (its vectors are still the
    input's) and the function that turns float32 rows into the standardized rows, in place.
    """
    args, rows = _standardize_plan(table, to, fan)
    return table.derive(table.vectors, "standardize", args), rows


def _standardize_plan(
    table: EmbeddingTable, to: str | EmbeddingTable, fan: int | None
) -> tuple[dict[str, Any], Callable[[torch.Tensor], torch.Tensor]]:
    """The history arguments of a standardize step and its in-place map of float32 rows."""
    mean, std = moments(table.vectors)
    if std == 0.0:
        raise BadInput(f"{table.origin}: all values are equal (σ = 0); cannot standardize")
    args: dict[str, Any] = {}
    if isinstance(to, EmbeddingTable):
        target_mean, target_std = moments(to.vectors)
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
    k = target_std / std

    def rows(x: torch.Tensor) -> torch.Tensor:
        # Eq. 1 / Eq. 4: x* = (x − mean) · σ_target/σ + mean_target
        x.sub_(mean).mul_(k)
        return x.add_(target_mean) if target_mean else x

    return args, rows


def shuffle(table: EmbeddingTable, axis: str = "both", seed: int = 0) -> EmbeddingTable:
    """Permute values without moving tokens: row i keeps token i, semantics are destroyed.

    "both" permutes rows, then columns (the paper's Pre-trained_Shuffled); "rows" or "cols"
    only one; "all" every element. The multiset of values is kept exactly.
    """
    if axis not in SHUFFLE_AXES:
        raise BadInput(f"--axis {axis!r} is not valid; choose one of: {', '.join(SHUFFLE_AXES)}")
    g = _generator(seed)
    x = table.vectors  # (N, D)
    n, d = x.shape
    if axis == "all":
        out = x.reshape(-1)[torch.randperm(n * d, generator=g)].reshape(n, d)
    else:
        out = x
        if axis in ("both", "rows"):
            out = out[torch.randperm(n, generator=g)]
        if axis in ("both", "cols"):
            out = out[:, torch.randperm(d, generator=g)]
        out = out.contiguous() if out is not x else x.clone()
    return table.derive(out, "shuffle", {"axis": axis, "seed": seed})


def scale(table: EmbeddingTable, by: str | float = "sqrt-dim") -> EmbeddingTable:
    """Multiply every value by √D (``"sqrt-dim"``, the transformer's input scaling) or a number."""
    if by == "sqrt-dim":
        factor = math.sqrt(table.dim)
    else:
        try:
            factor = float(by)
        except ValueError:
            raise BadInput(f"--by {by!r}: give sqrt-dim or a number") from None
        if not math.isfinite(factor):
            raise BadInput(f"--by {by!r}: the factor must be finite")
    out = table.vectors * factor
    return table.derive(out, "scale", {"by": by if by == "sqrt-dim" else factor, "factor": factor})


def sinusoidal(max_len: int, dim: int, base: float = DEFAULT_BASE) -> torch.Tensor:
    """The sinusoidal position encoding P (max_len, dim) of Vaswani et al. (Appendix A.1, Eq. 2).

    P[i, 2k] = sin(i / base^(2k/D)), P[i, 2k+1] = cos(i / base^(2k/D)).
    """
    if max_len < 1 or dim < 1:
        raise BadInput(f"position encoding needs max_len ≥ 1 and dim ≥ 1, got {max_len}, {dim}")
    pos = torch.arange(max_len, dtype=torch.float64).unsqueeze(1)  # (L, 1)
    two_k = torch.arange(0, dim, 2, dtype=torch.float64)  # (ceil(D/2),)
    angle = pos / base ** (two_k / dim)  # (L, ceil(D/2))
    pe = torch.empty(max_len, dim, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : dim // 2])
    return pe.float()


def posenc(
    table: EmbeddingTable, max_len: int = 5000, base: float = DEFAULT_BASE, seed: int = 0
) -> EmbeddingTable:
    """Add to each row the encoding of one uniformly drawn position (the paper's footnote 6)."""
    if max_len < 1:
        raise BadInput(f"--max-len must be at least 1, got {max_len}")
    if not base > 1:
        raise BadInput(f"--base must be greater than 1, got {base}")
    pe = sinusoidal(max_len, table.dim, base)  # (L, D)
    positions = torch.randint(0, max_len, (table.n,), generator=_generator(seed))  # (N,)
    out = (table.vectors.float() + pe[positions]).to(table.vectors.dtype)
    args = {"max_len": max_len, "base": base, "seed": seed}
    return table.derive(out, "posenc", args)
