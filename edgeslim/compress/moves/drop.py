"""``drop``: a layer whose output has its input's shape is removed, its input passed straight on (a
block of a deep stack: a ``same`` convolution that keeps the channels, a square Dense)."""

from __future__ import annotations

from typing import Any

from edgeslim.compress.moves.base import CONV_KINDS, LayerMove, Move, plain_call

KINDS = (*CONV_KINDS, "Dense")


class Drop(LayerMove):
    name = "drop"

    def check(self, graph: Any, move: Move, node: Any) -> str:
        kind = type(node.layer).__name__
        if kind not in KINDS:
            return f"{kind}: only a convolution or Dense layer is dropped"
        if not plain_call(node) or move.layer in graph.output_names:
            return "shared, with several inputs, or the model's output"
        call = node.call_shapes()[0]
        if tuple(call.in_shape) != tuple(call.out_shape):
            shapes = f"{tuple(call.out_shape[1:])} against {tuple(call.in_shape[1:])}"
            return f"its output's shape is not its input's: {shapes}"
        return ""

    def replacements(self, graph: Any, move: Move) -> dict[str, Any]:
        from edgeslim.layers.base import Replacement

        return {move.layer: Replacement([])}
