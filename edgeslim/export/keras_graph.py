"""How a Keras 3 model is traced for the converters: its input signature and a float32 check."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from edgeslim.errors import EdgeslimError

if TYPE_CHECKING:
    import keras


def single_input_shape(model: keras.Model) -> tuple[int, ...]:
    """The per-sample input shape; export handles single-input models (a Dataset has one ``x``)."""
    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise EdgeslimError(
            f"model {model.name!r} has no defined inputs",
            "build it with keras.Input(...) or call it once on data",
        )
    if len(inputs) != 1:
        raise EdgeslimError(
            f"model {model.name!r} has {len(inputs)} inputs; export supports single-input models",
            "wrap the model so that it takes one input tensor",
        )
    shape = tuple(inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise EdgeslimError(
            f"model {model.name!r} has an input with unknown dimensions {shape}",
            "give keras.Input a full per-sample shape, e.g. keras.Input((28, 28, 1))",
        )
    return tuple(int(d) for d in shape)


def input_name(model: keras.Model) -> str:
    name = getattr(model.inputs[0], "name", "") or "input"
    return re.sub(r"[^A-Za-z0-9_]", "_", name.split(":")[0]) or "input"


def tensor_specs(model: keras.Model, batch: int | None) -> list[Any]:
    """``tf.TensorSpec`` per input; ``batch=None`` keeps the batch dimension dynamic."""
    import tensorflow as tf

    return [tf.TensorSpec((batch, *single_input_shape(model)), tf.float32, name=input_name(model))]
