"""Dense: N_p = M_out (M_in + 1), N_x = M_out M_in per position (a Dense on (T, features) runs T times)."""

from __future__ import annotations

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
    spatial,
    svd_split,
    unique_name,
    weights_of,
)
from edgeslim.layers.fakequant import QAT_CLASSES


class DenseHandler(KernelBiasHandler):
    family = "dense"
    handles = (keras.layers.Dense,)

    def macs(self, call: Call) -> int:
        m_in, m_out = self.layer.kernel.shape
        return spatial(call.out_shape) * int(m_in) * int(m_out)

    def coupling(self, call: Call) -> tuple[str, str]:
        if call.in_shape and call.in_shape[-1] != self.layer.kernel.shape[0]:
            return STOP, "input features do not match the kernel"
        return PRODUCER, ""

    def in_channels(self) -> int:
        return int(self.layer.kernel.shape[0])

    def out_channels(self) -> int:
        return int(self.layer.units)

    def prune(self, keep_out: np.ndarray | None, keep_in: np.ndarray | None) -> Edit:
        w = weights_of(self.layer)
        rows = keep_index(keep_in, w[0].shape[0])
        cols = keep_index(keep_out, w[0].shape[1])
        new = [w[0][rows][:, cols]] + ([w[1][cols]] if self.layer.use_bias else [])
        return Edit({"units": len(cols)}, new)

    def why_not_factorize(self) -> str:
        return ""

    def factorizations(self, call: Call) -> list[Factorization]:
        kernel = np.asarray(self.layer.kernel)
        bias = kernel.shape[1] if self.layer.use_bias else 0
        return [Factorization.of_matrix("dense", kernel, spatial(call.out_shape), bias)]

    def factorize(self, scheme: str, rank: int, taken: set[str]) -> Replacement:
        a, b = svd_split(np.asarray(self.layer.kernel), rank)
        first = copy_layer(
            self.layer,
            units=rank,
            use_bias=False,
            activation="linear",
            name=unique_name(f"{self.name}_lr1", taken),
        )
        second = copy_layer(self.layer, name=unique_name(f"{self.name}_lr2", taken))
        first.edgeslim_rank = rank  # shown by `inspect` while in memory; the record keeps it for good
        bias = [np.asarray(self.layer.bias)] if self.layer.use_bias else []
        return Replacement([first, second], [[a], [b, *bias]])

    def why_not_fold(self) -> str:
        return ""

    def why_not_qat(self) -> str:
        return ""

    def qat_layer(self, per_channel: bool) -> keras.layers.Layer:
        axes = (0,) if per_channel else (0, 1)
        config = self.layer.get_config() | {"per_channel": per_channel, "quant_axes": list(axes)}
        return QAT_CLASSES[keras.layers.Dense].from_config(config)

    def design_rows(self, x: np.ndarray, weights: list[np.ndarray]) -> np.ndarray:
        """The rows the kernel multiplies (one per position), for least-squares refits."""
        return x.reshape(-1, x.shape[-1])

    def linear_weights(self, weights: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(matrix multiplying the design rows, bias) of the layer's linear step."""
        bias = weights[-1] if self.layer.use_bias else np.zeros(weights[0].shape[-1], np.float32)
        return weights[0], bias

    def with_linear(
        self, weights: list[np.ndarray], matrix: np.ndarray, bias: np.ndarray
    ) -> list[np.ndarray]:
        return [matrix.reshape(weights[0].shape).astype(np.float32), bias.astype(np.float32)]
