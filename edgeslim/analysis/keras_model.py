"""Per-layer counts for a Keras 3 model, by the course's formulas.

Convolution, kernel K_h x K_w x D_in x D_out, output M x N x D_out:
    N_p = K_h K_w D_in D_out + D_out,   N_x = M N K_h K_w D_in D_out
Dense, M_out x M_in:  N_p = M_out (M_in + 1),   N_x = M_out M_in
Depthwise (multiplier r): N_x = M N K_h K_w D_in r; a separable conv adds its 1x1 pointwise part
M N (D_in r) D_out. Strides and dilation change M x N (read from the output shape), not the formula.
Max pooling, Add, Concatenate, Flatten, Dropout and activations multiply nothing. Average pooling
scales each output once; inference BatchNorm is one multiply per element (y = a x + b).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import keras
import numpy as np

from edgeslim.analysis.stats import LayerStats, ModelStats


def analyze_keras(model: keras.Model) -> ModelStats:
    stats = ModelStats(name=model.name)
    for layer in _leaf_layers(model):
        stats.layers.append(layer_stats(layer))
    return stats


def _leaf_layers(model: keras.Model) -> list[keras.layers.Layer]:
    leaves: list[keras.layers.Layer] = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):  # a nested model: count its own layers
            leaves.extend(_leaf_layers(layer))
        else:
            leaves.append(layer)
    return leaves


def layer_stats(layer: keras.layers.Layer) -> LayerStats:
    out_shape = _shape(layer, "output")
    weights = [np.asarray(w) for w in layer.get_weights()]
    params = int(sum(w.size for w in weights))
    nonzero = int(sum(np.count_nonzero(w) for w in weights))
    macs, note = 0, ""
    counter = _counter_for(layer)
    if counter is None:
        if params:
            note = f"multiplications of {type(layer).__name__} are not counted"
    else:
        macs = counter(layer, out_shape)
    return LayerStats(
        name=layer.name,
        type=type(layer).__name__,
        output_shape=list(out_shape),
        params=params,
        macs=int(macs),
        sparsity=0.0 if params == 0 else 1.0 - nonzero / params,
        nonzero_params=nonzero,
        rank=getattr(layer, "edgeslim_rank", None),
        dtype=str(getattr(layer, "dtype", "float32")),
        note=note,
    )


def _shape(layer: keras.layers.Layer, which: str) -> tuple[int | None, ...]:
    try:
        tensor = getattr(layer, which)
        if isinstance(tensor, list | tuple):
            tensor = tensor[0]
        return tuple(tensor.shape)
    except (AttributeError, ValueError):  # a layer used twice has no single input/output
        return ()


def _spatial(out_shape: tuple[int | None, ...]) -> int:
    """Product of the output's spatial dimensions (everything between batch and channels)."""
    return math.prod(int(d) for d in out_shape[1:-1] if d is not None)


def _elements(out_shape: tuple[int | None, ...]) -> int:
    return math.prod(int(d) for d in out_shape[1:] if d is not None)


def _conv_macs(layer: keras.layers.Layer, out_shape: tuple[int | None, ...]) -> int:
    kernel = layer.kernel.shape  # (K_h, K_w, D_in / groups, D_out)
    return _spatial(out_shape) * math.prod(kernel)


def _depthwise_macs(layer: keras.layers.Layer, out_shape: tuple[int | None, ...]) -> int:
    kernel = layer.kernel.shape  # (K_h, K_w, D_in, r)
    return _spatial(out_shape) * math.prod(kernel)


def _separable_macs(layer: keras.layers.Layer, out_shape: tuple[int | None, ...]) -> int:
    depthwise = layer.depthwise_kernel.shape  # (K_h, K_w, D_in, r)
    pointwise = layer.pointwise_kernel.shape  # (1, 1, D_in r, D_out)
    return _spatial(out_shape) * (math.prod(depthwise) + math.prod(pointwise))


def _dense_macs(layer: keras.layers.Layer, out_shape: tuple[int | None, ...]) -> int:
    m_in, m_out = layer.kernel.shape
    # A Dense on (batch, T, features) runs once per leading position.
    positions = math.prod(int(d) for d in out_shape[1:-1] if d is not None) if len(out_shape) > 2 else 1
    return positions * m_in * m_out


def _per_output(layer: keras.layers.Layer, out_shape: tuple[int | None, ...]) -> int:
    return _elements(out_shape)


def _nothing(layer: keras.layers.Layer, out_shape: tuple[int | None, ...]) -> int:
    return 0


# Order matters: subclasses before their bases (SeparableConv2D and DepthwiseConv2D are not Conv2D
# subclasses in Keras 3, but a user's subclass of Conv2D should still be counted as one).
_COUNTERS: list[tuple[type, Callable[[keras.layers.Layer, tuple[int | None, ...]], int]]] = [
    (keras.layers.SeparableConv2D, _separable_macs),
    (keras.layers.DepthwiseConv2D, _depthwise_macs),
    (keras.layers.Conv2D, _conv_macs),
    (keras.layers.Conv1D, _conv_macs),
    (keras.layers.Dense, _dense_macs),
    (keras.layers.BatchNormalization, _per_output),
    (keras.layers.AveragePooling2D, _per_output),
    (keras.layers.GlobalAveragePooling2D, _per_output),
    (keras.layers.MaxPooling2D, _nothing),
    (keras.layers.GlobalMaxPooling2D, _nothing),
    (keras.layers.Add, _nothing),
    (keras.layers.Concatenate, _nothing),
    (keras.layers.Flatten, _nothing),
    (keras.layers.Reshape, _nothing),
    (keras.layers.Dropout, _nothing),
    (keras.layers.Activation, _nothing),
    (keras.layers.ReLU, _nothing),
    (keras.layers.Softmax, _nothing),
    (keras.layers.ZeroPadding2D, _nothing),
]


def _counter_for(
    layer: keras.layers.Layer,
) -> Callable[[keras.layers.Layer, tuple[int | None, ...]], int] | None:
    custom = getattr(layer, "edgeslim_macs", None)  # layers from our own stages know their count
    if callable(custom):
        return lambda lyr, shape: custom(shape)
    for cls, counter in _COUNTERS:
        if isinstance(layer, cls):
            return counter
    return None
