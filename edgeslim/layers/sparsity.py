"""Exact zeros in kernels: which weights can be pruned, and a callback that keeps pruned weights at zero.

An optimizer step moves every weight, zeros included (momentum alone does it), so the masks are
re-applied after every step: the model that training hands back holds exact zeros. Fine-tuning
(edgeslim.train) and gradual pruning (edgeslim.compress) both use it, so it lives below both.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from edgeslim.layers import handler_for


def kernel_variables(layer: keras.layers.Layer) -> list[keras.Variable]:
    """The layer's multiplying weights (not biases, not BatchNorm statistics), from its handler."""
    return handler_for(layer).kernels()


def sparsity_of(arrays: list[np.ndarray]) -> float:
    total = sum(a.size for a in arrays)
    return 0.0 if total == 0 else 1.0 - sum(int(np.count_nonzero(a)) for a in arrays) / total


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
        for layer in _leaves(model):  # the model's own layers: the masks must bind to its variables
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


def _leaves(model: keras.Model) -> list[keras.layers.Layer]:
    out: list[keras.layers.Layer] = []
    for layer in model.layers:
        out.extend(_leaves(layer) if isinstance(layer, keras.Model) else [layer])
    return out
