"""Folding inference BatchNorm into the conv or Dense layer before it.

BN computes y = gamma (x - mean) / sqrt(var + eps) + beta = a x + b per channel. When x is the
linear output of a conv/Dense whose only consumer is the BN, scaling that layer's output channel
by a and adding b to its bias gives the same y with one layer less, and the quantizer then sees
the weights that really run (LiteRT folds BN the same way, so quantization-aware training must
train the folded weights).
"""

from __future__ import annotations

import keras
import numpy as np

from edgeslim.compress.graph import ModelGraph, Replacement, copy_layer

L = keras.layers
FOLD_INTO: tuple[type, ...] = (L.Conv2D, L.Conv1D, L.Dense, L.DepthwiseConv2D, L.SeparableConv2D)


def bn_affine(bn: keras.layers.BatchNormalization) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) with BN(x) = a x + b in inference mode."""
    mean, var = np.asarray(bn.moving_mean, np.float64), np.asarray(bn.moving_variance, np.float64)
    gamma = np.asarray(bn.gamma, np.float64) if bn.scale else np.ones_like(mean)
    beta = np.asarray(bn.beta, np.float64) if bn.center else np.zeros_like(mean)
    a = gamma / np.sqrt(var + bn.epsilon)
    return a, beta - mean * a


def foldable(graph: ModelGraph, bn_name: str) -> tuple[str | None, str]:
    """(producer to fold into, "") or (None, why not)."""
    node = graph.nodes[bn_name]
    bn = node.layer
    if type(bn) is not L.BatchNormalization:
        return None, "a customised BatchNormalization"
    axis = bn.axis if isinstance(bn.axis, int) else (bn.axis[0] if len(bn.axis) == 1 else None)
    rank = len(node.keras_nodes[0].input_tensors[0].shape)
    if axis not in (-1, rank - 1):
        return None, "normalises a non-channel axis"
    if node.calls > 1 or len(node.inputs) != 1 or graph.is_input(node.inputs[0]):
        return None, "no single conv/Dense layer before it"
    producer = graph.nodes[node.inputs[0]]
    layer = producer.layer
    if type(layer) not in FOLD_INTO or producer.calls > 1:
        return None, f"follows {type(layer).__name__} {layer.name!r}, which cannot absorb it"
    if getattr(layer.activation, "__name__", "linear") != "linear":
        return None, f"{layer.name!r} applies {layer.activation.__name__} before the BatchNorm"
    if graph.consumers(layer.name) != [bn_name] or layer.name in graph.output_names:
        return None, f"{layer.name!r} has other consumers"
    return layer.name, ""


def folded_weights(layer: keras.layers.Layer, a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
    weights = [np.asarray(w, np.float64) for w in layer.get_weights()]
    bias = weights[-1] if layer.use_bias else np.zeros(len(a))
    new_bias = (bias * a + b).astype(np.float32)
    if isinstance(layer, L.SeparableConv2D):
        return [weights[0].astype(np.float32), (weights[1] * a).astype(np.float32), new_bias]
    kernel = weights[0]
    if isinstance(layer, L.DepthwiseConv2D):  # output channel c m + j lives at kernel[..., c, j]
        kernel = kernel * a.reshape(kernel.shape[-2], kernel.shape[-1])
    else:
        kernel = kernel * a
    return [kernel.astype(np.float32), new_bias]


def fold_batchnorm(model: keras.Model) -> tuple[keras.Model, dict[str, str], dict[str, str]]:
    """(new model, {bn: producer it was folded into}, {bn: why it stayed})."""
    graph = ModelGraph(model)
    replacements: dict[str, Replacement] = {}
    folded: dict[str, str] = {}
    kept: dict[str, str] = {}
    for name, node in graph.nodes.items():
        if not isinstance(node.layer, L.BatchNormalization):
            continue
        producer, reason = foldable(graph, name)
        if producer is None:
            kept[name] = reason
            continue
        layer = graph.nodes[producer].layer
        a, b = bn_affine(node.layer)
        replacements[producer] = Replacement(
            [copy_layer(layer, use_bias=True)], [folded_weights(layer, a, b)]
        )
        replacements[name] = Replacement([])
        folded[name] = producer
    return graph.rebuild(replacements), folded, kept
