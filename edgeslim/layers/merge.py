"""Merging layers: Add, Subtract, Maximum, Minimum tie channel i of every input (removed together or
not at all) and multiply nothing; Multiply costs (n - 1) per element, Average one; Concatenate along
the channel axis lays its inputs' channels side by side."""

from __future__ import annotations

import keras

from edgeslim.layers.base import CONCAT, MERGE, STOP, Call, LayerHandler

L = keras.layers


class MergeHandler(LayerHandler):
    family = "merge"
    handles = (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum, L.Concatenate)

    def macs(self, call: Call) -> int:
        if isinstance(self.layer, L.Multiply):
            return (len(call.inputs) - 1) * self.output_elements(call)
        if isinstance(self.layer, L.Average):
            return self.output_elements(call)
        return 0

    def resized(self, call: Call, keep_in: float, keep_out: float) -> tuple[float, float]:
        return 0.0, self.macs(call) * keep_out

    def note(self) -> str:
        return ""

    def coupling(self, call: Call) -> tuple[str, str]:
        if isinstance(self.layer, L.Concatenate):
            if self.layer.axis in (-1, len(call.in_shape) - 1):
                return CONCAT, ""
            return MERGE, ""  # joined along a spatial axis: channel i of every input is one channel
        if any(s[-1] != call.inputs[0][-1] for s in call.inputs):
            return STOP, "merged inputs broadcast along channels"
        return MERGE, ""
