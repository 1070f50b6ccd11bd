"""The paper's lessons as checks on a table: a verdict per check, the figure behind it and the fix.

Kim et al. (arXiv 2407.12514): a table whose σ is far from Xavier's σ_x = √(2/(N+D)) trains badly
(Table 1, 2), because after the transformer's ×√D its values dwarf the sinusoidal position encoding
(Table 4, 6); standardizing to Xavier (Eq. 1) keeps the semantics and fixes both. Beyond those two:
NaN/Inf, all-zero, duplicate and outlier rows, fallback rows at another scale than the found ones,
coverage of a vocabulary, and the table's own history.

Levels: ``finding`` (something to fix: the command exits 1), ``warning`` (worth a look; a finding
under ``--strict``), ``note`` and ``ok``.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embtool.tables.positional import DEFAULT_MAX_LEN
from embtool.tables.stats import posenc_moments, table_moments, xavier_std

if TYPE_CHECKING:
    from embtool.tables.table import EmbeddingTable
    from embtool.text.vocabfile import Vocabulary

LEVELS = ("ok", "note", "warning", "finding")
STD_BAND = (0.5, 2.0)  # σ / σ_x outside this: not at Xavier's scale
ABSORPTION_LIMIT = 1.0  # σ(×√D rows) / σ(position encoding) above this, and not at Xavier's scale: drowned
OUTLIER_FACTOR = 10.0  # a row norm this many times above (or below) the median norm …
OUTLIER_MADS = 5.0  # … and this many robust σ (1.4826 · MAD) of the log norms away from it
FILL_BAND = (0.5, 2.0)  # σ(filled rows) / σ(found rows) outside this: two scales in one table
COVERAGE_LIMIT = 0.9  # share of a vocabulary's tokens (or of its corpus tokens) below this
_PAD_TOKENS = {"<pad>", "[PAD]", "<blank>", "<PAD>", "[pad]"}  # all-zero by design in several toolkits
_EXAMPLES = 3  # tokens named per finding


@dataclass
class Check:
    """One check's verdict: ``name``, ``level``, a message with the figure, the figures, the fix."""

    name: str
    level: str
    message: str
    figures: dict[str, Any] = field(default_factory=dict)
    fix: str | None = None


@dataclass
class Diagnosis:
    """All checks of one table; ``plot`` is the command that draws its distribution."""

    name: str
    n: int
    dim: int
    checks: list[Check]
    plot: str

    def findings(self, strict: bool = False) -> list[Check]:
        bad = ("finding", "warning") if strict else ("finding",)
        return [c for c in self.checks if c.level in bad]

    def as_dict(self, strict: bool = False) -> dict[str, Any]:
        """The diagnosis as plain JSON values (a non-finite figure becomes null)."""
        checks = [
            {**asdict(c), "figures": {k: _json_number(v) for k, v in c.figures.items()}} for c in self.checks
        ]
        return {"name": self.name, "n": self.n, "dim": self.dim, "verdict": "findings" if self.findings(strict) else "ok",
                "checks": checks, "plot": self.plot}  # fmt: skip


def _json_number(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def diagnose(
    table: EmbeddingTable,
    name: str = "TABLE",
    *,
    dim: int | None = None,
    vocab: Vocabulary | None = None,
    vocab_name: str = "V",
    max_len: int = DEFAULT_MAX_LEN,
) -> Diagnosis:
    """Every check of ``embtool doctor`` for one table; ``dim`` is the model's D when it differs."""
    model_dim = dim or table.dim
    arg, out = _arg(name), shlex.quote(_fixed_name(name))  # fixes are pasted into a shell
    fix = f"embtool standardize {arg} --to xavier -o {out}"
    resize = None
    if model_dim != table.dim:
        method = "pca" if model_dim < table.dim else "pad"
        resize = f"embtool resize {arg} --dim {model_dim} --method {method}"
        fix = f"{resize} | embtool standardize --to xavier -o {out}"
    rows = _row_figures(table)
    checks = [_finite(table, rows)]
    if checks[0].level == "ok":
        checks += _scale(table, model_dim, max_len, fix)
    if resize is not None:
        checks.append(Check("dim", "finding", f"the table has D={table.dim}, the model D={model_dim}",
                            {"table_dim": table.dim, "model_dim": model_dim},
                            f"{resize} -o {out}  (or train's learned --input-dim projection)"))  # fmt: skip
    checks += _rows(table, rows, name)
    if vocab is not None:
        checks += _coverage(table, vocab, vocab_name, name)
    checks.append(_history(table))
    picture = shlex.quote(f"{'TABLE' if name in STDIN else Path(name).stem}.png")
    plot = f"embtool stats {arg} --plot {picture}"
    return Diagnosis(name, table.n, table.dim, checks, plot)


STDIN = ("-", "<stdin>")  # names of a table read from stdin


def _arg(name: str) -> str:
    """``name`` as one shell word of a command (a table from stdin: ``-``)."""
    return "-" if name in STDIN else shlex.quote(name)


def _fixed_name(name: str) -> str:
    return "TABLE_x.safetensors" if name in STDIN else f"{Path(name).stem}_x.safetensors"


@dataclass
class _Rows:
    norms: np.ndarray  # (N,) float64 row norms (NaN for a row with a non-finite value)
    nonfinite: int  # values
    first_bad: int | None  # row
    duplicates: list[tuple[int, int]]  # (row, the earlier row it equals)


def _row_figures(table: EmbeddingTable) -> _Rows:
    """Row norms, non-finite values and duplicate rows, in one pass over the table's blocks."""
    norms = np.empty(table.n, np.float64)
    nonfinite, first_bad, start = 0, None, 0
    seen: dict[bytes, int] = {}
    duplicates: list[tuple[int, int]] = []
    for block in table.blocks():  # (B, D) float32
        bad = ~np.isfinite(block)
        if bad.any():
            nonfinite += int(bad.sum())
            first_bad = (
                first_bad if first_bad is not None else start + int(np.flatnonzero(bad.any(axis=1))[0])
            )
        with np.errstate(all="ignore"):
            norms[start : start + len(block)] = np.sqrt(np.square(block, dtype=np.float64).sum(axis=1))
        for k, row in enumerate(block):
            key = row.tobytes()
            if key in seen:
                duplicates.append((start + k, seen[key]))
            else:
                seen[key] = start + k
        start += len(block)
    return _Rows(norms, nonfinite, first_bad, duplicates)


def _finite(table: EmbeddingTable, rows: _Rows) -> Check:
    if not rows.nonfinite:
        return Check("finite", "ok", "no NaN or Inf", {"nonfinite": 0})
    r = rows.first_bad or 0
    return Check("finite", "finding",
                 f"{rows.nonfinite} NaN/Inf value(s), first in row {r} (token {table.tokens[r]!r}); the σ checks "
                 "are skipped", {"nonfinite": rows.nonfinite, "first_row": r},
                 "rebuild the table from its source (embtool extract SOURCE --vocab V); no transform repairs NaN")  # fmt: skip


def _scale(table: EmbeddingTable, model_dim: int, max_len: int, fix: str) -> list[Check]:
    """σ against Xavier's for N × (model) D, and the ×√D values against the position encoding's σ."""
    mean, std = table_moments(table)
    sx = xavier_std(table.n, model_dim)
    ratio = std / sx
    _, pe_std = posenc_moments(max_len, model_dim)
    scaled = std * math.sqrt(model_dim)
    absorption = scaled / pe_std
    figures = {"std": std, "mean": mean, "xavier_std": sx, "std_ratio": ratio, "n": table.n, "dim": model_dim}
    shape = f"{table.n} × {model_dim}"
    if STD_BAND[0] <= ratio <= STD_BAND[1]:
        scale = Check(
            "scale", "ok", f"σ {std:.4g} is {ratio:.2f}× Xavier's σ_x {sx:.4g} for {shape}", figures
        )
    else:
        how = "above" if ratio > 1 else "below"
        scale = Check("scale", "finding",
                      f"σ {std:.4g} is {ratio:.3g}× Xavier's σ_x {sx:.4g} for {shape}: far {how} the scale the "
                      "paper recommends (its Table 1, 2)", figures, fix)  # fmt: skip
    pe = {"scaled_std": scaled, "posenc_std": pe_std, "absorption": absorption, "max_len": max_len}
    text = f"×√D σ {scaled:.4g} is {absorption:.3g}× the position encoding's σ {pe_std:.3g}"
    if absorption > ABSORPTION_LIMIT and ratio > STD_BAND[1]:
        absorb = Check("absorption", "finding", text + ": the position signal is drowned (the paper's Table 6)",
                       pe, fix)  # fmt: skip
    else:
        absorb = Check("absorption", "ok", text, pe)
    return [scale, absorb]


def _examples(table: EmbeddingTable, rows: list[int]) -> str:
    names = ", ".join(repr(table.tokens[i]) for i in rows[:_EXAMPLES])
    return names + (", …" if len(rows) > _EXAMPLES else "")


def _refill_fix(table: EmbeddingTable) -> str:
    first = table.history[0] if table.history else {}
    source = first.get("args", {}).get("source") if first.get("op") == "extract" else None
    what = shlex.quote(source) if source else "SOURCE"
    return f"embtool extract {what} --vocab V --missing normal (fills at the found rows' scale)"


def _rows(table: EmbeddingTable, rows: _Rows, name: str) -> list[Check]:
    """All-zero, duplicate and outlier rows; the filled rows' scale against the found rows'."""
    checks = []
    norms = rows.norms
    zero = [i for i in np.flatnonzero(norms == 0).tolist() if table.tokens[i] not in _PAD_TOKENS]
    if zero:
        checks.append(Check("zero_rows", "finding", f"{len(zero)} all-zero row(s): {_examples(table, zero)}",
                            {"zero_rows": len(zero)}, _refill_fix(table)))  # fmt: skip
    else:
        checks.append(Check("zero_rows", "ok", "no all-zero rows (padding tokens aside)", {"zero_rows": 0}))
    dups = [(r, e) for r, e in rows.duplicates if norms[r] != 0]
    if dups:
        fill_set = set(table.missing or ())
        share = sum(r in fill_set for r, _ in dups)
        why = f"; {share} are filled rows (a 'mean' fill gives them one vector)" if share else ""
        r, e = dups[0]
        checks.append(Check("duplicates", "finding",
                            f"{len(dups)} row(s) equal an earlier row (first: {table.tokens[r]!r} = "
                            f"{table.tokens[e]!r}){why}", {"duplicate_rows": len(dups), "filled": share},
                            _refill_fix(table) if share else None))  # fmt: skip
    else:
        checks.append(Check("duplicates", "ok", "no duplicate rows", {"duplicate_rows": 0}))
    live = norms[np.isfinite(norms) & (norms > 0)]
    median = float(np.median(live)) if len(live) else 0.0
    if median > 0:
        # far in log-norm: over OUTLIER_FACTOR× from the median and beyond OUTLIER_MADS robust σ, so that
        # word2vec's wide spread of norms (frequent words long, rare ones short) is not all outliers
        logs = np.log(live)
        spread = 1.4826 * float(np.median(np.abs(logs - math.log(median))))  # MAD → σ for a normal
        limit = max(math.log(OUTLIER_FACTOR), OUTLIER_MADS * spread)
        with np.errstate(divide="ignore", invalid="ignore"):
            distance = np.abs(np.log(norms / median))
        far = np.flatnonzero((norms > 0) & np.isfinite(distance) & (distance > limit))
        worst = sorted(far.tolist(), key=lambda i: -abs(math.log(norms[i] / median)))
        figures = {"outlier_rows": len(far), "median_norm": median}
        if len(far):
            checks.append(Check("outliers", "warning",
                                f"{len(far)} row(s) with a norm far from the median {median:.3g} (over {math.exp(limit):.3g}×): "
                                f"{_examples(table, worst)} (e.g. {norms[worst[0]]:.3g})", figures,
                                "look at these tokens' rows; standardize scales all rows alike"))  # fmt: skip
        else:
            checks.append(Check("outliers", "ok", f"no outlier rows: norms {live.min():.3g} … {live.max():.3g}, median {median:.3g}",
                                figures))  # fmt: skip
    fills = sorted(set(table.missing or ()))
    if fills and len(fills) < table.n:
        filled = np.asarray(fills, dtype=np.int64)
        found = np.setdiff1d(np.arange(table.n), filled)
        vectors = table.vectors
        s_fill = float(np.std(vectors[filled].astype(np.float64)))
        s_found = float(np.std(vectors[found].astype(np.float64)))
        ratio = s_fill / s_found if s_found else math.inf
        figures = {"filled_rows": len(filled), "filled_std": s_fill, "found_std": s_found, "ratio": ratio}
        text = f"{len(filled)} filled row(s) have σ {s_fill:.4g}, the {len(found)} found rows σ {s_found:.4g}"
        if FILL_BAND[0] <= ratio <= FILL_BAND[1]:
            checks.append(Check("filled_scale", "ok", text, figures))
        else:
            checks.append(Check("filled_scale", "finding", text + ": two scales in one table", figures,
                                _refill_fix(table)))  # fmt: skip
    return checks


def _coverage(table: EmbeddingTable, vocab: Vocabulary, vocab_name: str, name: str) -> list[Check]:
    """How many of the vocabulary's tokens (and of its counted corpus tokens) the table has found rows for."""
    index = {t: i for i, t in enumerate(table.tokens)}
    filled = set(table.missing or ())
    have = [k for k, t in enumerate(vocab.tokens) if t in index and index[t] not in filled]
    token_share = len(have) / len(vocab)
    figures: dict[str, Any] = {"vocab_tokens": len(vocab), "found": len(have), "token_share": token_share}
    text = f"{len(have)} of {len(vocab)} tokens of {vocab_name} ({100 * token_share:.1f}%) have a found row"
    corpus: float | None = None
    total = int(np.sum(vocab.counts)) if vocab.counts else 0
    if vocab.counts and total:
        corpus = float(np.sum([vocab.counts[k] for k in have])) / total
        figures["corpus_share"] = corpus
        text += f", covering {100 * corpus:.1f}% of its corpus tokens"
    checks = []
    if vocab.tokenizer and vocab.tokenizer != table.tokenizer:
        checks.append(Check("tokenizer", "warning",
                            f"{vocab_name} was made with {vocab.tokenizer}, the table with {table.tokenizer}: "
                            f"{100 * token_share:.1f}% of its tokens are in the table",
                            {"vocab_tokenizer": vocab.tokenizer, "table_tokenizer": table.tokenizer}))  # fmt: skip
    low = token_share < COVERAGE_LIMIT or (corpus is not None and corpus < COVERAGE_LIMIT)
    aligned = shlex.quote(_fixed_name(name).replace("_x.", "_aligned."))
    fix = f"embtool align {_arg(name)} --vocab {shlex.quote(vocab_name)} -o {aligned}"
    checks.append(Check("coverage", "finding" if low else "ok", text, figures, fix if low else None))
    return checks


def _history(table: EmbeddingTable) -> Check:
    ops = [str(h.get("op")) for h in table.history]
    steps = " → ".join(ops) or "-"
    done = [i for i, op in enumerate(ops) if op == "standardize"]
    if not done:
        return Check("history", "ok", steps, {"history": ops})
    after = [op for op in ops[done[-1] + 1 :] if op in ("scale", "posenc")]
    if len(done) > 1 or after:
        what = "standardized more than once" if len(done) > 1 else f"{', '.join(after)} after standardize"
        return Check("history", "warning", f"{steps}: {what}; the last step decides the scale",
                     {"history": ops})  # fmt: skip
    args = table.history[done[-1]].get("args", {})
    return Check("history", "note", f"already standardized (to {args.get('to', '?')}): {steps}",
                 {"history": ops})  # fmt: skip
