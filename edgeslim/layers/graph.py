"""A model's layer graph, flattened, and rebuilding it with some layers replaced, never touching the original.

Every structural stage works the same way: read the graph (who feeds whom, each layer's handler and
calls), decide per layer on a :class:`Replacement`, and call :meth:`ModelGraph.rebuild`, which copies
every other layer (new objects, same weights) and wires the new model as the old one was wired. A
layer called several times (shared) is one node with several calls; its replacement is shared too.
A model nested inside another is inlined first (``flatten_nested``), so stages and counts see leaves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from edgeslim.errors import EdgeslimError
from edgeslim.layers import handler_for
from edgeslim.layers.base import Call, LayerHandler, Replacement, copy_layer, unique_name


@dataclass
class GraphNode:
    layer: keras.layers.Layer
    handler: LayerHandler
    inputs: list[list[str]] = field(default_factory=list)  # per call: producer names (inputs by name)
    keras_nodes: list[Any] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def calls(self) -> int:
        return len(self.keras_nodes)

    @property
    def producers(self) -> list[str]:
        """Every producer over all calls, in call order, without repeats."""
        return list(dict.fromkeys(p for call in self.inputs for p in call))

    def call_shapes(self) -> list[Call]:
        return [
            Call(
                tuple(tuple(t.shape) for t in node.input_tensors),
                tuple(tuple(t.shape) for t in node.outputs),
            )
            for node in self.keras_nodes
        ]


def functional_of(model: keras.Model) -> Any:
    if not isinstance(model, keras.Model):
        raise EdgeslimError(f"expected a Keras model, got {type(model).__name__}")
    functional = getattr(model, "_functional", None) if isinstance(model, keras.Sequential) else model
    if functional is None or not getattr(functional, "_nodes_by_depth", None) or not model.built:
        raise EdgeslimError(
            f"model {model.name!r} is not built (no known input shape), or is a subclassed model",
            "give the model a keras.Input (Sequential or functional API), or call model.build(input_shape)",
        )
    return functional


def _operation_nodes(functional: Any) -> list[Any]:
    return [
        node
        for depth in sorted(functional._nodes_by_depth, reverse=True)
        for node in functional._nodes_by_depth[depth]
        if not node.is_input
    ]


def has_nested(model: keras.Model) -> bool:
    return any(isinstance(node.operation, keras.Model) for node in _operation_nodes(functional_of(model)))


def flatten_nested(model: keras.Model) -> keras.Model:
    """The same computation with every nested model's layers inlined (copies, same weights).

    A nested model called twice shares its inlined layers between both calls, as it shared its own.
    Inner names stay when free, else get the nested model's name as a prefix.
    """
    if not has_nested(model):
        return model
    outer = functional_of(model)
    taken: set[str] = set()  # names are claimed in graph order: outer layers first keep theirs
    copies: dict[int, keras.layers.Layer] = {}
    pending: list[tuple[keras.layers.Layer, list[np.ndarray]]] = []

    def copy_of(layer: keras.layers.Layer, prefix: str) -> keras.layers.Layer:
        if id(layer) not in copies:
            name = layer.name if layer.name not in taken else unique_name(f"{prefix}_{layer.name}", taken)
            taken.add(name)
            copies[id(layer)] = copy_layer(layer, name=name)
            pending.append((copies[id(layer)], [np.asarray(w) for w in layer.get_weights()]))
        return copies[id(layer)]

    def inline(functional: Any, inputs: list[Any], prefix: str) -> list[Any]:
        tensors = {id(t): new for t, new in zip(functional.inputs, inputs, strict=True)}
        for node in _operation_nodes(functional):
            args, kwargs = node.arguments.fill_in(tensors)
            op = node.operation
            if isinstance(op, keras.Model):
                flat_in = keras.tree.flatten((args, kwargs))
                inner = functional_of(op)
                outputs = inline(inner, [t for t in flat_in if _is_tensor(t)], op.name)
                outputs = keras.tree.pack_sequence_as(inner._outputs_struct, outputs)
            else:
                outputs = copy_of(op, prefix)(*args, **kwargs)
            for old, new in zip(node.outputs, keras.tree.flatten(outputs), strict=True):
                tensors[id(old)] = new
        return [tensors[id(t)] for t in functional.outputs]

    new_inputs = [
        keras.Input(batch_shape=tuple(t.shape), dtype=t.dtype, name=t._keras_history.operation.name)
        for t in outer.inputs
    ]
    outputs = inline(outer, new_inputs, model.name)
    flat = keras.Model(
        keras.tree.pack_sequence_as(outer._inputs_struct, new_inputs),
        keras.tree.pack_sequence_as(outer._outputs_struct, outputs),
        name=model.name,
    )
    for layer, weights in pending:
        layer.set_weights(weights)
    return flat


def _is_tensor(value: Any) -> bool:
    return hasattr(value, "_keras_history")


class ModelGraph:
    """The layers of a built Sequential or functional model, in topological order, with their wiring.

    Nested models are inlined first (``self.model`` is then the flat copy, not the model given).
    """

    def __init__(self, model: keras.Model) -> None:
        functional_of(model)
        model = flatten_nested(model)
        functional = functional_of(model)
        self.model = model
        self.functional = functional
        self.sequential = isinstance(model, keras.Sequential)
        self.nodes: dict[str, GraphNode] = {}
        self.input_names = [t._keras_history.operation.name for t in functional.inputs]
        for node in _operation_nodes(functional):
            layer = node.operation
            inputs = [t._keras_history.operation.name for t in node.input_tensors]
            entry = self.nodes.get(layer.name)
            if entry is None:
                entry = self.nodes[layer.name] = GraphNode(layer, handler_for(layer))
            entry.inputs.append(inputs)
            entry.keras_nodes.append(node)
        self.output_names = [t._keras_history.operation.name for t in functional.outputs]
        self._consumers: dict[str, list[str]] = {name: [] for name in [*self.input_names, *self.nodes]}
        for node in self.nodes.values():
            for producer in node.producers:
                if node.name not in self._consumers[producer]:
                    self._consumers[producer].append(node.name)

    def operation_nodes(self) -> list[Any]:
        """Every call of every layer (Keras nodes), in topological order."""
        return _operation_nodes(self.functional)

    def layers(self) -> list[keras.layers.Layer]:
        return [node.layer for node in self.nodes.values()]

    def consumers(self, name: str) -> list[str]:
        return list(self._consumers.get(name, []))

    def is_input(self, name: str) -> bool:
        return name in self.input_names

    def input_tensor(self, name: str, call: int = 0) -> Any:
        """The symbolic input of one call of a layer, for probing its inputs on real data."""
        tensors = self.nodes[name].keras_nodes[call].input_tensors
        return tensors[0] if len(tensors) == 1 else list(tensors)

    def output_tensor(self, name: str, call: int = 0) -> Any:
        return self.nodes[name].keras_nodes[call].outputs[0]

    def probe(self, tensors: list[Any], x: Any, batch_size: int = 256) -> list[np.ndarray]:
        """Values of some symbolic tensors on ``x`` (an array; a list or dict for several inputs)."""
        if not tensors:
            return []
        probe = keras.Model(self.functional.inputs, tensors)
        values = probe.predict(_as_inputs(self.functional, x), batch_size=batch_size, verbose=0)
        return [np.asarray(v) for v in (values if isinstance(values, list) else [values])]

    def layer_inputs(self, names: list[str], x: Any) -> dict[str, np.ndarray]:
        """Each named layer's (first call's, single) input on ``x``."""
        return dict(zip(names, self.probe([self.input_tensor(n) for n in names], x), strict=True))

    def rebuild(self, replacements: dict[str, Replacement] | None = None) -> keras.Model:
        """A new model: replaced layers as given (shared ones stay shared), every other layer copied."""
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
        if _shapes(new_model.outputs) != _shapes(self.functional.outputs):
            raise RuntimeError(  # never hand on a silently different model
                f"internal error: rebuilding {self.model.name!r} changed its output shapes from "
                f"{_shapes(self.functional.outputs)} to {_shapes(new_model.outputs)}"
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
        for node in _operation_nodes(fmodel):
            args, kwargs = node.arguments.fill_in(tensors)
            layer = node.operation
            if layer.name in replacements:
                outputs = args[0]
                for i, new_layer in enumerate(replacements[layer.name].layers):
                    if i == 0 and type(new_layer) is type(layer):  # a same-kind copy takes the whole call
                        outputs = new_layer(*args, **kwargs)  # (attention's query and value, a mask...)
                    else:
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


def _shapes(tensors: list[Any]) -> list[tuple]:
    return [tuple(t.shape) for t in tensors]


def _as_inputs(functional: Any, x: Any) -> Any:
    """``x`` for a model with several inputs: a dict by input name, or a list in input order."""
    if isinstance(x, dict):
        return [x[t._keras_history.operation.name] for t in functional.inputs]
    return x


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
