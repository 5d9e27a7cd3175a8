"""Repairing layers whose inputs were pruned, from calibration data, before any fine-tuning.

``lstsq`` (default): refit each such layer's remaining weights and bias by ridge regression, so
that on real inputs its linear output (before the activation) matches the original layer's. The
layers are refit in graph order on the inputs the *pruned* model actually feeds them, so each
refit also absorbs the error left upstream (channel pruning by reconstruction, He et al. 2017).
A SeparableConv2D keeps its depthwise part and has its pointwise part refit. ``mean``: add what each
removed input contributed on average to the bias; through a ReLU that shift can hurt, so it is
only the fallback for layers the regression does not cover.
"""

from __future__ import annotations

import keras
import numpy as np

MAX_ROWS = 16384  # regression rows sampled from (images x positions); plenty for a few thousand unknowns


def _conv_args(layer: keras.layers.Layer) -> tuple[list[int], list[int], list[int], str]:
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel_size, layer.strides, layer.dilation_rate
    return [1, kh, kw, 1], [1, sh, sw, 1], [1, dh, dw, 1], layer.padding.upper()


def design_rows(layer: keras.layers.Layer, kernel: list[np.ndarray], x: np.ndarray) -> np.ndarray | None:
    """The rows the layer's last linear step multiplies: one per output position; None if unsupported.

    Dense: its inputs. Conv2D: input patches in the kernel's (k_h, k_w, channel) order.
    SeparableConv2D: the depthwise outputs (``kernel[0]`` is the depthwise kernel to use).
    """
    if type(layer) is keras.layers.Dense:
        return x.reshape(-1, x.shape[-1])
    import tensorflow as tf

    if type(layer) is keras.layers.Conv2D and layer.groups == 1:
        sizes, strides, rates, padding = _conv_args(layer)
        if max(strides) > 1 and max(rates) > 1:
            return None
        out = tf.image.extract_patches(x, sizes=sizes, strides=strides, rates=rates, padding=padding)
        return out.numpy().reshape(-1, sizes[1] * sizes[2] * x.shape[-1])
    if type(layer) is keras.layers.SeparableConv2D:
        _, strides, rates, padding = _conv_args(layer)
        out = tf.nn.depthwise_conv2d(x, kernel[0], strides=strides, padding=padding, dilations=rates[1:3])
        return out.numpy().reshape(-1, out.shape[-1])
    return None


def linear_weights(layer: keras.layers.Layer, weights: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(matrix multiplying the design rows, bias) of the layer's last linear step."""
    matrix = weights[1 if isinstance(layer, keras.layers.SeparableConv2D) else 0]
    bias = weights[-1] if layer.use_bias else np.zeros(matrix.shape[-1], np.float32)
    return matrix.reshape(-1, matrix.shape[-1]), bias


def refit(
    layer: keras.layers.Layer,
    x_original: np.ndarray,
    x_pruned: np.ndarray,
    new_weights: list[np.ndarray],
    out_keep: np.ndarray,
    seed: int = 0,
) -> tuple[list[np.ndarray], float] | None:
    """New weights for the pruned copy of ``layer`` (``new_weights``: its sliced weights, bias last if any).

    The target is the original layer on ``x_original``; the regressors are the pruned model's
    inputs ``x_pruned``. Returns (weights with a bias appended if the layer had none, relative
    error of the linear output), or None when the layer type is not covered.
    """
    original = [np.asarray(w) for w in layer.get_weights()]
    rows_new = design_rows(layer, new_weights, x_pruned)
    rows_old = design_rows(layer, original, x_original)
    if rows_new is None or rows_old is None:
        return None
    rng = np.random.default_rng(seed)
    if len(rows_new) > MAX_ROWS:
        pick = rng.choice(len(rows_new), MAX_ROWS, replace=False)
        rows_new, rows_old = rows_new[pick], rows_old[pick]
    matrix, bias = linear_weights(layer, original)
    target = (rows_old.astype(np.float64) @ matrix[:, out_keep] + bias[out_keep]).astype(np.float64)
    design = np.concatenate([rows_new.astype(np.float64), np.ones((len(rows_new), 1))], axis=1)
    gram = design.T @ design
    ridge = 1e-3 * np.trace(gram) / len(gram)  # small and scale-aware: keeps the solve well posed
    solution = np.linalg.solve(gram + ridge * np.eye(len(gram)), design.T @ target)
    error = float(np.linalg.norm(design @ solution - target) / max(np.linalg.norm(target), 1e-12))
    which = 1 if isinstance(layer, keras.layers.SeparableConv2D) else 0
    shape = new_weights[which].shape
    out = list(new_weights[: which + 1])
    out[which] = solution[:-1].reshape(shape).astype(np.float32)
    return [*out, solution[-1].astype(np.float32)], error


def mean_shift(layer: keras.layers.Layer, x_original: np.ndarray, in_keep: np.ndarray) -> np.ndarray:
    """What the removed inputs added to each output on average (to move into the bias)."""
    mean = x_original.reshape(-1, x_original.shape[-1]).mean(axis=0)
    lost = ~in_keep
    weights = [np.asarray(w) for w in layer.get_weights()]
    if isinstance(layer, keras.layers.SeparableConv2D):
        depthwise, pointwise = weights[0], weights[1]
        m = layer.depth_multiplier
        dw_sum = depthwise.reshape(-1, depthwise.shape[-2], m).sum(axis=0)  # (D_in, m)
        return (mean[lost][:, None] * dw_sum[lost]).reshape(-1) @ pointwise[0, 0][np.repeat(lost, m)]
    kernel = weights[0]
    summed = kernel.reshape(-1, kernel.shape[-2], kernel.shape[-1]).sum(axis=0)  # (D_in, D_out)
    return mean[lost] @ summed[lost]
