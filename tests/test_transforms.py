"""The maths of the transforms: Eq. 1, Eq. 4, shuffles, scaling, position encodings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from embtool.errors import BadInput
from embtool.stats import moments, table_stats, xavier_std
from embtool.text.vocabfile import Vocabulary
from embtool.transforms import posenc, scale, shuffle, sinusoidal, standardize, xavier


@pytest.fixture
def glove_like(make_table):
    g = torch.Generator().manual_seed(0)
    return make_table(torch.randn(500, 40, generator=g) * 0.37 + 0.053, source="glove:test")


def test_xavier_bounds_and_determinism() -> None:
    vocab = Vocabulary([f"w{i}" for i in range(300)], info={"tokenizer": "spacy:en"})
    t = xavier(vocab, 20, seed=3)
    a = math.sqrt(6 / 320)
    assert t.vectors.abs().max() <= a and t.vectors.abs().max() > 0.95 * a
    assert t.tokenizer == "spacy:en" and t.source == "xavier" and t.history[0]["args"]["seed"] == 3
    assert torch.equal(t.vectors, xavier(vocab, 20, seed=3).vectors)
    assert not torch.equal(t.vectors, xavier(vocab, 20, seed=4).vectors)


def test_standardize_is_eq1_exactly(glove_like) -> None:
    x = glove_like.vectors.double().numpy()
    out = standardize(glove_like, "xavier").vectors.double().numpy()
    sigma_x = math.sqrt(2 / (500 + 40))
    expected = (x - x.mean()) * sigma_x / x.std(ddof=1)  # Eq. 1
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-7)
    mean, std = moments(torch.from_numpy(out))
    assert abs(mean) < 1e-9 and std == pytest.approx(sigma_x, rel=1e-6)


def test_standardize_fan_and_normal(glove_like) -> None:
    assert moments(standardize(glove_like, "xavier", fan=10_000).vectors)[1] == pytest.approx(
        xavier_std(10_000, 40), rel=1e-6
    )
    assert moments(standardize(glove_like, "normal:0.02").vectors)[1] == pytest.approx(0.02, rel=1e-6)


def test_standardize_to_table_is_eq4(glove_like, make_table) -> None:
    target = make_table(torch.randn(50, 40) * 0.04 - 0.01)
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
        standardize(make_table(torch.ones(3, 3)))


def test_standardize_keeps_dtype(make_table) -> None:
    t = make_table((torch.randn(30, 8) * 3).to(torch.bfloat16))
    assert standardize(t).vectors.dtype == torch.bfloat16


@pytest.mark.parametrize("axis", ["both", "rows", "cols", "all"])
def test_shuffle_keeps_multiset_and_tokens(glove_like, axis) -> None:
    out = shuffle(glove_like, axis=axis, seed=7)
    assert out.tokens == glove_like.tokens
    assert torch.equal(out.vectors.flatten().sort().values, glove_like.vectors.flatten().sort().values)
    assert not torch.equal(out.vectors, glove_like.vectors)
    assert torch.equal(out.vectors, shuffle(glove_like, axis=axis, seed=7).vectors)
    if axis == "rows":  # each row is some original row
        assert torch.equal(out.vectors.sort(dim=0).values, glove_like.vectors.sort(dim=0).values)


def test_shuffle_bad_axis(glove_like) -> None:
    with pytest.raises(BadInput, match="choose one of: both, rows, cols, all"):
        shuffle(glove_like, axis="diag")


def test_scale(glove_like) -> None:
    assert torch.allclose(scale(glove_like, "sqrt-dim").vectors, glove_like.vectors * math.sqrt(40))
    assert torch.equal(scale(glove_like, "2").vectors, glove_like.vectors * 2)
    with pytest.raises(BadInput, match="sqrt-dim or a number"):
        scale(glove_like, "twice")


def test_sinusoidal_formula() -> None:
    pe = sinusoidal(50, 6)
    i, j = 7, 3  # odd column: cos(i / 10000^((j-1)/D))
    assert pe[i, j].item() == pytest.approx(math.cos(i / 10000 ** ((j - 1) / 6)), abs=1e-6)
    assert pe[i, 2].item() == pytest.approx(math.sin(i / 10000 ** (2 / 6)), abs=1e-6)
    assert sinusoidal(3, 5).shape == (3, 5)  # odd D


def test_posenc_adds_exactly_one_pe_row_per_row(glove_like) -> None:
    out = posenc(glove_like, max_len=64, seed=2)
    pe = sinusoidal(64, 40)  # (L, D)
    diff = out.vectors - glove_like.vectors  # (N, D)
    dist = torch.cdist(diff, pe, compute_mode="donot_use_mm_for_euclid_dist")  # (N, L)
    assert bool((dist.min(dim=1).values < 1e-5).all())
    assert out.history[-1]["args"] == {"max_len": 64, "base": 10000.0, "seed": 2}


def test_inputs_are_not_mutated(glove_like) -> None:
    before = glove_like.vectors.clone()
    for f in (lambda t: standardize(t), lambda t: shuffle(t), lambda t: scale(t), lambda t: posenc(t)):
        f(glove_like)
    assert torch.equal(glove_like.vectors, before) and glove_like.history == []


def test_stats_equal_numpy(glove_like) -> None:
    x = glove_like.vectors.double().numpy()
    s = table_stats(glove_like, max_len=100)
    assert (s.n, s.dim) == (500, 40)
    assert s.min == pytest.approx(x.min()) and s.max == pytest.approx(x.max())
    assert s.mean == pytest.approx(x.mean(), rel=1e-6) and s.std == pytest.approx(x.std(ddof=1), rel=1e-7)
    assert s.xavier_bound == pytest.approx(math.sqrt(6 / 540)) and s.xavier_std == pytest.approx(math.sqrt(2 / 540))
    assert s.scaled_std == pytest.approx(x.std(ddof=1) * math.sqrt(40), rel=1e-7)
    pe = sinusoidal(100, 40).double().numpy()
    assert s.posenc_std == pytest.approx(pe.std(ddof=1), rel=1e-6)
    assert s.absorption == pytest.approx(s.scaled_std / s.posenc_std)


def test_stats_reference_posenc_matches_paper_table6(make_table) -> None:
    s = table_stats(make_table(torch.randn(10, 300)))
    assert s.posenc_mean == pytest.approx(0.131, abs=5e-4)  # Table 6: Pos. Encoding mean 0.131


def test_moments_precise_with_large_offset() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2000, 300, generator=g) * 0.01 + 50.0
    a = x.double().numpy()
    mean, std = moments(x)
    assert mean == pytest.approx(a.mean(), rel=1e-9) and std == pytest.approx(a.std(ddof=1), rel=1e-5)


def test_standardize_inplace_equals_pure(glove_like) -> None:
    pure = standardize(glove_like, "xavier").vectors
    copy = glove_like.derive(glove_like.vectors.clone(), "copy", {})
    assert torch.equal(standardize(copy, "xavier", inplace=True).vectors, pure)


def test_block_moments_on_numpy_equal_moments_on_torch() -> None:
    from embtool.stats import block_moments

    x = torch.randn(3000, 7, generator=torch.Generator().manual_seed(4)) * 5 + 100
    blocks = [b.reshape(-1) for b in np.array_split(x.numpy(), 5)]
    assert block_moments(blocks) == pytest.approx(moments(x), rel=1e-9)
    assert block_moments(blocks) == pytest.approx((x.double().mean().item(), x.double().std().item()), rel=1e-7)
