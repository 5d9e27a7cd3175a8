"""Quantization-aware training: a training copy with fake quantization where LiteRT quantizes, and back.

LiteRT's int8 model quantizes every kernel (per output channel) and every tensor between ops, after
the fused activation (ReLU/ReLU6 fuse into the conv; softmax, tanh, sigmoid do not). The training
copy puts fake quantization at those points; each layer's handler gives its fake-quantized form
(``qat_layer``) or says why its kernel trains in float. After training, ``strip_qat`` returns a
standard Keras model (no custom layers) whose kernels lie exactly on LiteRT's int8 grid, so the
export step's full-int8 conversion reproduces what training saw.
"""

from __future__ import annotations

import keras
import numpy as np

from edgeslim.layers import Replacement, copy_layer, unique_name
from edgeslim.layers.fakequant import FakeQuant, is_qat_layer, quantize_weights_np
from edgeslim.layers.graph import ModelGraph

FUSED = ("linear", "relu", "relu6")


def _fuses_next(graph: ModelGraph, name: str) -> bool:
    """True when the layer's only consumer is a ReLU/ReLU6 layer that LiteRT fuses into it."""
    consumers = graph.consumers(name)
    if len(consumers) != 1 or name in graph.output_names:
        return False
    nxt = graph.nodes[consumers[0]]
    return nxt.handler.family == "pooling and elementwise" and nxt.handler.activation_name() in (
        "relu",
        "relu6",
    )


def build_qat_model(
    model: keras.Model, per_channel: bool = True, momentum: float = 0.99
) -> tuple[keras.Model, dict[str, str]]:
    """A training copy of ``model`` (same layer names, same weights) with fake quantization inserted,
    and {layer: why its kernel trains in float} for every layer with kernels that got no QAT form."""
    graph = ModelGraph(model)
    taken = {layer.name for layer in graph.layers()}
    replacements: dict[str, Replacement] = {}
    in_float: dict[str, str] = {}

    def fq(base: str) -> FakeQuant:
        return FakeQuant(momentum=momentum, name=unique_name(f"{base}_fq", taken))

    for name, node in graph.nodes.items():
        layer, handler = node.layer, node.handler
        weights = [np.asarray(w) for w in layer.get_weights()]
        single = len(node.inputs[0]) == 1
        pre = [fq(f"{name}_in")] if single and graph.is_input(node.inputs[0][0]) else []
        act = handler.activation_name()
        why = handler.why_not_qat() if handler.kernels() else "no kernel"
        if node.calls > 1:
            if handler.kernels():
                in_float[name] = "shared layer: its calls would share one activation range"
            continue  # copied as is
        if handler.kernels() and why:
            in_float[name] = why
        if handler.kernels() and not why:
            qat = handler.qat_layer(per_channel)
            if act in FUSED:
                post = [] if act == "linear" and _fuses_next(graph, name) else [fq(name)]
                layers, sets = [*pre, qat, *post], [None] * len(pre) + [weights] + [None] * len(post)
            else:  # LiteRT quantizes the linear output, then the activation's output
                linear = handler.qat_layer(per_channel).__class__.from_config(
                    qat.get_config() | {"activation": "linear"}
                )
                core = [
                    linear,
                    fq(f"{name}_linear"),
                    keras.layers.Activation(act, name=unique_name(f"{name}_{act}", taken)),
                ]
                if name not in graph.output_names:
                    core.append(fq(name))
                layers = [*pre, *core]
                sets = [None] * len(pre) + [weights] + [None] * (len(core) - 1)
        elif handler.keeps_range() and not pre:
            continue
        else:
            quiet = handler.keeps_range() or name in graph.output_names or act == "softmax"
            post = [] if quiet else [fq(name)]
            layers = [*pre, copy_layer(layer), *post]
            sets = [None] * len(pre) + [weights] + [None] * len(post)
        replacements[name] = Replacement(layers, sets)
    return graph.rebuild(replacements), in_float


def fake_quant_layers(model: keras.Model) -> list[FakeQuant]:
    return [layer for layer in model.layers if isinstance(layer, FakeQuant)]


class RangeCalibration(keras.callbacks.Callback):
    """Set every activation range to the min/max of the float computation on ``x``, as LiteRT's
    calibration will measure it, at the start of training and of every epoch.

    The exported model is a plain float model, so LiteRT computes its own ranges from the
    representative samples; training against the same ranges makes the int8 model the one trained.
    Between calibrations the ranges follow the batches' moving averages.
    """

    def __init__(self, qat_model: keras.Model, x: object) -> None:
        super().__init__()
        self.layers = fake_quant_layers(qat_model)
        self.x = x
        self.graph = ModelGraph(qat_model) if self.layers else None

    def calibrate(self) -> dict[str, tuple[float, float]]:
        if self.graph is None:
            return {}
        for layer in self.layers:  # measure the float computation: quantization off while probing
            layer.enabled.assign(0.0)
        try:
            values = self.graph.probe([self.graph.input_tensor(q.name) for q in self.layers], self.x)
        finally:
            for layer in self.layers:
                layer.enabled.assign(1.0)
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
    graph = ModelGraph(float_model)
    new = graph.rebuild()
    new_graph = ModelGraph(new)
    for name, node in new_graph.nodes.items():
        try:
            trained = qat_model.get_layer(name)
        except ValueError:
            continue
        weights = [np.asarray(w) for w in trained.get_weights()]
        if is_qat_layer(trained) and weights:
            weights[0] = quantize_weights_np(weights[0], node.handler.quant_axes(0, per_channel))
        node.layer.set_weights(weights)
    return new


def ranges(qat_model: keras.Model) -> dict[str, tuple[float, float]]:
    return {
        layer.name: (float(layer.range_min), float(layer.range_max)) for layer in fake_quant_layers(qat_model)
    }
