"""Depthwise convolution (1-D, 2-D), multiplier r: N_x = P K^n D_in r; output c r + j reads input c only."""

from __future__ import annotations

import math

import keras
import numpy as np

from edgeslim.layers.base import DEPTHWISE, STOP, Call, Edit, LayerHandler, spatial, weights_of
from edgeslim.layers.fakequant import QAT_CLASSES

L = keras.layers


class DepthwiseHandler(LayerHandler):
    family = "depthwise"
    handles = (L.DepthwiseConv1D, L.DepthwiseConv2D)
    kernel_attrs = ("kernel",)
    bias_attr = "bias"

    def macs(self, call: Call) -> int:
        return spatial(call.out_shape) * math.prod(int(d) for d in self.layer.kernel.shape)

    def resized(self, call: Call, keep_in: float, keep_out: float) -> tuple[float, float]:
        return self.params() * keep_in, self.macs(call) * keep_in

    def coupling(self, call: Call) -> tuple[str, str]:
        if self.layer.data_format != "channels_last":
            return STOP, "channels_first data format"
        return DEPTHWISE, ""

    def in_channels(self) -> int:
        return int(self.layer.kernel.shape[-2])

    def depth_multiplier(self) -> int:
        return int(self.layer.depth_multiplier)

    def quant_axes(self, kernel_index: int, per_channel: bool) -> tuple[int, ...]:
        rank = len(self.layer.kernel.shape)  # output channel c m + j is kernel[..., c, j]
        return tuple(range(rank - 2)) if per_channel else tuple(range(rank))

    def prune(self, keep_out: np.ndarray | None, keep_in: np.ndarray | None) -> Edit:
        w = weights_of(self.layer)
        keep = np.ones(w[0].shape[-2], bool) if keep_in is None else keep_in
        new = [w[0][..., keep, :]]
        if self.layer.use_bias:
            new.append(w[1][np.repeat(keep, self.depth_multiplier())])
        return Edit({}, new)

    def why_not_fold(self) -> str:
        return "" if self.layer.data_format == "channels_last" else "channels_first data format"

    def fold(self, a: np.ndarray, b: np.ndarray) -> Edit:
        w = [np.asarray(x, np.float64) for x in weights_of(self.layer)]
        kernel = w[0] * a.reshape(w[0].shape[-2], w[0].shape[-1])
        bias = w[1] if self.layer.use_bias else np.zeros(len(a))
        return Edit({"use_bias": True}, [kernel.astype(np.float32), (bias * a + b).astype(np.float32)])

    def why_not_separate(self) -> str:
        return f"{type(self.layer).__name__} is already separable"

    def why_not_factorize(self) -> str:
        return f"{type(self.layer).__name__} is already factorized"

    def why_not_qat(self) -> str:
        return ""

    def qat_layer(self, per_channel: bool) -> keras.layers.Layer:
        base = L.DepthwiseConv1D if isinstance(self.layer, L.DepthwiseConv1D) else L.DepthwiseConv2D
        axes = self.quant_axes(0, per_channel)
        config = self.layer.get_config() | {"per_channel": per_channel, "quant_axes": list(axes)}
        return QAT_CLASSES[base].from_config(config)
