"""EinsumDense: counted from its equation (every index's size multiplied once per sample), not rewritten."""

from __future__ import annotations

import math

import keras

from edgeslim.layers.base import STOP, Call, LayerHandler


class EinsumDenseHandler(LayerHandler):
    family = "dense"
    handles = (keras.layers.EinsumDense,)
    kernel_attrs = ("kernel",)

    def macs(self, call: Call) -> int | None:
        equation = self.layer.equation.replace(" ", "")
        inputs, _, output = equation.partition("->")
        x_idx, _, w_idx = inputs.partition(",")
        if "." in equation or len(x_idx) != len(call.in_shape) or len(w_idx) != len(self.layer.kernel.shape):
            return None
        sizes: dict[str, int] = {}
        for letters, shape in ((x_idx, call.in_shape), (w_idx, self.layer.kernel.shape)):
            for letter, dim in zip(letters, shape, strict=True):
                if dim is not None:
                    sizes[letter] = int(dim)
        batch = x_idx[0] if call.in_shape[0] is None else ""
        return math.prod(size for letter, size in sizes.items() if letter != batch)

    def coupling(self, call: Call) -> tuple[str, str]:
        return STOP, "EinsumDense is counted but not rewritten"

    def why_not_factorize(self) -> str:
        return "EinsumDense is counted but not rewritten"
