"""MultiHeadAttention: counted (projections, scores, weighted sum, output projection), not rewritten.

With T_q query and T_k key/value positions (every axis between batch and features), h heads, key
width k and value width v: N_x = T_q d_q h k + T_k d_k h k + T_k d_v h v (projections)
+ h T_q T_k (k + v) (scores and their weighted sum) + T_q h v d_out (output projection).
The softmax's exponentials are not multiplications and are not counted.
"""

from __future__ import annotations

import math

import keras

from edgeslim.layers.base import STOP, Call, LayerHandler

WHY = "attention is counted but not rewritten (its heads share one output projection)"


class AttentionHandler(LayerHandler):
    family = "attention"
    handles = (keras.layers.MultiHeadAttention,)

    def macs(self, call: Call) -> int | None:
        query = call.inputs[0]
        value = call.inputs[1] if len(call.inputs) > 1 else query
        key = call.inputs[2] if len(call.inputs) > 2 else value
        shapes = (query, value, key, call.out_shape)
        if any(d is None for s in shapes for d in s[1:]) or self.layer.attention_axes not in (
            None,
            tuple(range(1, len(query) - 1)),
        ):
            return None  # dynamic lengths, or attention over a subset of axes
        t_q, t_k = math.prod(query[1:-1]), math.prod(key[1:-1])
        h, k = self.layer.num_heads, self.layer.key_dim
        v = self.layer.value_dim or k
        projections = t_q * query[-1] * h * k + t_k * key[-1] * h * k + t_k * value[-1] * h * v
        return int(projections + h * t_q * t_k * (k + v) + t_q * h * v * call.out_shape[-1])

    def note(self) -> str:
        return ""

    def coupling(self, call: Call) -> tuple[str, str]:
        return STOP, WHY

    def why_not_factorize(self) -> str:
        return WHY

    def why_not_qat(self) -> str:
        return "attention trains in float (LiteRT still quantizes its projections)"
