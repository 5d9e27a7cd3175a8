"""Unstructured magnitude pruning: which weights to zero, per layer or globally, and on what schedule.

Only the multiplying weights are pruned (what each layer's handler calls its kernels); biases and
BatchNorm parameters are few and carry offsets that zeros would break.
"""

from __future__ import annotations

import numpy as np


def polynomial_sparsity(step: int, total: int, initial: float, final: float, power: int = 3) -> float:
    """s_t = s_f + (s_i - s_f) (1 - t/n)^3, held at s_f once t >= n."""
    if total <= 0:
        return final
    progress = min(1.0, max(0.0, step / total))
    return final + (initial - final) * (1.0 - progress) ** power


def magnitude_mask(weights: np.ndarray, sparsity: float) -> np.ndarray:
    """Keep the largest |w|; exactly round(sparsity * size) weights are dropped (ties broken by position)."""
    size = weights.size
    drop = int(round(sparsity * size))
    mask = np.ones(size, dtype=bool)
    if drop > 0:
        order = np.argpartition(np.abs(weights).reshape(-1), drop - 1)[:drop]
        mask[order] = False
    return mask.reshape(weights.shape)


def global_masks(arrays: list[np.ndarray], sparsity: float) -> list[np.ndarray]:
    """One threshold for all arrays together: the smallest |w| anywhere go first."""
    flat = np.concatenate([np.abs(a).reshape(-1) for a in arrays])
    mask = magnitude_mask(flat, sparsity).reshape(-1)
    out, start = [], 0
    for a in arrays:
        out.append(mask[start : start + a.size].reshape(a.shape))
        start += a.size
    return out


def compute_masks(arrays: list[np.ndarray], sparsities: list[float], scope: str) -> list[np.ndarray]:
    """Masks per array: each at its own sparsity (scope "layer"), or one global threshold ("global").

    With scope "global" the sparsities must all be equal; the share is then met over all arrays
    together, and each layer ends where its magnitudes put it.
    """
    if scope == "global" and arrays:
        return global_masks(arrays, sparsities[0])
    return [magnitude_mask(a, s) for a, s in zip(arrays, sparsities, strict=True)]
