"""``padding``: a ``valid`` convolution becomes ``same``: its output keeps its input's size. Not a
saving by itself: it is what lets a stride or a pooling come earlier in a stack of valid convolutions
(MNISTnet3's 7x7, 5x5, 3x3, 3x3 leave 5x5 of 28x28; halve the input first and they leave nothing)."""

from __future__ import annotations

from typing import Any

from edgeslim.compress.moves.base import CONV_KINDS, LayerMove, Move, plain_call, why_not_resizable


class Padding(LayerMove):
    name = "padding"

    def check(self, graph: Any, move: Move, node: Any) -> str:
        kind = type(node.layer).__name__
        if kind not in CONV_KINDS or getattr(node.layer, "padding", "") != "valid":
            return f"{kind}: only a valid convolution is padded"
        if max(node.layer.kernel_size) == 1 or not plain_call(node):
            return "a 1x1 kernel, shared, or with several inputs"
        return why_not_resizable(graph, move.layer)

    def replacements(self, graph: Any, move: Move) -> dict[str, Any]:
        from edgeslim.layers.base import Replacement, copy_layer

        layer = graph.nodes[move.layer].layer
        return {move.layer: Replacement([copy_layer(layer, padding="same")], [layer.get_weights()])}
