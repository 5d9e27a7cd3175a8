"""Gradual pruning during fine-tuning: sparsity ramps up while the masks keep pruned weights at zero."""

from __future__ import annotations

import keras
import numpy as np

from edgeslim.compress.magnitude import compute_masks, polynomial_sparsity
from edgeslim.layers.sparsity import MaskKeeper


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
