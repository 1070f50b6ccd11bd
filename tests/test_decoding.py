"""Greedy and beam decoding: beam 1 equals greedy, on a trained model."""

from __future__ import annotations

import torch

from embtool.training.decoding import beam_search, greedy


def test_beam_one_equals_greedy_and_beam_runs(reverse_run):
    from embtool.model import ModelConfig, Seq2Seq
    from embtool.training.checkpoint import load_weights, read_weights_meta

    meta = read_weights_meta(reverse_run / "best.safetensors")
    model = Seq2Seq(ModelConfig.from_dict(meta["model"]))
    load_weights(model, reverse_run / "best.safetensors")
    model.eval()
    src = torch.tensor([[5, 6, 7, 8, 3], [9, 10, 3, 0, 0]])
    g = greedy(model, src, 12)
    assert beam_search(model, src, 12, k=1) == g
    b = beam_search(model, src, 12, k=4)
    assert len(b) == 2 and all(isinstance(t, int) for h in b for t in h)
