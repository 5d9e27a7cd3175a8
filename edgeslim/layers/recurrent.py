"""Recurrent layers: LSTM (4 gates), GRU (3), SimpleRNN (1), units u, input features f, T steps.

Per step each gate multiplies [x_t, h_{t-1}] by its kernels, u (f + u) each; the LSTM and GRU
gates then take 3u elementwise products: N_x = T (g u (f + u) + e u), N_p = g u (f + u + 1)
(a GRU with reset_after keeps two biases). Pruning units removes the same unit from every gate block
of the kernel, the recurrent kernel (its rows too) and the bias. Low rank splits the input kernel,
x_t W = (x_t A) B: a Dense to R features before the layer, exact at full rank, so the fused LiteRT
kernel still runs the recurrence.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from edgeslim.layers.base import (
    PRODUCER,
    STOP,
    Call,
    Edit,
    Factorization,
    LayerHandler,
    Replacement,
    copy_layer,
    keep_index,
    singular_values,
    svd_split,
    unique_name,
    weights_of,
)

L = keras.layers
GATES = {L.LSTM: (4, 3), L.GRU: (3, 3), L.SimpleRNN: (1, 0)}  # (gates, elementwise products per unit)


class RecurrentHandler(LayerHandler):
    family = "recurrent"
    handles = (L.LSTM, L.GRU, L.SimpleRNN)
    kernel_attrs = ()

    def _gates(self) -> tuple[int, int]:
        return next(v for k, v in GATES.items() if isinstance(self.layer, k))

    def kernels(self) -> list[keras.Variable]:
        cell = self.layer.cell
        return [cell.kernel, cell.recurrent_kernel]

    def macs(self, call: Call) -> int | None:
        steps = call.in_shape[1] if len(call.in_shape) == 3 else None
        if steps is None:
            return None  # the sequence length is only known at run time
        gates, products = self._gates()
        f, u = int(self.layer.cell.kernel.shape[0]), int(self.layer.units)
        return int(steps) * (gates * u * (f + u) + products * u)

    def note(self) -> str:
        return "" if self.layer.built else "not built"

    def resized(self, call: Call, keep_in: float, keep_out: float) -> tuple[float, float]:
        gates, products = self._gates()
        f, u = self.layer.cell.kernel.shape[0] * keep_in, self.layer.units * keep_out
        biases = sum(math.prod(w.shape) for w in self.layer.weights[2:]) * keep_out
        steps = call.in_shape[1] if len(call.in_shape) == 3 and call.in_shape[1] is not None else 0
        return gates * u * (f + u) + biases, steps * (gates * u * (f + u) + products * u)

    def coupling(self, call: Call) -> tuple[str, str]:
        if self.layer.go_backwards or self.layer.stateful:
            return STOP, "a backwards or stateful recurrent layer"
        return PRODUCER, ""

    def in_channels(self) -> int:
        return int(self.layer.cell.kernel.shape[0])

    def out_channels(self) -> int:
        return int(self.layer.units)

    def output_columns(self) -> np.ndarray:
        """A unit's weights in every gate block of the kernel and the recurrent kernel."""
        gates, _ = self._gates()
        u = int(self.layer.units)
        stacked = np.concatenate([np.asarray(k) for k in self.kernels()], axis=0)  # (f + u, g u)
        return stacked.reshape(-1, gates, u).reshape(-1, u)

    def _gate_columns(self, units: np.ndarray) -> np.ndarray:
        gates, _ = self._gates()
        u = int(self.layer.units)
        return np.concatenate([g * u + units for g in range(gates)])

    def prune(self, keep_out: np.ndarray | None, keep_in: np.ndarray | None) -> Edit:
        kernel, recurrent, *bias = weights_of(self.layer)
        units = keep_index(keep_out, int(self.layer.units))
        rows = keep_index(keep_in, kernel.shape[0])
        cols = self._gate_columns(units)
        new = [kernel[rows][:, cols], recurrent[units][:, cols]]
        if bias:
            new.append(bias[0][..., cols])  # GRU reset_after: (2, 3u), both rows sliced alike
        return Edit({"units": len(units)}, new)

    def why_not_factorize(self) -> str:
        return "" if not self.layer.stateful else "a stateful recurrent layer"

    def factorizations(self, call: Call) -> list[Factorization]:
        kernel = np.asarray(self.layer.cell.kernel)
        f, gu = kernel.shape
        steps = call.in_shape[1] if len(call.in_shape) == 3 and call.in_shape[1] is not None else 1
        return [
            Factorization(
                "input",
                singular_values(kernel),
                f,
                gu,
                macs_in=int(steps) * f,
                macs_out=int(steps) * gu,
                params_in=f,
                params_out=gu,
                macs_before=int(steps) * f * gu,
                params_before=f * gu,
            )
        ]

    def factorize(self, scheme: str, rank: int, taken: set[str]) -> Replacement:
        kernel, recurrent, *bias = weights_of(self.layer)
        a, b = svd_split(kernel, rank)
        project = L.Dense(
            rank, use_bias=False, dtype=self.layer.dtype_policy, name=unique_name(f"{self.name}_lr1", taken)
        )
        project.edgeslim_rank = rank
        cell = copy_layer(self.layer, name=unique_name(f"{self.name}_lr2", taken))
        return Replacement([project, cell], [[a], [b, recurrent, *bias]])

    def why_not_qat(self) -> str:
        return "recurrent kernels train in float; LiteRT quantizes the fused sequence op itself"


class BidirectionalHandler(LayerHandler):
    family = "recurrent"
    handles = (L.Bidirectional,)

    def macs(self, call: Call) -> int | None:
        forward = RecurrentHandler(self.layer.forward_layer)
        backward = RecurrentHandler(self.layer.backward_layer)
        if not isinstance(self.layer.forward_layer, tuple(GATES)):
            return None
        macs = [forward.macs(call), backward.macs(call)]
        return None if None in macs else sum(m for m in macs if m is not None)

    def coupling(self, call: Call) -> tuple[str, str]:
        return STOP, "Bidirectional concatenates two recurrences"
