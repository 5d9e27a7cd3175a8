"""Recurrent layers: LSTM (4 gates), GRU (3), SimpleRNN (1), units u, input features f, T steps.

Per step each gate multiplies [x_t, h_{t-1}] by its kernels, u (f + u) each; the LSTM and GRU
gates then take 3u elementwise products: N_x = T (g u (f + u) + e u), N_p = g u (f + u + 1)
(a GRU with reset_after keeps two biases). Pruning units removes the same unit from every gate block
of the kernel, the recurrent kernel (its rows too) and the bias. Low rank splits either kernel:
- "input": x_t W = (x_t A) B, a Dense to R features before the layer, exact at full rank; an LSTM
  keeps the fused LiteRT kernel;
- "recurrent": h_{t-1} U = (h_{t-1} A) B inside the step (lowrank_recurrent.LowRankRNN), T (u R + R g u)
  multiplications instead of T g u^2; exported unrolled.
A second lowrank pass splits the other kernel; on a LowRankRNN the recurrent width is R, not u.
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
    svd_split,
    unique_name,
    weights_of,
)
from edgeslim.layers.lowrank_recurrent import LOW_RANK_CELLS, LowRankRNN, low_rank_copy

L = keras.layers
# (gates, elementwise products per unit), by cell: the low-rank cells subclass these
GATES = {L.LSTMCell: (4, 3), L.GRUCell: (3, 3), L.SimpleRNNCell: (1, 0)}


class RecurrentHandler(LayerHandler):
    family = "recurrent"
    handles = (L.LSTM, L.GRU, L.SimpleRNN, LowRankRNN)
    kernel_attrs = ()

    def _gates(self) -> tuple[int, int]:
        return next(v for k, v in GATES.items() if isinstance(self.layer.cell, k))

    @property
    def _low_rank(self) -> bool:
        return isinstance(self.layer, LowRankRNN)

    def kernels(self) -> list[keras.Variable]:
        cell = self.layer.cell
        if self._low_rank:
            return [cell.kernel, cell.recurrent_a, cell.recurrent_b]
        return [cell.kernel, cell.recurrent_kernel]

    def _step_macs(self, f: float, u: float) -> float:
        """Multiplications of one step's kernels with f inputs and u units."""
        gates, products = self._gates()
        recurrent = u * self.layer.cell.rank * (1 + gates) if self._low_rank else gates * u * u
        return gates * u * f + recurrent + products * u

    def macs(self, call: Call) -> int | None:
        steps = call.in_shape[1] if len(call.in_shape) == 3 else None
        if steps is None:
            return None  # the sequence length is only known at run time
        f, u = int(self.layer.cell.kernel.shape[0]), int(self.layer.units)
        return int(steps) * int(self._step_macs(f, u))

    def unrolled_step(self, keep_out: float = 1.0) -> tuple[int, float]:
        """(tensors, constant bytes) that one unrolled time step adds to an int8 file; (0, 0) fused.

        Counted on compacted int8 files (export/tflite_compact.py): a GRU step is 17 ops and about 20
        activation tensors plus its recurrent bias requantized to int32 for that step's input scale;
        an LSTM step about 24, a SimpleRNN step 5 (its recurrent product has no bias).
        """
        if why_not_fused(self.layer) is None:
            return 0, 0.0
        gates, _ = self._gates()
        tensors = {4: 24, 3: 20, 1: 5}[gates]
        bias = 4 * gates * self.layer.units * keep_out if gates == 3 else 0.0
        return tensors, bias

    def note(self) -> str:
        return "" if self.layer.built else "not built"

    def resized(self, call: Call, keep_in: float, keep_out: float) -> tuple[float, float]:
        _, products = self._gates()
        f, u = self.layer.cell.kernel.shape[0] * keep_in, self.layer.units * keep_out
        kernels = len(self.kernels())
        biases = sum(math.prod(w.shape) for w in self.layer.weights[kernels:]) * keep_out
        steps = call.in_shape[1] if len(call.in_shape) == 3 and call.in_shape[1] is not None else 0
        step = self._step_macs(f, u)
        return step - products * u + biases, steps * step

    def coupling(self, call: Call) -> tuple[str, str]:
        if self.layer.go_backwards or self.layer.stateful:
            return STOP, "a backwards or stateful recurrent layer"
        return PRODUCER, ""

    def in_channels(self) -> int:
        return int(self.layer.cell.kernel.shape[0])

    def out_channels(self) -> int:
        return int(self.layer.units)

    def output_columns(self) -> np.ndarray:
        """A unit's weights in every gate block of the kernel and the recurrent kernel (B if split)."""
        gates, _ = self._gates()
        u = int(self.layer.units)
        cell = self.layer.cell  # a low-rank cell's recurrent_kernel is B (R x g u)
        stacked = np.concatenate([np.asarray(cell.kernel), np.asarray(cell.recurrent_kernel)])
        return stacked.reshape(-1, gates, u).reshape(-1, u)

    def _gate_columns(self, units: np.ndarray) -> np.ndarray:
        gates, _ = self._gates()
        u = int(self.layer.units)
        return np.concatenate([g * u + units for g in range(gates)])

    def prune(self, keep_out: np.ndarray | None, keep_in: np.ndarray | None) -> Edit:
        weights = weights_of(self.layer)
        kernel, bias = weights[0], weights[len(self.kernels()) :]
        units = keep_index(keep_out, int(self.layer.units))
        rows = keep_index(keep_in, kernel.shape[0])
        cols = self._gate_columns(units)
        if self._low_rank:  # A loses the pruned units' rows, B their gate columns
            recurrent = [weights[1][units], weights[2][:, cols]]
        else:
            recurrent = [weights[1][units][:, cols]]
        new = [kernel[rows][:, cols], *recurrent]
        if bias:
            new.append(bias[0][..., cols])  # GRU reset_after: (2, 3u), both rows sliced alike
        return Edit({"units": len(units)}, new)

    def why_not_factorize(self) -> str:
        return "" if not self.layer.stateful else "a stateful recurrent layer"

    def factorizations(self, call: Call) -> list[Factorization]:
        steps = call.in_shape[1] if len(call.in_shape) == 3 and call.in_shape[1] is not None else 1
        options = [Factorization.of_matrix("input", np.asarray(self.layer.cell.kernel), int(steps))]
        if not self._why_not_recurrent():
            # Never "auto": a truncated recurrent kernel errs again at every step and the error
            # compounds over the sequence (a GRU row model lost 6 points of validation accuracy to a
            # rank-19 split the input split's error figure called equal), and a fusable LSTM would lose
            # LiteRT's fused kernel. method=recurrent splits it anyway.
            recurrent = np.asarray(self.layer.cell.recurrent_kernel)
            options.append(Factorization.of_matrix("recurrent", recurrent, int(steps), auto=False))
        return options

    def _why_not_recurrent(self) -> str:
        cell = self.layer.cell
        if type(cell) not in LOW_RANK_CELLS:
            return f"{type(cell).__name__} has no low-rank recurrent cell"
        if isinstance(cell, L.GRUCell) and not cell.reset_after:
            return "a GRU with reset_after=False multiplies r * h by its candidate kernel, not h"
        return ""

    def factorize(self, scheme: str, rank: int, taken: set[str]) -> Replacement:
        kernel, *rest = weights_of(self.layer)
        if scheme == "recurrent":
            recurrent, *bias = rest
            a, b = svd_split(recurrent, rank)
            layer = low_rank_copy(self.layer, rank, unique_name(f"{self.name}_lr", taken))
            layer.edgeslim_rank = rank
            return Replacement([layer], [[kernel, a, b, *bias]])
        a, b = svd_split(kernel, rank)
        project = L.Dense(
            rank, use_bias=False, dtype=self.layer.dtype_policy, name=unique_name(f"{self.name}_lr1", taken)
        )
        project.edgeslim_rank = rank
        cell = copy_layer(self.layer, name=unique_name(f"{self.name}_lr2", taken))
        return Replacement([project, cell], [[a], [b, *rest]])

    def why_not_qat(self) -> str:
        return "recurrent kernels train in float; LiteRT quantizes the fused sequence op itself"


def why_not_fused(layer: keras.layers.Layer) -> str | None:
    """None when the converter can fuse this layer; otherwise why it is unrolled instead."""
    if type(layer) is not keras.layers.LSTM:
        return f"{type(layer).__name__} has no fused TFLite op"
    activation = getattr(layer.cell.activation, "__name__", "")
    recurrent = getattr(layer.cell.recurrent_activation, "__name__", "")
    if (activation, recurrent) != ("tanh", "sigmoid"):
        return f"the fused op computes tanh and sigmoid, this LSTM {activation} and {recurrent}"
    if layer.go_backwards or layer.stateful or layer.return_state:
        return "the fused op runs forward, stateless, and returns only the outputs"
    return None


class BidirectionalHandler(LayerHandler):
    family = "recurrent"
    handles = (L.Bidirectional,)

    def macs(self, call: Call) -> int | None:
        forward = RecurrentHandler(self.layer.forward_layer)
        backward = RecurrentHandler(self.layer.backward_layer)
        if not isinstance(self.layer.forward_layer, RecurrentHandler.handles):
            return None
        macs = [forward.macs(call), backward.macs(call)]
        return None if None in macs else sum(m for m in macs if m is not None)

    def coupling(self, call: Call) -> tuple[str, str]:
        return STOP, "Bidirectional concatenates two recurrences"
