"""The `separable` stage: replace a standard Conv2D by DepthwiseConv2D(K, depth_multiplier=r) + 1x1 Conv2D.

Initialised in closed form, not at random. For input channel c the kernel slice W[:, :, c, :],
reshaped to K^2 x D_out, has an SVD U S V^T. Its rank-r truncation gives the channel's r depthwise
kernels, U_j sqrt(s_j) reshaped to K x K, and their pointwise rows, sqrt(s_j) V_j, at the depthwise
output index c r + j (the order DepthwiseConv2D uses). Summed over c that is the convolution
with the truncated kernels, so the substitution is exact when r = min(K^2, D_out), and otherwise
the best rank-r approximation of every slice. Strides, padding and dilation go to the depthwise
layer; bias and activation to the pointwise one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import ClassVar

import keras
import numpy as np

from edgeslim.compress.accounting import Accounting, output_error
from edgeslim.compress.base import LayerStage, StageRecord, StageResult
from edgeslim.compress.graph import ModelGraph, Replacement, copy_layer, unique_name
from edgeslim.data.dataset import Dataset


def slice_svd(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SVD of each W[:, :, c, :] as K^2 x D_out: u (D_in, K^2, q), s (D_in, q), vt (D_in, q, D_out)."""
    kh, kw, d_in, d_out = kernel.shape
    slices = kernel.astype(np.float64).transpose(2, 0, 1, 3).reshape(d_in, kh * kw, d_out)
    return np.linalg.svd(slices, full_matrices=False)


def separable_factors(kernel: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(depthwise kernel (K_h, K_w, D_in, r), pointwise kernel (1, 1, D_in r, D_out), relative error)."""
    kh, kw, d_in, d_out = kernel.shape
    u, s, vt = slice_svd(kernel)
    q = s.shape[1]  # min(K^2, D_out): the rank at which the split is exact
    depthwise = np.zeros((d_in, kh * kw, r))
    pointwise = np.zeros((d_in, r, d_out))
    k = min(r, q)
    root = np.sqrt(s[:, :k])
    depthwise[:, :, :k] = u[:, :, :k] * root[:, None, :]
    pointwise[:, :k, :] = root[:, :, None] * vt[:, :k, :]
    depthwise = depthwise.reshape(d_in, kh, kw, r).transpose(1, 2, 0, 3)
    total = float(np.sum(s**2))
    error = 0.0 if total == 0 else math.sqrt(float(np.sum(s[:, k:] ** 2)) / total)
    return depthwise.astype(np.float32), pointwise.reshape(1, 1, d_in * r, d_out).astype(np.float32), error


def rank_for_energy(kernel: np.ndarray, energy: float) -> int:
    """Smallest r whose truncation keeps ``energy`` of sum sigma^2 over all input channels together."""
    _, s, _ = slice_svd(kernel)
    total = float(np.sum(s**2))
    if total == 0:
        return 1
    kept = np.cumsum(np.sum(s**2, axis=0)) / total
    return int(min(s.shape[1], np.searchsorted(kept, energy - 1e-9) + 1))


@dataclass(kw_only=True)
class SeparableStage(LayerStage):
    name: ClassVar[str] = "separable"

    rank: int | None = None  # depth multiplier r; capped at min(K^2, D_out), where the split is exact
    energy: float | None = None  # else the smallest r keeping this share of sum sigma^2 (0.9 by default)
    min_params: int = 0
    calib_samples: int = 128  # inputs on which each layer's output error is measured (0: skip)
    require_saving: bool = True  # skip a layer the substitution would not make cheaper (full rank never does)

    def validate(self) -> None:
        super().validate()
        if self.rank is not None and self.energy is not None:
            self.fail("energy", "unset when rank is given (choose one rank rule)", self.energy)
        if self.rank is None and self.energy is None:
            self.energy = 0.9
        self.check_number("rank", 1, integer=True, optional=True)
        self.check_number("energy", 0.0, 1.0, lo_open=True, optional=True)
        self.check_number("min_params", 0, integer=True)
        self.check_number("calib_samples", 0, integer=True)
        self.check_bool("require_saving")

    def _unsupported(self, layer: keras.layers.Layer, calls: int) -> str:
        if not self.selected(layer.name):
            return "not selected"
        if calls > 1:
            return f"shared layer (called {calls} times)"
        if type(layer) is not keras.layers.Conv2D:
            if isinstance(layer, keras.layers.DepthwiseConv2D | keras.layers.SeparableConv2D):
                return f"{type(layer).__name__} is already separable"
            return f"{type(layer).__name__} is not a standard Conv2D"
        if layer.groups != 1:
            return "grouped convolution"
        if layer.data_format != "channels_last":
            return "channels_first data format"
        if tuple(layer.kernel_size) == (1, 1):
            return "a 1x1 convolution has no spatial part to separate"
        params = sum(int(np.prod(w.shape)) for w in layer.get_weights())
        if params < self.min_params:
            return f"{params} parameters < min_params {self.min_params}"
        return ""

    def apply(self, model: keras.Model, dataset: Dataset) -> StageResult:
        start = time.perf_counter()
        graph = ModelGraph(model)
        self.check_names(list(graph.nodes))
        accounting = Accounting(model)
        taken = {layer.name for layer in graph.layers()}
        replacements: dict[str, Replacement] = {}
        skipped: dict[str, str] = {}
        info: dict[str, dict] = {}
        for name, node in graph.nodes.items():
            layer = node.layer
            if not layer.get_weights():
                continue
            reason = self._unsupported(layer, node.calls)
            if reason:
                skipped[name] = reason
                continue
            kernel = np.asarray(layer.kernel)
            kh, kw, d_in, d_out = kernel.shape
            exact_rank = min(kh * kw, d_out)
            r = min(self.rank, exact_rank) if self.rank is not None else rank_for_energy(kernel, self.energy)
            if self.require_saving and r * (kh * kw + d_out) >= kh * kw * d_out:
                skipped[name] = (
                    f"r = {r}: r (K^2 + D_out) = {r * (kh * kw + d_out)} >= K^2 D_out = "
                    f"{kh * kw * d_out}, no fewer multiplications"
                )
                continue
            depthwise, pointwise, error = separable_factors(kernel, r)
            replacements[name] = self._replacement(layer, r, depthwise, pointwise, taken)
            info[name] = {"rank": r, "error": error, "exact_rank": exact_rank}
        new_model = graph.rebuild(replacements)
        totals = accounting.finish(new_model)
        errors = self._output_errors(graph, replacements, dataset)
        rows = []
        for name, item in info.items():
            new_names = [layer.name for layer in replacements[name].layers]
            detail = {"layers": new_names, "exact_rank": item["exact_rank"], "output_error": errors.get(name)}
            rows.append(
                accounting.row(
                    name, "replaced", new_names, rank=item["rank"], error=item["error"], detail=detail
                )
            )
        rows += [accounting.skipped(name, reason) for name, reason in skipped.items()]
        record = StageRecord(self.name, self.get_config(), rows, totals)
        record.seconds = time.perf_counter() - start
        return StageResult(new_model, record)

    def _replacement(
        self, layer: keras.layers.Layer, r: int, depthwise: np.ndarray, pointwise: np.ndarray, taken: set[str]
    ) -> Replacement:
        dw = keras.layers.DepthwiseConv2D(
            layer.kernel_size,
            strides=layer.strides,
            padding=layer.padding,
            depth_multiplier=r,
            dilation_rate=layer.dilation_rate,
            use_bias=False,
            dtype=layer.dtype_policy,
            name=unique_name(f"{layer.name}_dw", taken),
        )
        pw = copy_layer(
            layer,
            kernel_size=(1, 1),
            strides=(1, 1),
            padding="valid",
            dilation_rate=(1, 1),
            name=unique_name(f"{layer.name}_pw", taken),
        )
        dw.edgeslim_rank = r
        bias = [np.asarray(layer.bias)] if layer.use_bias else []
        return Replacement([dw, pw], [[depthwise], [pointwise, *bias]])

    def _output_errors(
        self, graph: ModelGraph, replacements: dict[str, Replacement], dataset: Dataset
    ) -> dict:
        if not self.calib_samples or not replacements or dataset is None:
            return {}
        x = dataset.representative(self.calib_samples)
        inputs = graph.layer_inputs(list(replacements), x)
        return {
            name: output_error(graph.nodes[name].layer, replacements[name].layers, inputs[name])
            for name in replacements
        }
