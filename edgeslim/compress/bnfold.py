"""Folding inference BatchNorm into the layer before it.

BN computes y = gamma (x - mean) / sqrt(var + eps) + beta = a x + b per channel. When x is the
linear output of a layer whose only consumer is the BN, scaling that layer's output channels by a
and adding b to its bias gives the same y with one layer less, and the quantizer then sees the
weights that really run (LiteRT folds BN the same way, so quantization-aware training must train
the folded weights). Which layers can absorb a BN, and how, their handlers say (``fold``).
"""

from __future__ import annotations

import keras

from edgeslim.layers import Replacement, copy_layer
from edgeslim.layers.batchnorm import BatchNormHandler
from edgeslim.layers.fold import foldable
from edgeslim.layers.graph import ModelGraph


def fold_batchnorm(model: keras.Model) -> tuple[keras.Model, dict[str, str], dict[str, str]]:
    """(new model, {bn: producer it was folded into}, {bn: why it stayed})."""
    graph = ModelGraph(model)
    replacements: dict[str, Replacement] = {}
    folded: dict[str, str] = {}
    kept: dict[str, str] = {}
    for name, node in graph.nodes.items():
        if not isinstance(node.layer, keras.layers.BatchNormalization):
            continue
        producer, reason = foldable(graph, name)
        if producer is None:
            kept[name] = reason
            continue
        bn = node.handler
        assert isinstance(bn, BatchNormHandler)
        edit = graph.nodes[producer].handler.fold(*bn.affine())
        replacements[producer] = Replacement(
            [copy_layer(graph.nodes[producer].layer, **edit.changes)], [edit.weights]
        )
        replacements[name] = Replacement([])
        folded[name] = producer
    return graph.rebuild(replacements), folded, kept
