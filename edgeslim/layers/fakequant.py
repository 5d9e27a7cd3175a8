"""Fake quantization for quantization-aware training, matching LiteRT's int8 scheme.

Weights: symmetric, per output channel (or per tensor), 255 levels in [-127, 127], scale =
max|w| / 127: LiteRT's own rule, so a weight already on this grid converts without error.
Activations: asymmetric 8-bit over a range kept by moving averages of the batch min/max (widened to
contain 0, which must be exact). Rounding passes gradients straight through (STE).

The layers are registered (package "edgeslim") so a saved training copy loads in safe mode.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops


def _ste(x: Any, quantized: Any) -> Any:
    return x + ops.stop_gradient(quantized - x)


def fake_quant_weights(w: Any, axes: tuple[int, ...]) -> Any:
    """Symmetric int8 fake quantization; ``axes`` are reduced (all but the output-channel axes)."""
    scale = ops.maximum(ops.max(ops.abs(w), axis=axes, keepdims=True), 1e-12) / 127.0
    return _ste(w, ops.clip(ops.round(w / scale), -127.0, 127.0) * scale)


def quantize_weights_np(w: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """The same grid in numpy: the float weights LiteRT will reproduce exactly."""
    scale = np.maximum(np.max(np.abs(w), axis=axes, keepdims=True), 1e-12) / 127.0
    return (np.clip(np.round(w / scale), -127, 127) * scale).astype(np.float32)


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


class QuantizedKernel:
    """Mixin for a training copy whose kernel is fake-quantized (``axes``: reduced by the scale).

    Subclasses compute with ``self.qkernel()`` where the base layer uses its kernel; the handler of
    the base kind says which axes hold the output channels.
    """

    per_channel: bool
    quant_axes: tuple[int, ...]

    def qkernel(self) -> Any:
        return fake_quant_weights(self.kernel, self.quant_axes)  # type: ignore[attr-defined]

    def finish(self, outputs: Any, channels: int) -> Any:
        if self.use_bias:  # type: ignore[attr-defined]
            shape = (1,) * (len(outputs.shape) - 1) + (channels,)
            outputs = ops.add(outputs, ops.reshape(self.bias, shape))  # type: ignore[attr-defined]
        return self.activation(outputs) if self.activation is not None else outputs  # type: ignore[attr-defined]

    def get_config(self) -> dict[str, Any]:
        return super().get_config() | {  # type: ignore[misc]
            "per_channel": self.per_channel,
            "quant_axes": list(self.quant_axes),
        }


def qat_init(layer: Any, per_channel: bool, quant_axes: Any) -> None:
    layer.per_channel = per_channel
    layer.quant_axes = tuple(quant_axes)


@keras.saving.register_keras_serializable(package="edgeslim")
class QATDense(QuantizedKernel, keras.layers.Dense):
    def __init__(self, *args: Any, per_channel: bool = True, quant_axes: Any = (0,), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        qat_init(self, per_channel, quant_axes)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        return self.finish(ops.matmul(inputs, self.qkernel()), self.units)


def _conv_class(base: type) -> type:
    class QATConv(QuantizedKernel, base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, per_channel: bool = True, quant_axes: Any = (), **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            qat_init(self, per_channel, quant_axes)

        def call(self, inputs: Any) -> Any:
            return self.finish(self.convolution_op(inputs, self.qkernel()), self.filters)

    QATConv.__name__ = QATConv.__qualname__ = f"QAT{base.__name__}"
    return keras.saving.register_keras_serializable(package="edgeslim")(QATConv)


def _depthwise_class(base: type) -> type:
    class QATDepthwise(QuantizedKernel, base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, per_channel: bool = True, quant_axes: Any = (), **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            qat_init(self, per_channel, quant_axes)

        def call(self, inputs: Any) -> Any:
            outputs = ops.depthwise_conv(
                inputs,
                self.qkernel(),
                strides=self.strides,
                padding=self.padding,
                dilation_rate=self.dilation_rate,
                data_format=self.data_format,
            )
            return self.finish(outputs, int(self.kernel.shape[-2] * self.kernel.shape[-1]))

    QATDepthwise.__name__ = QATDepthwise.__qualname__ = f"QAT{base.__name__}"
    return keras.saving.register_keras_serializable(package="edgeslim")(QATDepthwise)


L = keras.layers
QAT_CLASSES: dict[type, type] = {
    L.Dense: QATDense,
    L.Conv1D: _conv_class(L.Conv1D),
    L.Conv2D: _conv_class(L.Conv2D),
    L.Conv3D: _conv_class(L.Conv3D),
    L.DepthwiseConv1D: _depthwise_class(L.DepthwiseConv1D),
    L.DepthwiseConv2D: _depthwise_class(L.DepthwiseConv2D),
}


def is_qat_layer(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, QuantizedKernel)
