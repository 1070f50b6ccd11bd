"""The model's named choices, without torch: ``TrainConfig``'s checks list them before a model (or
torch) is loaded, and the layers that implement them import them from here."""

from __future__ import annotations

NORMS = ("post", "pre", "admin")  # LayerNorm placement (embtool.model.layers)
OUTPUT_HEADS = ("chung", "linear")  # with --output-dim (embtool.model.layers.output_layer)
POOLS = ("mean", "first")  # a classifier's pooling (embtool.model.pooling)
