"""Repairing layers whose inputs were pruned, from calibration data, before any fine-tuning.

``lstsq`` (default): refit each such layer's remaining weights and bias by least squares, so that on
real inputs its linear output (before the activation) matches the original layer's. The layers are
refit in graph order on the inputs the *pruned* model actually feeds them, so each refit also
absorbs the error left upstream (channel pruning by reconstruction, He et al. 2017). The refit is
kept only where it beats the plain slice: removing channels that carry nothing (dead filters) is
already exact, and must stay so. ``mean``: add what each removed input contributed on average to
the bias; through a ReLU that shift can hurt, so it is only the fallback for layers the regression
does not cover. Which layers can be refit, and how, their handlers say (``design_rows``).
"""

from __future__ import annotations

import numpy as np

from edgeslim.layers import LayerHandler

MAX_ROWS = 16384  # regression rows sampled from (images x positions); plenty for a few thousand unknowns


def refittable(handler: LayerHandler) -> bool:
    return hasattr(handler, "design_rows")


def refit(
    handler: LayerHandler,
    x_original: np.ndarray,
    x_pruned: np.ndarray,
    new_weights: list[np.ndarray],
    out_keep: np.ndarray,
    seed: int = 0,
) -> tuple[list[np.ndarray], float] | None:
    """New weights for the pruned copy of the handler's layer (``new_weights``: its sliced weights).

    The target is the original layer on ``x_original``; the regressors are the pruned model's
    inputs ``x_pruned``. Returns (weights, with a bias, and the relative error of the linear output),
    or None when the layer's geometry is not covered.
    """
    original = [np.asarray(w) for w in handler.layer.get_weights()]
    rows_new = handler.design_rows(x_pruned, new_weights)  # type: ignore[attr-defined]
    rows_old = handler.design_rows(x_original, original)  # type: ignore[attr-defined]
    if rows_new is None or rows_old is None:
        return None
    if len(rows_new) > MAX_ROWS:
        pick = np.random.default_rng(seed).choice(len(rows_new), MAX_ROWS, replace=False)
        rows_new, rows_old = rows_new[pick], rows_old[pick]
    matrix, bias = handler.linear_weights(original)  # type: ignore[attr-defined]
    target = rows_old.astype(np.float64) @ matrix[:, out_keep] + bias[out_keep]
    sliced_matrix, sliced_bias = handler.linear_weights(new_weights)  # type: ignore[attr-defined]
    sliced_error = _error(rows_new @ sliced_matrix + sliced_bias, target)
    design = np.concatenate([rows_new.astype(np.float64), np.ones((len(rows_new), 1))], axis=1)
    gram = design.T @ design
    # A small, scale-aware ridge keeps the solve well posed; it spares the bias (the last column),
    # whose shrinking would shift every output.
    ridge = np.full(len(gram), 1e-3 * np.trace(gram[:-1, :-1]) / max(1, len(gram) - 1))
    ridge[-1] = 0.0
    solution = np.linalg.solve(gram + np.diag(ridge), design.T @ target)
    error = _error(design @ solution, target)
    if sliced_error <= error:
        return handler.with_linear(new_weights, sliced_matrix, sliced_bias), sliced_error  # type: ignore[attr-defined]
    return handler.with_linear(new_weights, solution[:-1], solution[-1]), error  # type: ignore[attr-defined]


def _error(approx: np.ndarray, target: np.ndarray) -> float:
    return float(np.linalg.norm(approx - target) / max(np.linalg.norm(target), 1e-12))


def mean_shift(handler: LayerHandler, x_original: np.ndarray, in_keep: np.ndarray) -> np.ndarray | None:
    """What the removed inputs added to each output on average (to move into the bias); None if unknown."""
    if not refittable(handler):
        return None
    mean = x_original.reshape(-1, x_original.shape[-1]).mean(axis=0)
    lost = ~in_keep
    weights = [np.asarray(w) for w in handler.layer.get_weights()]
    if handler.family == "separable":
        depthwise, pointwise = weights[0], weights[1]
        m = handler.depth_multiplier()
        dw_sum = depthwise.reshape(-1, depthwise.shape[-2], m).sum(axis=0)  # (D_in, m)
        flat_pw = pointwise.reshape(-1, pointwise.shape[-1])
        return (mean[lost][:, None] * dw_sum[lost]).reshape(-1) @ flat_pw[np.repeat(lost, m)]
    kernel = weights[0]
    summed = kernel.reshape(-1, kernel.shape[-2], kernel.shape[-1]).sum(axis=0)  # (D_in, D_out)
    return mean[lost] @ summed[lost]
