"""``global_pool``: a Flatten before the classifier becomes a global average pooling: the Dense layers
reading it keep one weight per channel (the sum of that channel's weights over the positions, exact
for a feature map that is constant across positions), so their parameters shrink by the map's area."""

from __future__ import annotations

from typing import Any

from edgeslim.compress.moves.base import LayerMove, Move, flattened_readers, plain_call


class GlobalPool(LayerMove):
    name = "global_pool"

    def check(self, graph: Any, move: Move, node: Any) -> str:
        if type(node.layer).__name__ != "Flatten" or not plain_call(node):
            return f"{type(node.layer).__name__}: the move replaces a Flatten"
        if len(node.call_shapes()[0].in_shape) not in (3, 4):
            return "it does not flatten a 1-D or 2-D feature map"
        readers = graph.consumers(move.layer)
        if not readers or any(r not in flattened_readers(graph) for r in readers):
            return "something other than a Dense layer reads it"
        return ""

    def replacements(self, graph: Any, move: Move) -> dict[str, Any]:
        import keras

        from edgeslim.layers.base import Replacement, unique_name

        dims = len(graph.nodes[move.layer].call_shapes()[0].in_shape)
        pooling = keras.layers.GlobalAveragePooling2D if dims == 4 else keras.layers.GlobalAveragePooling1D
        name = unique_name(f"{move.layer}_gap", set(graph.nodes))
        return {move.layer: Replacement([pooling(name=name)])}
