"""The maths of the transforms: Eq. 1, Eq. 4, shuffles, scaling, position encodings; dtypes kept."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embtool.core.errors import BadInput
from embtool.tables.positional import sinusoidal
from embtool.tables.stats import moments, xavier_std
from embtool.tables.table import EmbeddingTable
from embtool.tables.transforms import posenc, scale, shuffle, standardize, xavier
from embtool.text.vocabfile import Vocabulary

DTYPES = ["float32", "float16", "bfloat16"]


@pytest.fixture
def glove_like(make_table):
    rows = np.random.default_rng(0).standard_normal((500, 40), dtype=np.float32) * 0.37 + 0.053
    return make_table(rows, source="glove:test")


def test_xavier_bounds_and_determinism() -> None:
    vocab = Vocabulary([f"w{i}" for i in range(300)], info={"tokenizer": "spacy:en"})
    t = xavier(vocab, 20, seed=3)
    a = math.sqrt(6 / 320)
    assert t.vectors.dtype == np.float32 and a * 0.99 < np.abs(t.vectors).max() <= a
    assert moments(t.vectors) == pytest.approx((0.0, a / math.sqrt(3)), abs=2e-3)  # U(−a, a): σ = a/√3
    assert t.tokenizer == "spacy:en" and t.source == "xavier" and t.history[0]["args"]["seed"] == 3
    assert np.array_equal(t.vectors, xavier(vocab, 20, seed=3).vectors)
    assert not np.array_equal(t.vectors, xavier(vocab, 20, seed=4).vectors)


def test_random_steps_leave_global_state_alone() -> None:
    state = np.random.get_state()[1].copy()
    xavier(["a", "b"], 4, seed=1)
    assert np.array_equal(np.random.get_state()[1], state)


def test_standardize_is_eq1_exactly(glove_like) -> None:
    x = glove_like.vectors.astype(np.float64)
    out = standardize(glove_like, "xavier").vectors.astype(np.float64)
    sigma_x = math.sqrt(2 / (500 + 40))
    expected = (x - x.mean()) * sigma_x / x.std(ddof=1)  # Eq. 1
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-7)
    mean, std = moments(out)
    assert abs(mean) < 1e-9 and std == pytest.approx(sigma_x, rel=1e-6)


def test_standardize_fan_and_normal(glove_like) -> None:
    assert moments(standardize(glove_like, "xavier", fan=10_000).vectors)[1] == pytest.approx(
        xavier_std(10_000, 40), rel=1e-6
    )
    assert moments(standardize(glove_like, "normal:0.02").vectors)[1] == pytest.approx(0.02, rel=1e-6)


def test_standardize_to_table_is_eq4(make_table) -> None:
    target = make_table(np.random.default_rng(5).standard_normal((50, 40), dtype=np.float32) * 0.04 - 0.01)
    xav = xavier([f"w{i}" for i in range(500)], 40, seed=1)
    out = standardize(xav, target)
    t_mean, t_std = moments(target.vectors)
    o_mean, o_std = moments(out.vectors)
    assert o_mean == pytest.approx(t_mean, abs=1e-7) and o_std == pytest.approx(t_std, rel=1e-6)
    assert out.history[-1]["op"] == "standardize" and len(out.history) == 2


@pytest.mark.parametrize("to,message", [("normal:abc", "needs a number"), ("normal:-1", "positive")])
def test_standardize_bad_targets(glove_like, to, message) -> None:
    with pytest.raises(BadInput, match=message):
        standardize(glove_like, to)


def test_standardize_constant_table(make_table) -> None:
    with pytest.raises(BadInput, match="σ = 0"):
        standardize(make_table(np.ones((3, 3), np.float32)))


def test_standardize_to_a_constant_table_is_refused(glove_like, make_table) -> None:
    """Issue: matching a table whose σ is 0 wrote N identical rows (every value its mean) and exit 0."""
    flat = make_table(np.full((4, 40), 0.25, np.float32), origin="flat.safetensors")
    with pytest.raises(BadInput, match=r"--to flat.safetensors: all values are equal \(σ = 0\)"):
        standardize(glove_like, flat)


@pytest.mark.parametrize(
    ("table", "to", "message"),
    [("var", "flat", "--to {flat}: all values are equal (σ = 0)"),
     ("flat", "var", "{flat}: all values are equal (σ = 0)"),
     ("flat", "xavier", "{flat}: all values are equal (σ = 0)"),
     ("flat", "normal:0.1", "{flat}: all values are equal (σ = 0)")],
    ids=["to-table", "from-table", "from-to-xavier", "from-to-normal"],
)  # fmt: skip
def test_cli_standardize_with_sigma_0_is_exit_2_and_writes_nothing(cli, tmp_path, table, to, message) -> None:
    from embtool.tables.table import save

    paths = {"flat": tmp_path / "flat.safetensors", "var": tmp_path / "var.safetensors"}
    rows = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    save(EmbeddingTable(np.full((6, 4), 0.5, np.float32), [f"t{i}" for i in range(6)]), paths["flat"])
    save(EmbeddingTable(rows, [f"t{i}" for i in range(6)]), paths["var"])
    out = tmp_path / "out.safetensors"
    r = cli("standardize", str(paths[table]), "--to", str(paths.get(to, to)), "-o", str(out))
    assert r.code == 2 and not out.exists()
    assert r.stderr.startswith("embtool: error: " + message.format(flat=paths["flat"]))
    assert len(r.stderr.splitlines()) == 1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "step", [lambda t: standardize(t), lambda t: standardize(t, "normal:2"), lambda t: shuffle(t, seed=1),
             lambda t: scale(t, 3.0), lambda t: posenc(t, max_len=50)],
    ids=["standardize", "normal", "shuffle", "scale", "posenc"],
)  # fmt: skip
def test_every_transform_keeps_the_dtype_and_computes_in_float32(make_table, dtype, step) -> None:
    t = make_table(np.random.default_rng(2).standard_normal((30, 8), dtype=np.float32) * 3, dtype=dtype)
    out = step(t)
    assert out.dtype == dtype and out.vectors.dtype == t.vectors.dtype
    if out.history[-1]["op"] == "standardize":  # float32 maths, then one rounding to the dtype
        a = out.history[-1]["args"]
        x = (t.vectors.astype(np.float32) - np.float32(a["from_mean"])) * np.float32(
            a["to_std"] / a["from_std"]
        )
        assert np.array_equal(out.vectors, type(t)(x, t.tokens, dtype=dtype).vectors)


@pytest.mark.parametrize("axis", ["both", "rows", "cols", "all"])
def test_shuffle_keeps_multiset_and_tokens(glove_like, axis) -> None:
    out = shuffle(glove_like, axis=axis, seed=7)
    x = glove_like.vectors
    assert out.tokens == glove_like.tokens
    assert np.array_equal(np.sort(out.vectors, axis=None), np.sort(x, axis=None))
    assert not np.array_equal(out.vectors, x)
    assert np.array_equal(out.vectors, shuffle(glove_like, axis=axis, seed=7).vectors)
    if axis == "rows":  # each row is some original row
        assert np.array_equal(np.sort(out.vectors, axis=0), np.sort(x, axis=0))
    if axis == "cols":  # each column is some original column
        assert np.array_equal(np.sort(out.vectors, axis=1), np.sort(x, axis=1))


def test_shuffle_both_is_rows_then_columns(glove_like) -> None:
    out = shuffle(glove_like, axis="both", seed=7).vectors
    rng = np.random.default_rng(7)
    rows, cols = rng.permutation(500), rng.permutation(40)
    assert np.array_equal(out, glove_like.vectors[rows][:, cols])


def test_shuffle_bad_axis(glove_like) -> None:
    with pytest.raises(BadInput, match="choose one of: both, rows, cols, all"):
        shuffle(glove_like, axis="diag")


def test_scale(glove_like) -> None:
    np.testing.assert_allclose(
        scale(glove_like, "sqrt-dim").vectors, glove_like.vectors * math.sqrt(40), rtol=1e-6
    )
    assert np.array_equal(scale(glove_like, "2").vectors, glove_like.vectors * 2)
    with pytest.raises(BadInput, match="sqrt-dim or a number"):
        scale(glove_like, "twice")
    with pytest.raises(BadInput, match="--by 3e[+]38: the result would overflow float32"):
        scale(glove_like, 3e38)  # beyond float32


@pytest.mark.parametrize(
    "by,dtype",
    [("1e39", "float32"), ("3e38", "float32"), ("1e5", "float16")],
    ids=["factor", "product", "float16"],
)
def test_scale_overflow_blames_the_factor_not_the_input(glove_like, by: str, dtype: str) -> None:
    """Issue 14.14: `scale --by 1e39` names --by, not the (finite) input file."""
    table = EmbeddingTable(glove_like.vectors, glove_like.tokens, dtype=dtype, origin="in.safetensors")
    with pytest.raises(BadInput, match=f"^--by {by}: the result would overflow {dtype}") as e:
        scale(table, by)
    assert "in.safetensors" not in str(e.value)
    allowed = EmbeddingTable(table.vectors, table.tokens, dtype=dtype, allow_nonfinite=True)
    with np.errstate(over="ignore"):  # --allow-nonfinite: the overflow is what was asked for
        assert np.isinf(scale(allowed, by).vectors).any()


def test_posenc_adds_exactly_one_pe_row_per_row(glove_like) -> None:
    out = posenc(glove_like, max_len=64, seed=2)
    pe = sinusoidal(64, 40)  # (L, D)
    diff = out.vectors.astype(np.float64) - glove_like.vectors  # (N, D)
    dist = np.abs(diff[:, None, :] - pe[None, :, :]).max(axis=2)  # (N, L)
    assert (dist.min(axis=1) < 1e-6).all()
    drawn = dist.argmin(axis=1)  # (N,) one uniform position per row (footnote 6)
    assert np.array_equal(drawn, np.random.default_rng(2).integers(0, 64, size=500))
    assert out.history[-1]["args"] == {"max_len": 64, "base": 10000.0, "seed": 2}


@pytest.mark.parametrize("max_len,base,message", [(0, 10000.0, "--max-len must be between 1 and 1,000,000"),
                                                   (10**12, 10000.0, "--max-len"), (10, 1.0, "--base"),
                                                   (10, math.inf, "--base must be a finite number greater than 1"),
                                                   (10, math.nan, "--base must be a finite number greater than 1")],
                         ids=["max-len-0", "max-len-huge", "base-1", "base-inf", "base-nan"])  # fmt: skip
def test_posenc_bad_options(glove_like, max_len, base, message) -> None:
    with pytest.raises(BadInput, match=message):
        posenc(glove_like, max_len=max_len, base=base)


def test_inputs_are_not_mutated(glove_like) -> None:
    before = glove_like.vectors.copy()
    for f in (standardize, shuffle, scale, posenc):
        f(glove_like).vectors  # noqa: B018 - computes any pending map
    assert np.array_equal(glove_like.vectors, before) and glove_like.history == []


def test_transforms_chain_in_the_library(glove_like) -> None:
    """A pending map feeds the next step as its values: the same as computing each step."""
    chained = standardize(scale(glove_like, 20), "xavier")
    stepwise = standardize(glove_like.derive(scale(glove_like, 20).vectors.copy(), "scale", {}), "xavier")
    assert np.array_equal(chained.vectors, stepwise.vectors)
    assert [h["op"] for h in chained.history] == ["scale", "standardize"]


def test_posenc_factor_scales_the_added_encodings(make_table) -> None:
    import math

    from embtool.tables.stats import table_moments, xavier_std
    from embtool.tables.transforms import posenc, posenc_factor

    x = np.random.default_rng(0).normal(0, 0.4, (40, 8)).astype(np.float32)
    t = make_table(x)
    one = posenc(t, seed=3).vectors - x
    two = posenc(t, seed=3, factor=2.0).vectors - x
    np.testing.assert_allclose(two, 2 * one, rtol=1e-5, atol=1e-6)
    ratio = table_moments(t)[1] / xavier_std(40, 8)
    assert posenc_factor(t, "sigma-ratio") == pytest.approx(ratio) and ratio > 1.5
    scaled = posenc(t, seed=3, factor="sigma-ratio")
    np.testing.assert_allclose(scaled.vectors - x, ratio * one, rtol=1e-4, atol=1e-4)
    assert scaled.history[-1]["args"]["factor"] == "sigma-ratio" and math.isclose(
        scaled.history[-1]["args"]["scale"], ratio
    )
    with pytest.raises(BadInput, match="--factor 'big': give a number or sigma-ratio"):
        posenc(t, factor="big")


@pytest.mark.parametrize("dim", [0, 10**12], ids=["zero", "huge"])
def test_xavier_dim_is_bounded_before_allocating(dim: int) -> None:
    """Issue 14.2/14.8: `init --dim 1e12` was a MemoryError; the option is named first."""
    with pytest.raises(BadInput, match=f"--dim must be between 1 and 65,536, got {dim:,}"):
        xavier(["a", "b"], dim)
