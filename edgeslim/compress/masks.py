"""Training callbacks that keep pruned weights at exactly zero, and ramp sparsity up gradually.

An optimizer step moves every weight, zeros included (momentum alone does it), so the masks are
re-applied after every step: the model that training hands back holds exact zeros.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from edgeslim.compress.magnitude import compute_masks, kernel_variables, polynomial_sparsity


class MaskKeeper(keras.callbacks.Callback):
    """Multiply each masked variable by its 0/1 mask after every optimizer step."""

    def __init__(self, masks: list[tuple[keras.Variable, np.ndarray]]) -> None:
        super().__init__()
        self.masks: list[tuple[keras.Variable, Any]] = []
        self.set_masks(masks)

    def set_masks(self, masks: list[tuple[keras.Variable, np.ndarray]]) -> None:
        self.masks = [(v, keras.ops.convert_to_tensor(m.astype(v.dtype))) for v, m in masks]

    @classmethod
    def from_zeros(cls, model: keras.Model, min_fraction: float = 0.05) -> MaskKeeper | None:
        """Masks for every kernel that already has at least ``min_fraction`` exact zeros (it was pruned)."""
        masks = []
        for layer in _leaves(model):
            for variable in kernel_variables(layer):
                value = np.asarray(variable)
                if value.size and np.mean(value == 0) >= min_fraction:
                    masks.append((variable, value != 0))
        return cls(masks) if masks else None

    def apply_masks(self) -> None:
        for variable, mask in self.masks:
            variable.assign(keras.ops.multiply(variable, mask))

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.apply_masks()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.apply_masks()

    def on_train_end(self, logs: dict | None = None) -> None:
        self.apply_masks()


class PolynomialPruning(MaskKeeper):
    """Raise sparsity from ``initial`` to each variable's final s_f along s_t = s_f + (s_i - s_f)(1 - t/n)^3.

    Masks are recomputed by magnitude every ``frequency`` steps (a weight pruned earlier is zero, so
    it stays pruned) and re-applied after every step; at the end every variable is at its final sparsity.
    """

    def __init__(
        self,
        variables: list[keras.Variable],
        final: list[float],
        initial: float,
        ramp_steps: int,
        frequency: int,
        scope: str,
    ) -> None:
        self.variables, self.final, self.initial = variables, final, initial
        self.ramp_steps, self.frequency, self.scope = max(1, ramp_steps), max(1, frequency), scope
        self.step = 0
        self.history: list[tuple[int, float]] = []
        super().__init__(self._masks_at(0))

    def _targets(self, step: int) -> list[float]:
        return [polynomial_sparsity(step, self.ramp_steps, min(self.initial, f), f) for f in self.final]

    def _masks_at(self, step: int) -> list[tuple[keras.Variable, np.ndarray]]:
        arrays = [np.asarray(v) for v in self.variables]
        masks = compute_masks(arrays, self._targets(step), self.scope)
        return list(zip(self.variables, masks, strict=True))

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.step += 1
        if self.step % self.frequency == 0 and self.step <= self.ramp_steps + self.frequency:
            self.set_masks(self._masks_at(self.step))
            self.history.append((self.step, float(np.mean(self._targets(self.step)))))
        self.apply_masks()

    def on_train_end(self, logs: dict | None = None) -> None:
        self.set_masks(self._masks_at(self.ramp_steps))
        self.apply_masks()


def _leaves(model: keras.Model) -> list[keras.layers.Layer]:
    out: list[keras.layers.Layer] = []
    for layer in model.layers:
        out.extend(_leaves(layer) if isinstance(layer, keras.Model) else [layer])
    return out
