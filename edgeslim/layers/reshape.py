"""Reshaping layers: Flatten repeats each channel once per spatial position (the Flatten -> Dense index
map); a Reshape or Permute that keeps the channel axis last passes channels through; others stop."""

from __future__ import annotations

import keras

from edgeslim.layers.base import FLATTEN, PASS, STOP, Call, LayerHandler

L = keras.layers


class ReshapeHandler(LayerHandler):
    family = "reshape"
    handles = (L.Flatten, L.Reshape, L.Permute, L.RepeatVector)

    def macs(self, call: Call) -> int:
        return 0

    def note(self) -> str:
        return ""

    def keeps_range(self) -> bool:
        return True

    def coupling(self, call: Call) -> tuple[str, str]:
        if isinstance(self.layer, L.Flatten):
            if any(d is None for d in call.in_shape[1:-1]):
                return STOP, "Flatten of a dynamic shape"
            if getattr(self.layer, "data_format", "channels_last") != "channels_last":
                return STOP, "channels_first data format"
            return FLATTEN, ""
        if isinstance(self.layer, L.RepeatVector):
            return PASS, ""
        if isinstance(self.layer, L.Permute) and self.layer.dims[-1] == len(self.layer.dims):
            return PASS, ""
        if isinstance(self.layer, L.Reshape) and call.in_shape[-1] == call.out_shape[-1]:
            return PASS, ""
        return STOP, f"{type(self.layer).__name__} moves the channel axis"
