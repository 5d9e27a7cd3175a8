"""A model's layer graph, and rebuilding it with some layers replaced, without touching the original.

Every structural stage works the same way: read the graph (who feeds whom), decide per layer on a
:class:`Replacement` (new layers plus their weights), and call :meth:`ModelGraph.rebuild`, which
copies every other layer (new objects, same weights) and wires the new model, Sequential or
functional, exactly as the old one was wired.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from edgeslim.errors import EdgeslimError


@dataclass
class Replacement:
    """What a layer becomes: new layers called in sequence on its (single) input, and their weights.

    An empty ``layers`` list removes the layer (its input passes straight through). ``weights[i]`` is
    set on ``layers[i]`` once the new model is built; ``None`` keeps that layer's fresh initial weights.
    """

    layers: list[keras.layers.Layer]
    weights: list[list[np.ndarray] | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.weights:
            self.weights = [None] * len(self.layers)


@dataclass
class GraphNode:
    layer: keras.layers.Layer
    inputs: list[str]  # producer layer names, in call order (model inputs by their InputLayer name)
    calls: int = 1  # > 1 for a layer shared between several calls
    keras_nodes: list[Any] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.layer.name


class ModelGraph:
    """The layers of a built Sequential or functional model, in topological order, with their wiring."""

    def __init__(self, model: keras.Model) -> None:
        if not isinstance(model, keras.Model):
            raise EdgeslimError(f"expected a Keras model, got {type(model).__name__}")
        functional = getattr(model, "_functional", None) if isinstance(model, keras.Sequential) else model
        if functional is None or not getattr(functional, "_nodes_by_depth", None) or not model.built:
            raise EdgeslimError(
                f"model {model.name!r} is not built (no known input shape)",
                "give the model a keras.Input, or call model.build(input_shape) first",
            )
        self.model = model
        self.functional = functional
        self.sequential = isinstance(model, keras.Sequential)
        self.nodes: dict[str, GraphNode] = {}
        self.input_names = [t._keras_history.operation.name for t in functional.inputs]
        for depth in sorted(functional._nodes_by_depth, reverse=True):
            for node in functional._nodes_by_depth[depth]:
                if node.is_input:
                    continue
                layer = node.operation
                inputs = [t._keras_history.operation.name for t in node.input_tensors]
                if layer.name in self.nodes:  # a shared layer: one more call of the same object
                    entry = self.nodes[layer.name]
                    entry.calls += 1
                    entry.inputs += inputs
                    entry.keras_nodes.append(node)
                else:
                    self.nodes[layer.name] = GraphNode(layer, inputs, 1, [node])
        self.output_names = [t._keras_history.operation.name for t in functional.outputs]
        self._consumers: dict[str, list[str]] = {name: [] for name in [*self.input_names, *self.nodes]}
        for node in self.nodes.values():
            for producer in node.inputs:
                if node.name not in self._consumers[producer]:
                    self._consumers[producer].append(node.name)

    def layers(self) -> list[keras.layers.Layer]:
        return [node.layer for node in self.nodes.values()]

    def consumers(self, name: str) -> list[str]:
        return list(self._consumers.get(name, []))

    def is_input(self, name: str) -> bool:
        return name in self.input_names

    def input_tensor(self, name: str) -> Any:
        """The symbolic input of a layer's (first) call, for probing its inputs on real data."""
        node = self.nodes[name].keras_nodes[0]
        tensors = node.input_tensors
        return tensors[0] if len(tensors) == 1 else list(tensors)

    def output_tensor(self, name: str) -> Any:
        return self.nodes[name].keras_nodes[0].outputs[0]

    def probe(self, tensors: list[Any], x: np.ndarray, batch_size: int = 256) -> list[np.ndarray]:
        """Values of some symbolic tensors of this model on ``x``."""
        if not tensors:
            return []
        probe = keras.Model(self.functional.inputs, tensors)
        values = probe.predict(x, batch_size=batch_size, verbose=0)
        return [np.asarray(v) for v in (values if isinstance(values, list) else [values])]

    def layer_inputs(self, names: list[str], x: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(names, self.probe([self.input_tensor(n) for n in names], x), strict=True))

    def rebuild(self, replacements: dict[str, Replacement] | None = None) -> keras.Model:
        """A new model: replaced layers as given, every other layer copied with its weights."""
        replacements = replacements or {}
        for name in replacements:
            if name not in self.nodes:
                raise KeyError(f"cannot replace {name!r}: no such layer")
        pending: list[tuple[keras.layers.Layer, list[np.ndarray] | None]] = []
        copies: dict[str, keras.layers.Layer] = {}

        def copy_of(layer: keras.layers.Layer) -> keras.layers.Layer:
            if layer.name not in copies:
                copies[layer.name] = copy_layer(layer)
                pending.append((copies[layer.name], [np.asarray(w) for w in layer.get_weights()]))
            return copies[layer.name]

        for rep in replacements.values():
            pending.extend(zip(rep.layers, rep.weights, strict=True))
        if self.sequential:
            new_model = self._rebuild_sequential(replacements, copy_of)
        else:
            new_model = self._rebuild_functional(replacements, copy_of)
        for layer, weights in pending:
            if weights is not None:
                set_weights(layer, weights)
        if new_model.output_shape != self.model.output_shape:  # never hand on a silently different model
            raise RuntimeError(
                f"internal error: rebuilding {self.model.name!r} changed its output shape from "
                f"{self.model.output_shape} to {new_model.output_shape}"
            )
        return new_model

    def _rebuild_sequential(self, replacements: dict[str, Replacement], copy_of: Any) -> keras.Model:
        source = self.functional.inputs[0]
        stack: list[keras.layers.Layer] = [keras.Input(batch_shape=tuple(source.shape), dtype=source.dtype)]
        for name, node in self.nodes.items():
            stack.extend(replacements[name].layers if name in replacements else [copy_of(node.layer)])
        return keras.Sequential(stack, name=self.model.name)

    def _rebuild_functional(self, replacements: dict[str, Replacement], copy_of: Any) -> keras.Model:
        fmodel = self.functional
        tensors: dict[int, Any] = {}
        new_inputs = []
        for t in fmodel.inputs:
            new = keras.Input(batch_shape=tuple(t.shape), dtype=t.dtype, name=t._keras_history.operation.name)
            tensors[id(t)] = new
            new_inputs.append(new)
        for depth in sorted(fmodel._nodes_by_depth, reverse=True):
            for node in fmodel._nodes_by_depth[depth]:
                if node.is_input:
                    continue
                args, kwargs = node.arguments.fill_in(tensors)
                layer = node.operation
                if layer.name in replacements:
                    outputs = args[0]
                    for new_layer in replacements[layer.name].layers:
                        outputs = new_layer(outputs)
                else:
                    outputs = copy_of(layer)(*args, **kwargs)
                for old, new in zip(node.outputs, keras.tree.flatten(outputs), strict=True):
                    tensors[id(old)] = new
        outputs = [tensors[id(t)] for t in fmodel.outputs]
        return keras.Model(
            keras.tree.pack_sequence_as(fmodel._inputs_struct, new_inputs),
            keras.tree.pack_sequence_as(fmodel._outputs_struct, outputs),
            name=self.model.name,
        )


def copy_layer(layer: keras.layers.Layer, **changes: Any) -> keras.layers.Layer:
    """A new, unbuilt layer with the same config (plus ``changes``); nested models are cloned whole."""
    if isinstance(layer, keras.Model):
        if changes:
            raise ValueError("cannot change the config of a nested model")
        return keras.models.clone_model(layer)
    if isinstance(layer, keras.layers.Lambda) and not changes:
        # The function is already in memory: reuse it rather than deserialize code (safe mode refuses).
        return keras.layers.Lambda(
            layer.function,
            output_shape=getattr(layer, "_output_shape", None),
            mask=getattr(layer, "mask", None),
            arguments=getattr(layer, "arguments", None),
            name=layer.name,
        )
    try:
        config = layer.get_config()
        config.update(changes)
        return layer.__class__.from_config(config)
    except (NotImplementedError, TypeError, ValueError) as exc:
        raise EdgeslimError(
            f"layer {layer.name!r} ({type(layer).__name__}) cannot be copied from its config: {exc}",
            "give the class a get_config() that returns its constructor arguments",
        ) from None


def set_weights(layer: keras.layers.Layer, weights: list[np.ndarray]) -> None:
    current = layer.get_weights()
    if len(current) != len(weights) or any(
        a.shape != np.shape(b) for a, b in zip(current, weights, strict=False)
    ):
        raise ValueError(
            f"internal error: weights for {layer.name!r} have shapes {[np.shape(w) for w in weights]}, "
            f"the layer expects {[a.shape for a in current]}"
        )
    layer.set_weights(weights)


def unique_name(base: str, taken: set[str]) -> str:
    """``base``, or ``base_2``, ``base_3``... whichever is free; the result is added to ``taken``."""
    name, i = base, 2
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


def layer_names(model: keras.Model) -> list[str]:
    return [layer.name for layer in model.layers]
