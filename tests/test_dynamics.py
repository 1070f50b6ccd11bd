"""Embedding dynamics: drift, cosine to the first rows by frequency band, residual-branch ratios."""

from __future__ import annotations

import pytest
import torch

from conftest import metrics, reverse_task, tiny_cfg, train_dir
from embtool.model.transformer import ModelConfig, Seq2Seq, build, key_padding_mask
from embtool.training.batching import translation_batch
from embtool.training.dynamics import branch_ratios, embedding_stats, snapshot


def _model(**kw) -> Seq2Seq:
    torch.manual_seed(0)
    cfg = ModelConfig(src_vocab=13, tgt_vocab=10, d_model=8, n_heads=2, n_layers=1, d_ff=16, **kw)
    model = build(cfg)
    assert isinstance(model, Seq2Seq)
    return model


def test_drift_and_cosine_by_band():
    model = _model()
    start = snapshot(model)
    assert set(start) == {"src", "tgt", "out"}
    with torch.no_grad():
        w = model.src_in.emb.weight  # (13, 8): 4 specials, then 9 tokens → bands of 3
        w[4:7] *= 2.0  # frequent: drift 1, same direction
        w[10:13] *= -1.0  # rare: drift 2, opposite direction
    got = embedding_stats(model, start, {"src": 4, "tgt": 4, "out": 4})
    bands = got["src"]["bands"]
    assert bands["frequent"]["drift"] == pytest.approx(1.0) and bands["frequent"]["cos"] == pytest.approx(1.0)
    assert bands["middle"]["drift"] == 0.0
    assert bands["rare"]["drift"] == pytest.approx(2.0) and bands["rare"]["cos"] == pytest.approx(-1.0)
    whole = torch.cat([start["src"][:4], 2 * start["src"][4:7], start["src"][7:10], -start["src"][10:]])
    assert got["src"]["drift"] == pytest.approx(float((whole - start["src"]).norm() / start["src"].norm()))
    assert got["src"]["mean"] == pytest.approx(float(whole.mean())) and got["src"]["std"] == pytest.approx(
        float(whole.std())
    )
    assert got["tgt"]["drift"] == 0.0


def test_a_tied_output_is_not_a_third_embedding():
    assert set(snapshot(_model(tie_output=True))) == {"src", "tgt"}


def test_branch_ratio_of_a_post_ln_sublayer():
    model = _model()
    model.eval()
    batch = translation_batch([[5, 6, 7], [8, 9]], [[4, 5], [6]])
    ratios = branch_ratios(model, batch)
    assert len(ratios["encoder"]) == 2 and len(ratios["decoder"]) == 3
    with torch.no_grad():
        x = model.src_in(batch.src)  # (B, S, D)
        f = model.encoder.layers[0].attn(x, mask=key_padding_mask(batch.src, 0))
    keep = batch.src != 0
    assert ratios["encoder"][0] == pytest.approx(float(f[keep].norm() / x[keep].norm()), rel=1e-5)
    assert branch_ratios(_model(norm="admin"), batch).keys() == {"encoder", "decoder"}


def test_frozen_embeddings_drift_exactly_zero(tmp_path):
    files = reverse_task(tmp_path, n_train=100, n_val=5)
    run = train_dir(tiny_cfg(files, tmp_path / "run", epochs=2, freeze_emb=True))
    for line in metrics(run):
        for side in ("src", "tgt"):
            emb = line["emb"][side]
            assert emb["drift"] == 0.0
            assert all(b["drift"] == 0.0 for b in emb["bands"].values())
        assert line["emb"]["out"]["drift"] > 0  # the output layer is not an input embedding: it trains
        assert len(line["branch_ratio"]["encoder"]) == 2
