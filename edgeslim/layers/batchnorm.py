"""BatchNormalization: inference y = a x + b per channel, one multiplication per element.

Folded into the conv/Dense before it by the quantize stage (LiteRT folds it the same way, so QAT
must train the folded weights); pruned along with the channels it scales.
"""

from __future__ import annotations

import keras
import numpy as np

from edgeslim.layers.base import NORM, STOP, Call, Edit, LayerHandler, weights_of


class BatchNormHandler(LayerHandler):
    family = "batch norm"
    handles = (keras.layers.BatchNormalization,)

    def macs(self, call: Call) -> int:
        return self.output_elements(call)

    def resized(self, call: Call, keep_in: float, keep_out: float) -> tuple[float, float]:
        return self.params() * keep_in, self.macs(call) * keep_in

    def channel_axis_ok(self, call: Call) -> bool:
        axis = self.layer.axis
        axis = axis if isinstance(axis, int) else (axis[0] if len(axis) == 1 else None)
        rank = len(call.in_shape)
        return axis in (-1, rank - 1)

    def coupling(self, call: Call) -> tuple[str, str]:
        return (NORM, "") if self.channel_axis_ok(call) else (STOP, "BatchNorm over a non-channel axis")

    def prune(self, keep_out: np.ndarray | None, keep_in: np.ndarray | None) -> Edit:
        keep = keep_in if keep_in is not None else keep_out
        return Edit({}, [w[keep] for w in weights_of(self.layer)])

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """(a, b) with BN(x) = a x + b in inference mode."""
        bn = self.layer
        mean, var = np.asarray(bn.moving_mean, np.float64), np.asarray(bn.moving_variance, np.float64)
        gamma = np.asarray(bn.gamma, np.float64) if bn.scale else np.ones_like(mean)
        beta = np.asarray(bn.beta, np.float64) if bn.center else np.zeros_like(mean)
        a = gamma / np.sqrt(var + bn.epsilon)
        return a, beta - mean * a

    def gamma(self) -> np.ndarray | None:
        return np.abs(np.asarray(self.layer.gamma)) if self.layer.scale else None
