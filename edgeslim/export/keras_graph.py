"""How a Keras 3 model is traced for the converters: its inputs, their names and the input signature.

One input is traced as one positional tensor (the common case, unchanged); several inputs as one dict
keyed by the model's input names, so the artifacts name their inputs after them (LiteRT as
``serving_default_<name>:0``, ONNX as ``<name>``) and data is fed by name.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from edgeslim.errors import EdgeslimError

if TYPE_CHECKING:
    import keras


def input_specs(model: keras.Model) -> dict[str, tuple[int, ...]]:
    """Per-sample shape of each input, by (sanitized) input name, in the model's input order."""
    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise EdgeslimError(
            f"model {model.name!r} has no defined inputs",
            "build it with keras.Input(...) or call it once on data",
        )
    specs: dict[str, tuple[int, ...]] = {}
    for tensor in inputs:
        shape = tuple(tensor.shape[1:])
        if any(d is None for d in shape):
            raise EdgeslimError(
                f"model {model.name!r} has an input with unknown dimensions {shape}",
                "give keras.Input a full per-sample shape, e.g. keras.Input((28, 28, 1))",
            )
        specs[_name(tensor)] = tuple(int(d) for d in shape)
    if len(specs) != len(inputs):
        raise EdgeslimError(f"model {model.name!r} has inputs with the same name", "name each keras.Input")
    return specs


def single_input_shape(model: keras.Model) -> tuple[int, ...]:
    """The per-sample input shape of a one-input model."""
    specs = input_specs(model)
    if len(specs) != 1:
        raise EdgeslimError(
            f"model {model.name!r} has {len(specs)} inputs {list(specs)}; this needs one",
            "pass a dataset with one named input per model input",
        )
    return next(iter(specs.values()))


def input_name(model: keras.Model) -> str:
    """The first input's name (the one input of a one-input model)."""
    return next(iter(input_specs(model)))


def tensor_specs(model: keras.Model, batch: int | None) -> list[Any]:
    """The input signature: ``[spec]`` for one input, ``[{name: spec}]`` for several; ``batch=None``
    keeps the batch dimension dynamic."""
    import tensorflow as tf

    specs = {
        name: tf.TensorSpec((batch, *shape), tf.float32, name=name)
        for name, shape in input_specs(model).items()
    }
    return list(specs.values()) if len(specs) == 1 else [specs]


def _name(tensor: Any) -> str:
    name = getattr(tensor, "name", "") or "input"
    return re.sub(r"[^A-Za-z0-9_]", "_", name.split(":")[0]) or "input"
