"""Fake quantization for quantization-aware training, matching LiteRT's int8 scheme.

Weights: symmetric, per output channel (or per tensor), 255 levels in [-127, 127], scale =
max|w| / 127: LiteRT's own rule, so a weight already on this grid converts without error.
Activations: asymmetric 8-bit over a range kept by moving averages of the batch min/max (widened to
contain 0, which must be exact). Rounding passes gradients straight through (STE).

The layers are registered (package "edgeslim") so a saved QAT model loads in safe mode.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops


def _ste(x: Any, quantized: Any) -> Any:
    return x + ops.stop_gradient(quantized - x)


def fake_quant_weights(w: Any, axes: tuple[int, ...]) -> Any:
    """Symmetric int8 fake quantization; ``axes`` are reduced (all but the output-channel axis)."""
    scale = ops.maximum(ops.max(ops.abs(w), axis=axes, keepdims=True), 1e-12) / 127.0
    return _ste(w, ops.clip(ops.round(w / scale), -127.0, 127.0) * scale)


def quantize_weights_np(w: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """The same grid in numpy: the float weights LiteRT will reproduce exactly."""
    scale = np.maximum(np.max(np.abs(w), axis=axes, keepdims=True), 1e-12) / 127.0
    return (np.clip(np.round(w / scale), -127, 127) * scale).astype(np.float32)


def weight_axes(layer: keras.layers.Layer, per_channel: bool) -> tuple[int, ...]:
    rank = len(layer.kernel.shape)
    if not per_channel:
        return tuple(range(rank))
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return tuple(range(rank - 2))  # depthwise output channel c m + j is kernel[..., c, j]
    return tuple(range(rank - 1))


def fake_quant_activations(x: Any, lo: Any, hi: Any) -> Any:
    lo, hi = ops.minimum(lo, 0.0), ops.maximum(hi, 0.0)
    scale = ops.maximum(hi - lo, 1e-8) / 255.0
    zero = ops.round(-lo / scale)
    q = ops.clip(ops.round(x / scale) + zero, 0.0, 255.0)
    return _ste(x, (q - zero) * scale)


@keras.saving.register_keras_serializable(package="edgeslim")
class FakeQuant(keras.layers.Layer):
    """Quantize-dequantize an activation tensor; the range follows moving averages of batch min/max."""

    def __init__(self, momentum: float = 0.99, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.momentum = momentum

    def build(self, input_shape: tuple) -> None:
        self.range_min = self.add_weight(shape=(), initializer="zeros", trainable=False, name="range_min")
        self.range_max = self.add_weight(shape=(), initializer="ones", trainable=False, name="range_max")
        # 1: quantize; 0: pass values through (calibration measures the float values). A variable,
        # not a Python flag, so every traced function sees the current setting.
        self.enabled = self.add_weight(shape=(), initializer="ones", trainable=False, name="enabled")

    def call(self, x: Any, training: bool | None = None) -> Any:
        if training:
            m = self.momentum
            self.range_min.assign(m * self.range_min + (1 - m) * ops.min(ops.stop_gradient(x)))
            self.range_max.assign(m * self.range_max + (1 - m) * ops.max(ops.stop_gradient(x)))
        quantized = fake_quant_activations(x, self.range_min, self.range_max)
        return x + self.enabled * (quantized - x)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return super().get_config() | {"momentum": self.momentum}


class _QuantizedKernel:
    """Mixin: the layer computes with fake-quantized kernels (``per_channel`` as LiteRT does)."""

    per_channel: bool

    def qkernel(self) -> Any:
        return fake_quant_weights(self.kernel, weight_axes(self, self.per_channel))  # type: ignore[arg-type]

    def _finish(self, outputs: Any, channels: int) -> Any:
        if self.use_bias:  # type: ignore[attr-defined]
            outputs = ops.add(outputs, ops.reshape(self.bias, (1,) * (len(outputs.shape) - 1) + (channels,)))  # type: ignore[attr-defined]
        return self.activation(outputs) if self.activation is not None else outputs  # type: ignore[attr-defined]

    def get_config(self) -> dict[str, Any]:
        return super().get_config() | {"per_channel": self.per_channel}  # type: ignore[misc]


@keras.saving.register_keras_serializable(package="edgeslim")
class QATConv2D(_QuantizedKernel, keras.layers.Conv2D):
    def __init__(self, *args: Any, per_channel: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.per_channel = per_channel

    def call(self, inputs: Any) -> Any:
        return self._finish(self.convolution_op(inputs, self.qkernel()), self.filters)


@keras.saving.register_keras_serializable(package="edgeslim")
class QATDepthwiseConv2D(_QuantizedKernel, keras.layers.DepthwiseConv2D):
    def __init__(self, *args: Any, per_channel: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.per_channel = per_channel

    def call(self, inputs: Any) -> Any:
        outputs = ops.depthwise_conv(
            inputs,
            self.qkernel(),
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )
        return self._finish(outputs, int(self.kernel.shape[-2] * self.kernel.shape[-1]))


@keras.saving.register_keras_serializable(package="edgeslim")
class QATDense(_QuantizedKernel, keras.layers.Dense):
    def __init__(self, *args: Any, per_channel: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.per_channel = per_channel

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        return self._finish(ops.matmul(inputs, self.qkernel()), self.units)


QAT_CLASSES: dict[type, type] = {
    keras.layers.Conv2D: QATConv2D,
    keras.layers.DepthwiseConv2D: QATDepthwiseConv2D,
    keras.layers.Dense: QATDense,
}
