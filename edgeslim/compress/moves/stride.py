"""``stride``: a 2-D convolution with stride 1 gets stride 2: a quarter of the positions from it on.

Its kernel stays; every layer after it sees a feature map half as high and wide, so the layers after
it cost a quarter of their multiplications and their activations a quarter of the arena.
"""

from __future__ import annotations

from typing import Any

from edgeslim.compress.moves.base import LayerMove, Move, plain_call, why_not_resizable

KINDS = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D")
MIN_SIDE = 4  # an output smaller than this has nothing left to halve


class Stride(LayerMove):
    name = "stride"

    def check(self, graph: Any, move: Move, node: Any) -> str:
        kind = type(node.layer).__name__
        if kind not in KINDS:
            return f"{kind}: only a 2-D convolution takes a stride"
        if not plain_call(node):
            return "shared or with several inputs"
        if any(s != 1 for s in node.layer.strides) or any(d != 1 for d in node.layer.dilation_rate):
            return "already strided or dilated"
        height, width = node.call_shapes()[0].out_shape[1:3]
        if min(height, width) < MIN_SIDE:
            return f"its output is {height}x{width}, too small to halve"
        return why_not_resizable(graph, move.layer)

    def replacements(self, graph: Any, move: Move) -> dict[str, Any]:
        from edgeslim.layers.base import Replacement, copy_layer

        layer = graph.nodes[move.layer].layer
        return {move.layer: Replacement([copy_layer(layer, strides=(2, 2))], [layer.get_weights()])}
