"""What an inference costs in instructions on the target's kernels, priced per operator.

CMSIS-NN's cost is far from proportional to the multiplications: measured on the Cortex-M4, MNISTnet3
takes 1.7 instructions per multiplication, its 1/16-width plans 12 to 24, a one-channel depthwise
convolution 52. What it does per operator follows counts, each priced per operator kind:

- the multiplications (the inner loop, two per SMLAD where the channels allow);
- the im2col elements, multiplications / output channels (the patch gathered and widened once per
  output position, shared by every output channel, so it dominates a narrow layer);
- the kernel taps, im2col elements / input channels (each tap copies a run of input channels: with
  one input channel a convolution costs 46 instructions per multiplication, with 16 about 9);
- the output elements (requantization, and per-position and per-channel-pair set-up);
- the input elements (what a pooling or a mean reads).

The coefficients are least squares (non-negative) over measured operators: a calibration model of
varied shapes run once per core and kernel set (``calibration.py``), the input model's own profile and
every trial's, each model weighted equally so that its total is what the fit follows. An operator kind
nothing measured is priced at the measured instructions per multiplication (or per output element).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# The TFLite operator a Keras layer becomes, for the instruction model (a kind not named here is priced
# by the measured instructions per multiplication or per output element).
OPERATORS = {
    "Dense": "FULLY_CONNECTED",
    "Conv1D": "CONV_2D",
    "Conv2D": "CONV_2D",
    "DepthwiseConv1D": "DEPTHWISE_CONV_2D",
    "DepthwiseConv2D": "DEPTHWISE_CONV_2D",
    "Conv2DTranspose": "TRANSPOSE_CONV",
    "MaxPooling1D": "MAX_POOL_2D",
    "MaxPooling2D": "MAX_POOL_2D",
    "AveragePooling1D": "AVERAGE_POOL_2D",
    "AveragePooling2D": "AVERAGE_POOL_2D",
    "GlobalAveragePooling1D": "MEAN",
    "GlobalAveragePooling2D": "MEAN",
    "GlobalMaxPooling1D": "REDUCE_MAX",
    "GlobalMaxPooling2D": "REDUCE_MAX",
    "Add": "ADD",
    "Subtract": "SUB",
    "Multiply": "MUL",
    "Concatenate": "CONCATENATION",
    "Flatten": "RESHAPE",
    "Reshape": "RESHAPE",
    "Softmax": "SOFTMAX",
    "ZeroPadding2D": "PAD",
}
ACTIVATION_OPERATORS = {"softmax": "SOFTMAX", "sigmoid": "LOGISTIC", "tanh": "TANH", "relu": "RELU"}
MIN_POINTS = 3  # observations of a kind before its own coefficients are trusted


@dataclass(frozen=True)
class OpCost:
    """One TFLite operator as the instruction model sees it."""

    kind: str  # the TFLite builtin: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, MAX_POOL_2D...
    macs: float
    channels: float  # output channels (the last axis of its output)
    outputs: float  # output elements
    in_channels: float
    inputs: float  # elements of its first input

    def features(self) -> list[float]:
        im2col = self.macs / self.channels if self.macs and self.channels else 0.0
        taps = im2col / self.in_channels if self.in_channels else 0.0
        return [self.macs, im2col, taps, self.outputs, self.inputs]

    @classmethod
    def from_profile(cls, op: dict[str, Any]) -> OpCost:
        """From a firmware profile's operator record (``export/firmware/profile.py``)."""
        keys = ("multiplications", "channels", "outputs", "in_channels", "inputs")
        return cls(op["op"], *(float(op[k]) for k in keys))


class InstructionModel:
    def __init__(self) -> None:
        # per kind: (features, instructions, weight) of each measured operator
        self.points: dict[str, list[tuple[list[float], float, float]]] = {}
        self.overheads: list[float] = []  # outside the operators (the interpreter's loop): a constant
        self._coefficients: dict[str, np.ndarray] | None = None

    def observe_profile(self, profile: dict[str, Any] | None) -> bool:
        """Learn from a firmware profile (the sidecar's ``mcu.firmware.profile``); False if it has none
        usable (incomplete, or from a firmware without the per-operator records)."""
        if not profile or not profile.get("complete"):
            return False
        ops = profile["ops"]
        if not ops or any("in_channels" not in o for o in ops):
            return False
        total = float(profile["instructions"])
        weight = 1.0 / max(total, 1.0)  # each model counts once, whatever its size
        for o in ops:
            op = OpCost.from_profile(o)
            self.points.setdefault(op.kind, []).append((op.features(), float(o["instructions"]), weight))
        self.overheads.append(total - float(profile["ops_instructions"]))
        self._coefficients = None
        return True

    @property
    def ready(self) -> bool:
        return bool(self.points)

    def _fit(self) -> dict[str, np.ndarray]:
        from scipy.optimize import nnls

        if self._coefficients is not None:
            return self._coefficients
        out = {}
        for kind, points in self.points.items():
            if len({tuple(p[0]) for p in points}) < MIN_POINTS:
                continue
            x = np.array([p[0] for p in points]) * np.array([p[2] for p in points])[:, None]
            y = np.array([p[1] * p[2] for p in points])
            scale = np.maximum(x.max(axis=0), 1e-30)  # nnls on comparable columns
            solution, _ = nnls(x / scale, y)
            out[kind] = solution / scale
        self._coefficients = out
        return out

    def _rates(self, kinds: tuple[str, ...]) -> tuple[float, float]:
        """Fallbacks for a kind without its own coefficients: instructions per multiplication over the
        multiplying operators of ``kinds``, and per output element over the others."""
        mac_instr = mac = out_instr = outs = 0.0
        for kind in kinds:
            for features, instructions, _ in self.points.get(kind, []):
                if features[0]:
                    mac_instr, mac = mac_instr + instructions, mac + features[0]
                else:
                    out_instr, outs = out_instr + instructions, outs + features[3]
        return (mac_instr / mac if mac else 0.0), (out_instr / outs if outs else 0.0)

    def predict(self, ops: list[OpCost]) -> float:
        """Instructions of one inference running ``ops``."""
        coefficients = self._fit()
        pooled = self._rates(tuple(self.points))
        total = float(np.median(self.overheads)) if self.overheads else 0.0
        for op in ops:
            c = coefficients.get(op.kind)
            if c is not None:
                total += float(np.dot(c, op.features()))
                continue
            own = self._rates((op.kind,))  # a kind seen too seldom for its own fit: its own rate
            per_mac = own[0] or pooled[0]
            per_output = own[1] or pooled[1]
            total += op.macs * per_mac if op.macs else op.outputs * per_output
        return total
