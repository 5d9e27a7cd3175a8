"""Separable convolution (1-D, 2-D): a depthwise part (multiplier r) then a pointwise part.
N_x = P (K^n D_in r + D_in r D_out), N_p = K^n D_in r + D_in r D_out + D_out."""

from __future__ import annotations

import math

import keras
import numpy as np

from edgeslim.layers.base import PRODUCER, STOP, Call, Edit, LayerHandler, keep_index, spatial, weights_of

L = keras.layers


class SeparableConvHandler(LayerHandler):
    family = "separable"
    handles = (L.SeparableConv1D, L.SeparableConv2D)
    kernel_attrs = ("depthwise_kernel", "pointwise_kernel")
    bias_attr = "bias"

    def macs(self, call: Call) -> int:
        dw, pw = self.layer.depthwise_kernel.shape, self.layer.pointwise_kernel.shape
        return spatial(call.out_shape) * (math.prod(int(d) for d in dw) + math.prod(int(d) for d in pw))

    def resized(self, call: Call, keep_in: float, keep_out: float) -> tuple[float, float]:
        dw, pw = self.layer.depthwise_kernel.shape, self.layer.pointwise_kernel.shape
        dw_n, pw_n = math.prod(int(d) for d in dw), math.prod(int(d) for d in pw)
        bias = float(self.layer.filters) if self.layer.use_bias else 0.0
        positions = spatial(call.out_shape)
        params = dw_n * keep_in + pw_n * keep_in * keep_out + bias * keep_out
        return params, positions * (dw_n * keep_in + pw_n * keep_in * keep_out)

    def coupling(self, call: Call) -> tuple[str, str]:
        if self.layer.data_format != "channels_last":
            return STOP, "channels_first data format"
        return PRODUCER, ""

    def in_channels(self) -> int:
        return int(self.layer.depthwise_kernel.shape[-2])

    def out_channels(self) -> int:
        return int(self.layer.filters)

    def depth_multiplier(self) -> int:
        return int(self.layer.depth_multiplier)

    def quant_axes(self, kernel_index: int, per_channel: bool) -> tuple[int, ...]:
        rank = len(self.layer.depthwise_kernel.shape)
        if not per_channel:
            return tuple(range(rank))
        return tuple(range(rank - 2)) if kernel_index == 0 else tuple(range(rank - 1))

    def prune(self, keep_out: np.ndarray | None, keep_in: np.ndarray | None) -> Edit:
        w = weights_of(self.layer)
        m = self.depth_multiplier()
        rows = keep_index(keep_in, w[0].shape[-2])
        cols = keep_index(keep_out, w[1].shape[-1])
        in_mask = np.zeros(w[0].shape[-2], bool)
        in_mask[rows] = True
        new = [w[0][..., rows, :], w[1][..., np.repeat(in_mask, m), :][..., cols]]
        if self.layer.use_bias:
            new.append(w[2][cols])
        return Edit({"filters": len(cols)}, new)

    def why_not_factorize(self) -> str:
        return f"{type(self.layer).__name__} is already factorized"

    def why_not_separate(self) -> str:
        return f"{type(self.layer).__name__} is already separable"

    def why_not_fold(self) -> str:
        return "" if self.layer.data_format == "channels_last" else "channels_first data format"

    def fold(self, a: np.ndarray, b: np.ndarray) -> Edit:
        w = [np.asarray(x, np.float64) for x in weights_of(self.layer)]
        bias = w[2] if self.layer.use_bias else np.zeros(len(a))
        new = [w[0].astype(np.float32), (w[1] * a).astype(np.float32), (bias * a + b).astype(np.float32)]
        return Edit({"use_bias": True}, new)

    def design_rows(self, x: np.ndarray, weights: list[np.ndarray]) -> np.ndarray | None:
        """The depthwise outputs (``weights[0]``: the depthwise kernel to use): the pointwise part's input."""
        import tensorflow as tf

        dw = weights[0]
        strides, rates = tuple(self.layer.strides), tuple(self.layer.dilation_rate)
        if len(dw.shape) == 3:  # 1-D: a 1 x L image
            x, dw, strides, rates = x[:, None], dw[None], (1, *strides), (1, *rates)
        if max(strides) > 1 and max(rates) > 1:
            return None
        out = tf.nn.depthwise_conv2d(
            x, dw, strides=[1, *strides, 1], padding=self.layer.padding.upper(), dilations=rates
        )
        return out.numpy().reshape(-1, out.shape[-1])

    def linear_weights(self, weights: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        matrix = weights[1].reshape(-1, weights[1].shape[-1])
        bias = weights[-1] if self.layer.use_bias else np.zeros(matrix.shape[-1], np.float32)
        return matrix, bias

    def with_linear(
        self, weights: list[np.ndarray], matrix: np.ndarray, bias: np.ndarray
    ) -> list[np.ndarray]:
        return [weights[0], matrix.reshape(weights[1].shape).astype(np.float32), bias.astype(np.float32)]
