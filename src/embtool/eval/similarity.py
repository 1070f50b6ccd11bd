"""Word-similarity benchmarks: Spearman's ρ between a table's cosines and human scores.

Same conventions as gensim's ``KeyedVectors.evaluate_word_pairs``: tab-separated ``word word
score`` lines, ``#`` comment lines; only the first ``restrict`` rows count as known; words are
upper-cased unless ``case_sensitive`` (the first case variant wins); a pair with an unknown word is
skipped and counted (``count_oov``: it scores 0, gensim's ``dummy4unknown``). The cosine is
gensim's too (each vector scaled to unit length in float64, rounded to float32, float32 dot), so
ρ agrees with gensim's. WordSim-353 and SimLex-999 ship with gensim and are the default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embtool._version import __version__
from embtool.core.errors import BadInput
from embtool.eval.benchmarks import DEFAULT_RESTRICT, gensim_test_file, numbered_lines, read_bytes
from embtool.eval.keyed import Keys, as_float32

if TYPE_CHECKING:
    from embtool.tables.table import EmbeddingTable

DEFAULT_PAIRS = ("wordsim353.tsv", "simlex999.txt")  # gensim/test/test_data


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    score: float  # the human judgement
    line: int  # 1-based line in the pairs file


@dataclass
class PairsResult:
    name: str  # the pairs file's name
    pairs: int  # pairs scored (gensim's len(similarity_gold))
    oov: int  # pairs with a word outside the first `restrict` rows
    spearman: float
    spearman_p: float
    pearson: float
    pearson_p: float
    restrict: int
    case_sensitive: bool
    count_oov: bool

    @property
    def oov_ratio(self) -> float:
        """Percent of pairs with unknown words, as gensim reports it."""
        denominator = self.pairs if self.count_oov else self.pairs + self.oov
        return 100.0 * self.oov / denominator if denominator else 0.0

    @property
    def signature(self) -> str:
        return (
            f"similarity|pairs:{self.name}|restrict:{self.restrict}"
            f"|case:{'sensitive' if self.case_sensitive else 'insensitive'}"
            f"|oov:{'zero' if self.count_oov else 'skip'}|version:{__version__}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "pairs_file": self.name,
            "pairs": self.pairs,
            "oov": self.oov,
            "oov_ratio": self.oov_ratio,
            "spearman": self.spearman,
            "spearman_p": self.spearman_p,
            "pearson": self.pearson,
            "pearson_p": self.pearson_p,
            "signature": self.signature,
        }


def default_pairs() -> list[Path]:
    return [gensim_test_file(name) for name in DEFAULT_PAIRS]


def read_pairs(path: str | Path) -> list[Pair]:
    """Parse ``word<TAB>word<TAB>score`` lines; ``#`` lines and blank lines are skipped."""
    return parse_pairs(read_bytes(path, "pairs"), origin=str(path))


def parse_pairs(data: bytes, origin: str = "<pairs>") -> list[Pair]:
    pairs: list[Pair] = []
    for no, line in numbered_lines(data, origin):
        if line.startswith("#") or not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise BadInput(
                f"{origin}, line {no}: expected 'word<TAB>word<TAB>score', got {len(fields)} "
                f"tab-separated field(s): {line.strip()[:60]!r}"
            )
        try:
            score = float(fields[2])
        except ValueError:
            raise BadInput(f"{origin}, line {no}: score {fields[2].strip()!r} is not a number") from None
        if not math.isfinite(score):  # float() takes "nan" and "inf"; ρ would be nan
            raise BadInput(f"{origin}, line {no}: score {fields[2].strip()!r} is not a finite number")
        pairs.append(Pair(fields[0], fields[1], score, no))
    if not pairs:
        raise BadInput(f"{origin}: no word pairs found (expected 'word<TAB>word<TAB>score' lines)")
    return pairs


def evaluate_pairs(
    table: EmbeddingTable,
    pairs: str | Path | None = None,
    *,
    restrict: int = DEFAULT_RESTRICT,
    case_sensitive: bool = False,
    count_oov: bool = False,
) -> PairsResult:
    """Spearman's ρ and Pearson's r of the table's cosines against one pairs file."""
    import warnings

    from scipy import stats  # slow to import: only when scoring
    from scipy.linalg.blas import dnrm2, dscal

    if restrict < 1:
        raise BadInput(f"--restrict must be at least 1, got {restrict}")
    path = Path(pairs) if pairs is not None else default_pairs()[0]
    items = read_pairs(path)
    vocab = Keys.build(table.tokens[:restrict], case_sensitive)
    vectors = as_float32(table.vectors[:restrict])  # (R, D)

    def unit(row: int) -> np.ndarray:  # gensim's matutils.unitvec: float64 norm and scaling
        v = vectors[row]
        length = dnrm2(v)
        return dscal(1.0 / length, v).astype(np.float32) if length > 0.0 else v

    gold: list[float] = []
    model: list[float] = []
    oov = 0
    for p in items:
        ra, rb = vocab.row(p.a), vocab.row(p.b)
        if ra < 0 or rb < 0:
            oov += 1
            if count_oov:
                gold.append(p.score)
                model.append(0.0)
            continue
        gold.append(p.score)
        model.append(float(np.dot(unit(ra), unit(rb))))
    if not gold:
        raise BadInput(f"{path}: no pair has both words in the table's first {restrict} rows")
    with warnings.catch_warnings():  # a constant input gives NaN (and a warning) in scipy
        warnings.simplefilter("ignore")
        rho = stats.spearmanr(gold, np.array(model, dtype=np.float32))
        r = stats.pearsonr(np.array(gold), np.array(model, dtype=np.float32)) if len(gold) > 1 else None
    return PairsResult(
        name=path.name,
        pairs=len(gold),
        oov=oov,
        spearman=float(rho.statistic),
        spearman_p=float(rho.pvalue),
        pearson=float(r.statistic) if r is not None else float("nan"),
        pearson_p=float(r.pvalue) if r is not None else float("nan"),
        restrict=restrict,
        case_sensitive=case_sensitive,
        count_oov=count_oov,
    )


def evaluate_similarity(
    table: EmbeddingTable,
    pairs: list[str | Path] | None = None,
    *,
    restrict: int = DEFAULT_RESTRICT,
    case_sensitive: bool = False,
    count_oov: bool = False,
) -> list[PairsResult]:
    """One result per pairs file (default: WordSim-353 and SimLex-999 as gensim ships them)."""
    files: list[str | Path] = list(pairs) if pairs else list(default_pairs())
    return [
        evaluate_pairs(table, f, restrict=restrict, case_sensitive=case_sensitive, count_oov=count_oov)
        for f in files
    ]
