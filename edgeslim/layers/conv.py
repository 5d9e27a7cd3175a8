"""Convolution (1-D, 2-D, 3-D), kernel K_1..K_n x D_in x D_out, output positions P x D_out:
N_p = K_1..K_n D_in D_out + D_out, N_x = P K_1..K_n D_in D_out. Strides and dilation change P only.

Low rank: "channel" (a K-wide conv to R filters, then 1x1 R -> D_out), and for 2-D "spatial"
(K_h x 1 to R channels, then 1 x K_w). Separable: a depthwise conv (multiplier r) then a 1x1 conv,
initialised in closed form from the SVD of each input channel's K^n x D_out slice, exact at
r = min(K^n, D_out) and otherwise the best rank-r approximation of every slice.
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
    KernelBiasHandler,
    Replacement,
    Separation,
    copy_layer,
    keep_index,
    singular_values,
    spatial,
    svd_split,
    unique_name,
    weights_of,
)
from edgeslim.layers.fakequant import QAT_CLASSES

L = keras.layers
DEPTHWISE_OF = {L.Conv1D: L.DepthwiseConv1D, L.Conv2D: L.DepthwiseConv2D}


class ConvHandler(KernelBiasHandler):
    family = "convolution"
    handles = (L.Conv1D, L.Conv2D, L.Conv3D)

    @property
    def dims(self) -> int:
        return len(self.layer.kernel.shape) - 2

    def _base(self) -> type:
        return next(c for c in self.handles if isinstance(self.layer, c))

    def macs(self, call: Call) -> int:
        return spatial(call.out_shape) * math.prod(int(d) for d in self.layer.kernel.shape)

    def _unusual(self) -> str:
        if self.layer.groups != 1:
            return "grouped convolution"
        if self.layer.data_format != "channels_last":
            return "channels_first data format"
        return ""

    def coupling(self, call: Call) -> tuple[str, str]:
        reason = self._unusual()
        if not reason and call.in_shape and call.in_shape[-1] != self.layer.kernel.shape[-2]:
            reason = "input channels do not match the kernel"
        return (STOP, reason) if reason else (PRODUCER, "")

    def in_channels(self) -> int:
        return int(self.layer.kernel.shape[-2])

    def out_channels(self) -> int:
        return int(self.layer.filters)

    def prune(self, keep_out: np.ndarray | None, keep_in: np.ndarray | None) -> Edit:
        w = weights_of(self.layer)
        rows = keep_index(keep_in, w[0].shape[-2])
        cols = keep_index(keep_out, w[0].shape[-1])
        new = [w[0][..., rows, :][..., cols]] + ([w[1][cols]] if self.layer.use_bias else [])
        return Edit({"filters": len(cols)}, new)

    # -- low rank ---------------------------------------------------------------------------
    def why_not_factorize(self) -> str:
        return self._unusual()

    def factorizations(self, call: Call) -> list[Factorization]:
        kernel = np.asarray(self.layer.kernel)
        *ks, d_in, d_out = kernel.shape
        k = math.prod(ks)
        positions = spatial(call.out_shape)
        bias = d_out if self.layer.use_bias else 0
        before = {"macs_before": positions * k * d_in * d_out, "params_before": k * d_in * d_out + bias}
        m = k * d_in
        out = [
            Factorization(
                "channel",
                singular_values(kernel.reshape(m, d_out)),
                m,
                d_out,
                macs_in=positions * m,
                macs_out=positions * d_out,
                params_in=m,
                params_out=d_out,
                bias=bias,
                **before,
            )
        ]
        if self.dims == 2 and ks[0] > 1 and ks[1] > 1 and call.in_shape[2] is not None:
            kh, kw = ks
            h_out, w_out = int(call.out_shape[1]), int(call.out_shape[2])
            w_mid = int(call.in_shape[2])  # the K_h x 1 conv keeps the width (stride 1 across)
            out.append(
                Factorization(
                    "spatial",
                    singular_values(_spatial_matrix(kernel)),
                    kh * d_in,
                    kw * d_out,
                    macs_in=h_out * w_mid * kh * d_in,
                    macs_out=h_out * w_out * kw * d_out,
                    params_in=kh * d_in,
                    params_out=kw * d_out,
                    bias=bias,
                    **before,
                )
            )
        return out

    def factorize(self, scheme: str, rank: int, taken: set[str]) -> Replacement:
        layer, kernel = self.layer, np.asarray(self.layer.kernel)
        *ks, d_in, d_out = kernel.shape
        linear = {"use_bias": False, "activation": "linear", "name": unique_name(f"{self.name}_lr1", taken)}
        second_name = unique_name(f"{self.name}_lr2", taken)
        ones = (1,) * self.dims
        if scheme == "channel":
            a, b = svd_split(kernel.reshape(-1, d_out), rank)
            a, b = a.reshape(*ks, d_in, rank), b.reshape(*ones, rank, d_out)
            first = copy_layer(layer, filters=rank, **linear)
            second = copy_layer(
                layer, kernel_size=ones, strides=ones, padding="valid", dilation_rate=ones, name=second_name
            )
        else:
            kh, kw = ks
            a, b = svd_split(_spatial_matrix(kernel), rank)
            a = a.reshape(kh, d_in, rank)[:, None, :, :]  # (K_h, 1, D_in, R)
            b = b.reshape(rank, kw, d_out).transpose(1, 0, 2)[None]  # (1, K_w, R, D_out)
            (sh, sw), (dh, dw) = layer.strides, layer.dilation_rate
            first = copy_layer(
                layer, filters=rank, kernel_size=(kh, 1), strides=(sh, 1), dilation_rate=(dh, 1), **linear
            )
            second = copy_layer(
                layer, kernel_size=(1, kw), strides=(1, sw), dilation_rate=(1, dw), name=second_name
            )
        first.edgeslim_rank = rank
        bias = [np.asarray(layer.bias)] if layer.use_bias else []
        return Replacement([first, second], [[a], [b, *bias]])

    # -- depthwise-separable substitution ----------------------------------------------------
    def why_not_separate(self) -> str:
        if reason := self._unusual():
            return reason
        if self._base() not in DEPTHWISE_OF:
            return f"Keras has no depthwise {type(self.layer).__name__}"
        if self.layer.padding == "causal":
            return "causal padding (DepthwiseConv1D has none)"
        if all(k == 1 for k in self.layer.kernel_size):
            return "a 1x1 convolution has no spatial part to separate"
        return ""

    def separation(self, call: Call) -> Separation:
        kernel = np.asarray(self.layer.kernel)
        *ks, d_in, d_out = kernel.shape
        k = math.prod(ks)
        positions = spatial(call.out_shape)
        bias = d_out if self.layer.use_bias else 0
        s = np.linalg.svd(_slices(kernel), compute_uv=False)
        return Separation(
            exact_rank=min(k, d_out),
            dw_macs=positions * k * d_in,
            pw_macs=positions * d_in * d_out,
            dw_params=k * d_in,
            pw_params=d_in * d_out,
            bias=bias,
            macs_before=positions * k * d_in * d_out,
            params_before=k * d_in * d_out + bias,
            slice_sigma=s,
        )

    def separate(self, rank: int, taken: set[str]) -> Replacement:
        layer = self.layer
        depthwise, pointwise = separable_factors(np.asarray(layer.kernel), rank)
        ones = (1,) * self.dims
        dw = DEPTHWISE_OF[self._base()](
            layer.kernel_size,
            strides=layer.strides,
            padding=layer.padding,
            depth_multiplier=rank,
            dilation_rate=layer.dilation_rate,
            use_bias=False,
            dtype=layer.dtype_policy,
            name=unique_name(f"{layer.name}_dw", taken),
        )
        pw = copy_layer(
            layer,
            kernel_size=ones,
            strides=ones,
            padding="valid",
            dilation_rate=ones,
            name=unique_name(f"{layer.name}_pw", taken),
        )
        dw.edgeslim_rank = rank
        bias = [np.asarray(layer.bias)] if layer.use_bias else []
        return Replacement([dw, pw], [[depthwise], [pointwise, *bias]])

    # -- BatchNorm folding, QAT, refits ----------------------------------------------------------
    def why_not_fold(self) -> str:
        return self._unusual()

    def why_not_qat(self) -> str:
        if self.layer.padding == "causal":
            return "causal padding: trained in float (LiteRT still quantizes it)"
        return self._unusual()

    def qat_layer(self, per_channel: bool) -> keras.layers.Layer:
        rank = self.dims + 2
        axes = tuple(range(rank - 1)) if per_channel else tuple(range(rank))
        config = self.layer.get_config() | {"per_channel": per_channel, "quant_axes": list(axes)}
        return QAT_CLASSES[self._base()].from_config(config)

    def design_rows(self, x: np.ndarray, weights: list[np.ndarray]) -> np.ndarray | None:
        """Input patches in the kernel's (k..., channel) order, one row per output position."""
        if self._unusual() or self.dims == 3 or self.layer.padding == "causal":
            return None
        strides, rates = tuple(self.layer.strides), tuple(self.layer.dilation_rate)
        if max(strides) > 1 and max(rates) > 1:
            return None  # extract_patches takes one or the other
        import tensorflow as tf

        ks = tuple(self.layer.kernel_size)
        if self.dims == 1:  # a 1-D signal is a 1 x L image
            x, ks, strides, rates = x[:, None], (1, *ks), (1, *strides), (1, *rates)
        patches = tf.image.extract_patches(
            x,
            sizes=[1, *ks, 1],
            strides=[1, *strides, 1],
            rates=[1, *rates, 1],
            padding=self.layer.padding.upper(),
        )
        return patches.numpy().reshape(-1, math.prod(ks) * x.shape[-1])

    def linear_weights(self, weights: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        matrix = weights[0].reshape(-1, weights[0].shape[-1])
        bias = weights[-1] if self.layer.use_bias else np.zeros(matrix.shape[-1], np.float32)
        return matrix, bias

    def with_linear(
        self, weights: list[np.ndarray], matrix: np.ndarray, bias: np.ndarray
    ) -> list[np.ndarray]:
        return [matrix.reshape(weights[0].shape).astype(np.float32), bias.astype(np.float32)]


def _spatial_matrix(kernel: np.ndarray) -> np.ndarray:
    """Rows (k_h, c_in), columns (k_w, c_out): a rank-R split is a K_h x 1 conv then a 1 x K_w conv."""
    kh, kw, d_in, d_out = kernel.shape
    return kernel.transpose(0, 2, 1, 3).reshape(kh * d_in, kw * d_out)


def _slices(kernel: np.ndarray) -> np.ndarray:
    """Each input channel's kernel as a K^n x D_out matrix: shape (D_in, K^n, D_out)."""
    *ks, d_in, d_out = kernel.shape
    return kernel.astype(np.float64).reshape(-1, d_in, d_out).transpose(1, 0, 2)


def separable_factors(kernel: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """(depthwise kernel (K..., D_in, r), pointwise kernel (1..., D_in r, D_out)).

    Depthwise output c r + j (the order DepthwiseConv uses) is U_j sqrt(s_j) of input channel c's
    slice; its pointwise row is sqrt(s_j) V_j. Summed over c that is the conv with truncated slices.
    """
    *ks, d_in, d_out = kernel.shape
    u, s, vt = np.linalg.svd(_slices(kernel), full_matrices=False)
    k = min(r, s.shape[1])
    depthwise = np.zeros((d_in, math.prod(ks), r))
    pointwise = np.zeros((d_in, r, d_out))
    root = np.sqrt(s[:, :k])
    depthwise[:, :, :k] = u[:, :, :k] * root[:, None, :]
    pointwise[:, :k, :] = root[:, :, None] * vt[:, :k, :]
    depthwise = depthwise.reshape(d_in, *ks, r).transpose(*range(1, len(ks) + 1), 0, len(ks) + 1)
    ones = (1,) * len(ks)
    return depthwise.astype(np.float32), pointwise.reshape(*ones, d_in * r, d_out).astype(np.float32)
