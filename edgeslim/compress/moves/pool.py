"""``pool``: a 2x2 max pooling right after a layer (after its fused activation): a quarter of the
positions from it on, the layer itself unchanged (unlike ``stride``, which also makes the layer four
times cheaper but keeps only one position in four of its output)."""

from __future__ import annotations

from typing import Any

from edgeslim.compress.moves.base import LayerMove, Move, plain_call, why_not_resizable
from edgeslim.compress.moves.stride import MIN_SIDE

KINDS = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "BatchNormalization", "Activation", "ReLU")


class Pool(LayerMove):
    name = "pool"

    def check(self, graph: Any, move: Move, node: Any) -> str:
        kind = type(node.layer).__name__
        if kind not in KINDS:
            return f"{kind}: pooling goes after a convolution (or its BatchNorm or activation)"
        out = node.call_shapes()[0].out_shape
        if len(out) != 4 or not plain_call(node):
            return "not one call on a 2-D feature map"
        if min(out[1:3]) < MIN_SIDE:
            return f"its output is {out[1]}x{out[2]}, too small to halve"
        consumers = [graph.nodes[c] for c in graph.consumers(move.layer)]
        if any(type(c.layer).__name__ in ("MaxPooling2D", "AveragePooling2D") for c in consumers):
            return "already pooled"
        return why_not_resizable(graph, move.layer)

    def replacements(self, graph: Any, move: Move) -> dict[str, Any]:
        import keras

        from edgeslim.layers.base import Replacement, copy_layer, unique_name

        layer = graph.nodes[move.layer].layer
        taken = {n for n in graph.nodes}
        pool = keras.layers.MaxPooling2D(2, name=unique_name(f"{move.layer}_pool", taken))
        return {move.layer: Replacement([copy_layer(layer), pool], [layer.get_weights(), None])}
