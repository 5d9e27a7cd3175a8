"""``input``: the model's input halved inside the model (a 2x2 average pooling before its first layer),
so the sensor's data stays as it is and every layer after sees a quarter of the positions."""

from __future__ import annotations

from typing import Any

from edgeslim.compress.moves.base import Move, plain_call, why_not_resizable
from edgeslim.compress.moves.stride import MIN_SIDE


class SmallerInput:
    name = "input"

    def candidates(self, graph: Any) -> list[Move]:
        move = Move(self.name, "")
        return [] if self.why_not(graph, move) else [move]

    def why_not(self, graph: Any, move: Move) -> str:
        if move.layer:
            return "the move applies to the model's input (input:input)"
        if len(graph.input_names) != 1:
            return "the model has several inputs"
        [name] = graph.input_names
        shape = graph.functional.inputs[0].shape
        if len(shape) != 4 or min(shape[1:3]) < 2 * MIN_SIDE:
            return f"its input {tuple(shape[1:])} is not an image large enough to halve"
        readers = graph.consumers(name)
        if any(not plain_call(graph.nodes[r]) for r in readers):
            return "a layer reading it is shared or has several inputs"
        return why_not_resizable(graph, name)

    def replacements(self, graph: Any, move: Move) -> dict[str, Any]:
        import keras

        from edgeslim.layers.base import Replacement, copy_layer, unique_name

        taken = set(graph.nodes)
        out = {}
        for reader in graph.consumers(graph.input_names[0]):
            layer = graph.nodes[reader].layer
            pool = keras.layers.AveragePooling2D(2, name=unique_name("input_pool", taken))
            out[reader] = Replacement([pool, copy_layer(layer)], [None, layer.get_weights()])
        return out
