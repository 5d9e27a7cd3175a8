"""Recurrent layers (LSTM, GRU, SimpleRNN, Bidirectional) made convertible to LiteRT builtin ops.

Keras 3 runs a recurrence as a symbolic while loop over a TensorList. The TFLite converter cannot
lower that with a dynamic batch (``'tf.TensorListReserve' op requires element_shape to be static``),
and with a static batch it keeps a WHILE loop whose int8 calibration crashes the converter process
(a segfault, seen with TF 2.21). So no loop reaches the converter:

- an LSTM with the standard activations (tanh, sigmoid), forward, stateless and returning only its
  output is wrapped in the function signature the converter recognizes from Keras 2's LSTM
  (``api_implements="lstm_<id>"``, ``time_major``, ``go_backwards``): with a static batch it becomes
  one fused ``UNIDIRECTIONAL_SEQUENCE_LSTM`` op, which LiteRT and TFLite Micro run in float and in
  full int8 (8-bit activations, 16-bit cell state). The function's body is unrolled, so where the
  converter does not fuse it (a dynamic batch) the body still converts, as unrolled ops;
- every other recurrent layer (GRU and SimpleRNN have no fused TFLite op) is unrolled: one copy of
  the cell's builtin ops per time step, which every int8 runtime runs.

ONNX needs none of this: tf2onnx rewrites the loop into ONNX's own LSTM/GRU/RNN ops or a Loop.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import keras
from keras.src.models.functional import Functional  # Keras 3 has no public name for graph models

from edgeslim.layers.recurrent import why_not_fused

FUSED_LSTM_OP = "UNIDIRECTIONAL_SEQUENCE_LSTM"


class FusableLSTM(keras.layers.LSTM):
    """An LSTM whose loop is a function the TFLite converter replaces with its fused LSTM op."""

    def inner_loop(self, sequences: Any, initial_state: Any, mask: Any, training: bool = False) -> Any:
        if mask is not None:  # the fused op knows no masks: the (unrolled) Keras loop handles them
            return super().inner_loop(sequences, initial_state, mask, training)
        import tensorflow as tf
        from keras.src import backend as keras_backend

        cell = self.cell

        def body(inputs: Any, init_h: Any, init_c: Any, kernel: Any, recurrent: Any, bias: Any) -> Any:
            # The converter reads the weights from arguments 3-5 and the five results below, in this
            # order (Keras 2's standard_lstm); the body is what TensorFlow itself runs.
            last, outputs, states = keras_backend.rnn(
                lambda x, s: cell(x, s),
                inputs,
                [init_h, init_c],
                unroll=True,
                input_length=inputs.shape[1],
                return_all_outputs=True,
            )
            return last, outputs, states[0], states[1], tf.constant(0.0)

        function = tf.function(
            body,
            autograph=False,
            experimental_attributes={
                "api_implements": f"lstm_{uuid.uuid4().hex}",
                "time_major": False,
                "go_backwards": False,
            },
        )
        bias = (
            tf.convert_to_tensor(cell.bias.value)
            if cell.use_bias
            else tf.zeros((4 * cell.units,), sequences.dtype)
        )
        last, outputs, h, c, _ = function(
            sequences,
            initial_state[0],
            initial_state[1],
            tf.convert_to_tensor(cell.kernel.value),
            tf.convert_to_tensor(cell.recurrent_kernel.value),
            bias,
        )
        return last, outputs, [h, c]


@dataclass
class RecurrentPlan:
    """What the export did with each recurrent layer, for the sidecar."""

    model: keras.Model
    fused: list[str] = field(default_factory=list)
    unrolled: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> {type, why}

    @property
    def wants_static_batch(self) -> bool:
        return bool(self.fused)  # the converter fuses an LSTM only with a known batch size


def recurrent_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every recurrent layer (and Bidirectional wrapper), nested models included."""
    found: list[keras.layers.Layer] = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += recurrent_layers(layer)
        elif isinstance(layer, keras.layers.RNN | keras.layers.Bidirectional):
            found.append(layer)
    return found


def plan_for_tflite(model: keras.Model, fuse: bool = True) -> RecurrentPlan | None:
    """A copy of ``model`` ready for the converter (fused LSTMs, unrolled loops); None without recurrence.

    The copy has the same weights and computes the same outputs; ``model`` itself is not touched.
    """
    layers = recurrent_layers(model)
    if not layers:
        return None
    if not isinstance(model, keras.Sequential | Functional):
        return RecurrentPlan(model)  # a subclassed model cannot be cloned layer by layer: convert as is
    plan = RecurrentPlan(model)

    def rebuild(layer: keras.layers.Layer) -> keras.layers.Layer:
        config = layer.get_config()
        if isinstance(layer, keras.layers.Bidirectional):
            for key in ("layer", "backward_layer"):
                if key in config:
                    config[key]["config"]["unroll"] = True
            plan.unrolled[layer.name] = {
                "type": "Bidirectional",
                "why": "Bidirectional has no fused TFLite op",
            }
            return type(layer).from_config(config)
        if isinstance(layer, keras.layers.RNN):
            config["unroll"] = True  # also the fused layer's fallback path (masks)
            why = why_not_fused(layer) if fuse else "the fused LSTM did not convert (see fallback)"
            if why is None:
                plan.fused.append(layer.name)
                return FusableLSTM.from_config(config)
            plan.unrolled[layer.name] = {"type": type(layer).__name__, "why": why}
            return type(layer).from_config(config)
        return type(layer).from_config(config)

    clone = keras.models.clone_model(model, clone_function=rebuild, recursive=True)
    clone.set_weights(model.get_weights())
    plan.model = clone
    return plan


def describe(plan: RecurrentPlan, op_names: list[str]) -> dict[str, Any]:
    """The sidecar's record of the recurrent layers, from what the converted file really holds."""
    fused_ops = op_names.count(FUSED_LSTM_OP)
    layers: list[dict[str, Any]] = [
        {"name": name, "type": "LSTM", "as": FUSED_LSTM_OP if fused_ops else "unrolled"}
        for name in plan.fused
    ]
    layers += [{"name": name, "as": "unrolled", **row} for name, row in plan.unrolled.items()]
    record: dict[str, Any] = {"layers": layers, "fused_lstm_ops": fused_ops}
    if fused_ops:
        record["state"] = (
            "the fused LSTM keeps h and c in variable tensors from one invocation to the next: "
            "edgeslim.runtime resets them before every call; on a device call reset_all_variables() "
            "(LiteRT) or MicroInterpreter::Reset() (TFLite Micro) before each new sequence"
        )
    return record
