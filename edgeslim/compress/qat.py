"""Quantization-aware training: a training copy with fake quantization where LiteRT quantizes, and back.

LiteRT's int8 model quantizes every conv/Dense kernel (per output channel) and every tensor
between ops, after the fused activation (ReLU/ReLU6 fuse into the conv; softmax, tanh, sigmoid do
not). The training copy puts fake quantization at those points. After training, ``strip_qat``
returns a standard Keras model (no custom layers) whose kernels lie exactly on LiteRT's int8 grid,
so the export step's full-int8 conversion reproduces what training saw.
"""

from __future__ import annotations

import keras
import numpy as np

from edgeslim.compress.fakequant import QAT_CLASSES, FakeQuant, quantize_weights_np, weight_axes
from edgeslim.compress.graph import ModelGraph, Replacement, copy_layer, unique_name

L = keras.layers
FUSED = ("linear", "relu", "relu6")
# Ops whose output keeps its input's quantization (LiteRT reuses the scale): no fake quant after them.
SAME_RANGE: tuple[type, ...] = (
    L.MaxPooling1D,
    L.MaxPooling2D,
    L.MaxPooling3D,
    L.GlobalMaxPooling1D,
    L.GlobalMaxPooling2D,
    L.GlobalMaxPooling3D,
    L.Flatten,
    L.Reshape,
    L.Permute,
    L.Dropout,
    L.SpatialDropout2D,
    L.ZeroPadding2D,
    L.ZeroPadding1D,
    L.Cropping2D,
    L.UpSampling2D,
    L.Identity,
    L.GaussianNoise,
)


def _activation(layer: keras.layers.Layer) -> str:
    return getattr(getattr(layer, "activation", None), "__name__", "linear")


def _fuses_next(graph: ModelGraph, name: str) -> bool:
    """True when the layer's only consumer is a ReLU/ReLU6 layer that LiteRT fuses into it."""
    consumers = graph.consumers(name)
    if len(consumers) != 1 or name in graph.output_names:
        return False
    nxt = graph.nodes[consumers[0]].layer
    return isinstance(nxt, L.ReLU) or (
        isinstance(nxt, L.Activation) and _activation(nxt) in ("relu", "relu6")
    )


def build_qat_model(model: keras.Model, per_channel: bool = True, momentum: float = 0.99) -> keras.Model:
    """A training copy of ``model`` (same layer names, same weights) with fake quantization inserted."""
    graph = ModelGraph(model)
    taken = {layer.name for layer in graph.layers()}
    replacements: dict[str, Replacement] = {}

    def fq(base: str) -> FakeQuant:
        return FakeQuant(momentum=momentum, name=unique_name(f"{base}_fq", taken))

    for name, node in graph.nodes.items():
        layer = node.layer
        weights = [np.asarray(w) for w in layer.get_weights()]
        single = len(node.inputs) == 1
        pre = [fq(f"{name}_in")] if single and graph.is_input(node.inputs[0]) else []
        act = _activation(layer)
        qat_cls = QAT_CLASSES.get(type(layer))
        if qat_cls is not None and node.calls == 1:
            config = layer.get_config() | {"per_channel": per_channel}
            if act in FUSED:
                core = [qat_cls.from_config(config)]
                post = [] if act == "linear" and _fuses_next(graph, name) else [fq(name)]
                layers, sets = [*pre, *core, *post], [None] * len(pre) + [weights] + [None] * len(post)
            else:  # LiteRT quantizes the linear output, then the activation's output
                core = [
                    qat_cls.from_config(config | {"activation": "linear"}),
                    fq(f"{name}_linear"),
                    L.Activation(act, name=unique_name(f"{name}_{act}", taken)),
                ]
                if name not in graph.output_names:
                    core.append(fq(name))
                layers = [*pre, *core]
                sets = [None] * len(pre) + [weights] + [None] * (len(core) - 1)
        elif node.calls > 1 or (isinstance(layer, SAME_RANGE) and not pre):
            continue  # copied as is
        else:
            post = (
                []
                if (
                    isinstance(layer, SAME_RANGE)
                    or name in graph.output_names
                    or _activation(layer) == "softmax"
                )
                else [fq(name)]
            )
            layers = [*pre, copy_layer(layer), *post]
            sets = [None] * len(pre) + [weights] + [None] * len(post)
        replacements[name] = Replacement(layers, sets)
    return graph.rebuild(replacements)


def fake_quant_layers(model: keras.Model) -> list[FakeQuant]:
    return [layer for layer in model.layers if isinstance(layer, FakeQuant)]


class RangeCalibration(keras.callbacks.Callback):
    """Set every activation range to the min/max of the float computation on ``x``, as LiteRT's
    calibration will measure it, at the start of training and of every epoch.

    The exported model is a plain float model, so LiteRT computes its own ranges from the
    representative samples; training against the same ranges makes the int8 model the one trained.
    Between calibrations the ranges follow the batches' moving averages.
    """

    def __init__(self, qat_model: keras.Model, x: np.ndarray) -> None:
        super().__init__()
        self.layers = fake_quant_layers(qat_model)
        self.x = x
        self.probe: keras.Model | None = None
        if self.layers:
            graph = ModelGraph(qat_model)
            self.probe = keras.Model(
                graph.functional.inputs, [graph.input_tensor(q.name) for q in self.layers]
            )

    def calibrate(self) -> dict[str, tuple[float, float]]:
        if self.probe is None:
            return {}
        for layer in self.layers:  # measure the float computation: quantization off while probing
            layer.enabled.assign(0.0)
        try:
            values = self.probe.predict(self.x, batch_size=256, verbose=0)
        finally:
            for layer in self.layers:
                layer.enabled.assign(1.0)
        values = values if isinstance(values, list) else [values]
        out = {}
        for layer, v in zip(self.layers, values, strict=True):
            lo, hi = float(min(np.min(v), 0.0)), float(max(np.max(v), 0.0))
            layer.range_min.assign(lo)
            layer.range_max.assign(hi)
            out[layer.name] = (lo, hi)
        return out

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.calibrate()


def strip_qat(float_model: keras.Model, qat_model: keras.Model, per_channel: bool = True) -> keras.Model:
    """``float_model``'s architecture with the trained weights, kernels snapped to the int8 grid."""
    new = ModelGraph(float_model).rebuild()
    for layer in new.layers:
        try:
            trained = qat_model.get_layer(layer.name)
        except ValueError:
            continue
        weights = [np.asarray(w) for w in trained.get_weights()]
        if type(trained) in QAT_CLASSES.values() and weights:
            weights[0] = quantize_weights_np(weights[0], weight_axes(trained, per_channel))
        layer.set_weights(weights)
    return new


def ranges(qat_model: keras.Model) -> dict[str, tuple[float, float]]:
    return {
        layer.name: (float(layer.range_min), float(layer.range_max)) for layer in fake_quant_layers(qat_model)
    }
