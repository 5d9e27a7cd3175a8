"""Transposed convolution (1-D, 2-D, 3-D), the decoder's upsampling conv; its kernel is (K..., D_out, D_in).

Every input position scatters a K^n x D_out patch per input channel: N_x = P_in K^n D_in D_out.
Low rank ("channel"): a transposed conv to R channels, then a 1x1 conv R -> D_out.
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
    copy_layer,
    keep_index,
    singular_values,
    spatial,
    svd_split,
    unique_name,
    weights_of,
)

L = keras.layers
CONV = {1: L.Conv1D, 2: L.Conv2D, 3: L.Conv3D}


class TransposeConvHandler(KernelBiasHandler):
    family = "transposed convolution"
    handles = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
    out_axis = -2  # the kernel is (K..., D_out, D_in)

    @property
    def dims(self) -> int:
        return len(self.layer.kernel.shape) - 2

    def macs(self, call: Call) -> int:
        return spatial(call.in_shape) * math.prod(int(d) for d in self.layer.kernel.shape)

    def coupling(self, call: Call) -> tuple[str, str]:
        if self.layer.data_format != "channels_last":
            return STOP, "channels_first data format"
        return PRODUCER, ""

    def in_channels(self) -> int:
        return int(self.layer.kernel.shape[-1])

    def out_channels(self) -> int:
        return int(self.layer.filters)

    def quant_axes(self, kernel_index: int, per_channel: bool) -> tuple[int, ...]:
        rank = self.dims + 2  # output channels on axis -2
        return tuple(a for a in range(rank) if a != rank - 2) if per_channel else tuple(range(rank))

    def output_columns(self) -> np.ndarray:
        return _matrix(np.asarray(self.layer.kernel))

    def prune(self, keep_out: np.ndarray | None, keep_in: np.ndarray | None) -> Edit:
        w = weights_of(self.layer)
        outs = keep_index(keep_out, w[0].shape[-2])
        ins = keep_index(keep_in, w[0].shape[-1])
        new = [w[0][..., outs, :][..., ins]] + ([w[1][outs]] if self.layer.use_bias else [])
        return Edit({"filters": len(outs)}, new)

    def why_not_factorize(self) -> str:
        return "" if self.layer.data_format == "channels_last" else "channels_first data format"

    def factorizations(self, call: Call) -> list[Factorization]:
        kernel = np.asarray(self.layer.kernel)
        *ks, d_out, d_in = kernel.shape
        k = math.prod(ks)
        p_in, p_out = spatial(call.in_shape), spatial(call.out_shape)
        bias = d_out if self.layer.use_bias else 0
        return [
            Factorization(
                "channel",
                singular_values(_matrix(kernel)),
                k * d_in,
                d_out,
                macs_in=p_in * k * d_in,
                macs_out=p_out * d_out,
                params_in=k * d_in,
                params_out=d_out,
                macs_before=p_in * k * d_in * d_out,
                params_before=k * d_in * d_out + bias,
                bias=bias,
            )
        ]

    def factorize(self, scheme: str, rank: int, taken: set[str]) -> Replacement:
        layer, kernel = self.layer, np.asarray(self.layer.kernel)
        *ks, d_out, d_in = kernel.shape
        a, b = svd_split(_matrix(kernel), rank)  # (K^n D_in) x R, R x D_out
        first_kernel = a.reshape(*ks, d_in, rank).swapaxes(-1, -2)  # (K..., R, D_in)
        ones = (1,) * self.dims
        first = copy_layer(
            layer,
            filters=rank,
            use_bias=False,
            activation="linear",
            name=unique_name(f"{self.name}_lr1", taken),
        )
        second = CONV[self.dims](
            d_out,
            ones,
            activation=layer.activation,
            use_bias=layer.use_bias,
            dtype=layer.dtype_policy,
            name=unique_name(f"{self.name}_lr2", taken),
        )
        first.edgeslim_rank = rank
        bias = [np.asarray(layer.bias)] if layer.use_bias else []
        return Replacement([first, second], [[first_kernel], [b.reshape(*ones, rank, d_out), *bias]])

    def why_not_fold(self) -> str:
        return "" if self.layer.data_format == "channels_last" else "channels_first data format"


def _matrix(kernel: np.ndarray) -> np.ndarray:
    """Rows (k..., c_in), columns c_out."""
    *ks, d_out, d_in = kernel.shape
    return kernel.swapaxes(-1, -2).reshape(-1, d_out)
