"""Admin's profiling: ω after the pass equals the accumulated-variance formula, computed here on its own."""

from __future__ import annotations

import math

import pytest
import torch

from embtool.model.transformer import ModelConfig, Seq2Seq, build, key_padding_mask
from embtool.training.admin import profile
from embtool.training.batching import translation_batch


def _var(x: torch.Tensor, keep: torch.Tensor) -> float:
    return float(x[keep].var(correction=0))


def _expected(model: Seq2Seq, src: torch.Tensor, tgt_in: torch.Tensor) -> dict[str, list[float]]:
    """Liu et al.'s ω_i = sqrt(Σ_{j<i} Var[f_j]) (f_0: the stack's input; ω_1 = 1), layer by layer."""
    keep_s, keep_t = src != 0, tgt_in != 0
    mask = key_padding_mask(src, 0)
    out: dict[str, list[float]] = {"encoder": [], "decoder": []}

    def through(stack: str, x: torch.Tensor, keep: torch.Tensor, branches) -> torch.Tensor:
        total = None
        for ln, branch in branches:
            f = branch(x)
            if total is None:
                w, total = 1.0, _var(x, keep)
            else:
                w = math.sqrt(total)
            total += _var(f, keep)
            out[stack].append(w)
            x = ln(x * w + f)
        return x

    with torch.no_grad():
        enc = []
        for layer in model.encoder.layers:
            enc += [(layer.ln1, lambda h, a=layer.attn: a(h, mask=mask)), (layer.ln2, layer.ffn)]
        memory = through("encoder", model.src_in(src), keep_s, enc)
        dec = []
        for layer in model.decoder:
            dec += [
                (layer.ln1, lambda h, a=layer.self_attn: a(h, causal=True)),
                (layer.ln2, lambda h, a=layer.cross_attn: a(h, memory=memory, mask=mask)),
                (layer.ln3, layer.ffn),
            ]
        through("decoder", model.tgt_in(tgt_in), keep_t, dec)
    return out


def test_omega_after_profiling_equals_the_accumulated_variance():
    torch.manual_seed(0)
    cfg = ModelConfig(src_vocab=30, tgt_vocab=25, d_model=16, n_heads=2, n_layers=3, d_ff=32, norm="admin")
    model = build(cfg)
    assert isinstance(model, Seq2Seq)
    g = torch.Generator().manual_seed(1)
    srcs = [torch.randint(4, 30, (n,), generator=g).tolist() for n in (5, 3, 7, 2)]
    tgts = [torch.randint(4, 25, (n,), generator=g).tolist() for n in (4, 6, 2, 5)]
    batch = translation_batch(srcs, tgts)  # padded: the variances skip padding
    model.train()  # profiling runs in eval mode and puts the mode back
    figures = profile(model, batch)
    assert model.training
    model.eval()
    want = _expected(model, batch.src, batch.tgt_in)
    assert len(want["encoder"]) == 2 * 3 and len(want["decoder"]) == 3 * 3
    for stack in ("encoder", "decoder"):
        assert figures["omega"][stack] == pytest.approx(want[stack], rel=1e-5)
    omegas = [w for layer in model.encoder.layers for w in layer.omega]
    omegas += [w for layer in model.decoder for w in layer.omega]
    flat = want["encoder"] + want["decoder"]
    for w, value in zip(omegas, flat, strict=True):
        assert torch.allclose(w, torch.full_like(w, value), rtol=1e-5)  # a D-vector filled with ω_i
    assert want["decoder"][1] > 1.0  # the stream grew: later sub-layers weigh their input more
    assert all(layer.probe is None for layer in [*model.encoder.layers, *model.decoder])
    assert figures["tokens"] == {"encoder": 17, "decoder": 17 + 4}  # tgt_in: <bos> + target


def test_profiling_needs_an_admin_model():
    model = build(ModelConfig(src_vocab=10, tgt_vocab=10, d_model=8, n_heads=2, n_layers=1))
    batch = translation_batch([[5, 6]], [[7]])
    with pytest.raises(AssertionError, match="Admin"):
        profile(model, batch)


def test_a_classifier_is_profiled_through_its_encoder():
    from embtool.training.batching import classification_batch

    torch.manual_seed(0)
    cfg = ModelConfig(kind="classification", src_vocab=12, d_model=8, n_heads=2, n_layers=2, norm="admin")
    figures = profile(build(cfg), classification_batch([[4, 5, 6], [7, 8]], [0, 1]))
    assert list(figures["omega"]) == ["encoder"] and len(figures["omega"]["encoder"]) == 4
    assert figures["omega"]["encoder"][0] == 1.0 and figures["omega"]["encoder"][1] > 1.0
