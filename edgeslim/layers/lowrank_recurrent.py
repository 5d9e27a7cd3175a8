"""Recurrent layers whose recurrent kernel is a low-rank product: h_{t-1} R = (h_{t-1} A) B.

A is units x R and B is R x (gates units), so each step costs u R + R g u multiplications instead of
g u^2. Keras keeps the recurrent kernel inside the cell, so the split needs a cell of its own; the
layer around it is Keras's generic RNN (``LowRankRNN``), registered, so a saved model loads with
``safe_mode=True`` once edgeslim is imported.

The LSTM and SimpleRNN cells use h_{t-1} only in that product, so their cells hand the projection
h_{t-1} A to Keras's own step with B as the recurrent kernel: the gate arithmetic stays Keras's. A GRU
also blends h_{t-1} into the new state, so its step is written out here; only ``reset_after=True``
(Keras's default) splits, since otherwise the candidate gate multiplies r * h_{t-1}, not h_{t-1}.
Recurrent dropout, if any, drops projected features rather than state units.

No fused TFLite op computes a projected recurrence, so export unrolls these layers into builtin ops
(FULLY_CONNECTED, LOGISTIC, TANH, MUL, ADD), which LiteRT and TFLite Micro run in int8.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

L = keras.layers
SERIALIZABLE = keras.saving.register_keras_serializable(package="edgeslim")


class _LowRankCell:
    """Mixin for Keras's LSTM/GRU/SimpleRNN cells: the weights are kernel, A, B and the cell's bias."""

    gates = 1

    def __init__(self, *args: Any, rank: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rank = int(rank)

    @property
    def recurrent_kernel(self) -> Any:  # Keras's step multiplies the projected state by B
        return self.recurrent_b

    def _bias_shape(self) -> tuple[int, ...]:
        return (self.gates * self.units,)

    def build(self, input_shape: Any) -> None:
        width = self.gates * self.units
        self.kernel = self.add_weight(
            shape=(input_shape[-1], width), name="kernel", initializer=self.kernel_initializer
        )
        self.recurrent_a = self.add_weight(
            shape=(self.units, self.rank), name="recurrent_kernel_a", initializer=self.recurrent_initializer
        )
        self.recurrent_b = self.add_weight(
            shape=(self.rank, width), name="recurrent_kernel_b", initializer=self.recurrent_initializer
        )
        self.bias = (
            self.add_weight(shape=self._bias_shape(), name="bias", initializer=self.bias_initializer)
            if self.use_bias
            else None
        )
        self.built = True

    def call(self, inputs: Any, states: Any, training: bool = False) -> Any:
        if isinstance(states, list | tuple):
            states = [ops.matmul(states[0], self.recurrent_a), *states[1:]]
        else:
            states = ops.matmul(states, self.recurrent_a)
        return super().call(inputs, states, training=training)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rank": self.rank}


@SERIALIZABLE
class LowRankLSTMCell(_LowRankCell, L.LSTMCell):
    gates = 4


@SERIALIZABLE
class LowRankSimpleRNNCell(_LowRankCell, L.SimpleRNNCell):
    gates = 1


@SERIALIZABLE
class LowRankGRUCell(_LowRankCell, L.GRUCell):
    gates = 3

    def _bias_shape(self) -> tuple[int, ...]:
        return (2, 3 * self.units)  # reset_after: an input bias and a recurrent bias

    def call(self, inputs: Any, states: Any, training: bool = False) -> Any:
        h_tm1 = states[0] if isinstance(states, list | tuple) else states
        if training and 0.0 < self.dropout < 1.0:
            inputs = inputs * self.get_dropout_mask(inputs)
        dropped = h_tm1
        if training and 0.0 < self.recurrent_dropout < 1.0:
            dropped = h_tm1 * self.get_recurrent_dropout_mask(h_tm1)
        matrix_x = ops.matmul(inputs, self.kernel)
        inner = ops.matmul(ops.matmul(dropped, self.recurrent_a), self.recurrent_b)
        if self.use_bias:
            matrix_x = matrix_x + self.bias[0]
            inner = inner + self.bias[1]
        x_z, x_r, x_h = ops.split(matrix_x, 3, axis=-1)
        r_z, r_r, r_h = ops.split(inner, 3, axis=-1)
        z = self.recurrent_activation(x_z + r_z)
        r = self.recurrent_activation(x_r + r_r)
        candidate = self.activation(x_h + r * r_h)
        h = z * h_tm1 + (1 - z) * candidate
        return h, [h] if isinstance(states, list | tuple) else h


LOW_RANK_CELLS: dict[type, type] = {
    L.LSTMCell: LowRankLSTMCell,
    L.GRUCell: LowRankGRUCell,
    L.SimpleRNNCell: LowRankSimpleRNNCell,
}


@SERIALIZABLE
class LowRankRNN(L.RNN):
    """Keras's RNN around a low-rank cell; its own class so that the layer handlers can find it."""

    @property
    def units(self) -> int:
        return int(self.cell.units)

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> LowRankRNN:
        """Also takes ``units`` at the top level, like LSTM/GRU/SimpleRNN (structured pruning sets it).

        The cell is left unbuilt: the layer builds it for its own input, which pruning may have
        narrowed since the cell's recorded build.
        """
        config = dict(config)
        cell = {k: v for k, v in config["cell"].items() if k != "build_config"}
        if "units" in config:
            cell["config"] = {**cell["config"], "units": config.pop("units")}
        return super().from_config({**config, "cell": cell}, custom_objects)


def low_rank_copy(layer: L.RNN, rank: int, name: str) -> LowRankRNN:
    """``layer`` (LSTM, GRU with reset_after, SimpleRNN) with its recurrent kernel split at ``rank``."""
    cell_config = layer.cell.get_config()
    cell_config.pop("name", None)
    cell = LOW_RANK_CELLS[type(layer.cell)].from_config({**cell_config, "rank": rank})
    rnn = {k: getattr(layer, k) for k in ("return_sequences", "return_state", "go_backwards", "stateful")}
    return LowRankRNN(cell, **rnn, unroll=layer.unroll, name=name, dtype=layer.dtype_policy)
