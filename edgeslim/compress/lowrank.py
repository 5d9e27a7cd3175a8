"""The `lowrank` stage: replace Dense and Conv2D layers by two thinner ones from a truncated SVD.

Dense M_in -> M_out becomes a linear Dense to K units, then Dense K -> M_out with the original
bias and activation. A Conv2D gets the better of two splits (factorize.py): "channel" (K x K conv to
R filters, then 1x1) or "spatial" (K x 1 then 1 x K through R channels); "auto" picks the one with
fewer multiplications at the same reconstruction error. Rank: explicit, by kept energy of
sum sigma^2, or by a parameter ratio. A layer where (M + N) K >= M N would not shrink and is skipped.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import keras
import numpy as np

from edgeslim.compress import factorize as fz
from edgeslim.compress.accounting import Accounting, output_error
from edgeslim.compress.base import LayerStage, StageRecord, StageResult
from edgeslim.compress.graph import ModelGraph, Replacement, copy_layer, unique_name
from edgeslim.data.dataset import Dataset


@dataclass
class Candidate:
    scheme: str
    rank: int
    error: float
    params: int
    macs: int
    m: int  # rows of the factorized matrix
    n: int  # columns


@dataclass(kw_only=True)
class LowRankStage(LayerStage):
    name: ClassVar[str] = "lowrank"

    rank: int | None = None  # exactly one of rank / energy / ratio; energy 0.95 when none is given
    energy: float | None = None  # kept fraction of sum sigma^2
    ratio: float | None = None  # target parameters after / before, per layer
    method: str = "auto"  # Conv2D: "auto" | "channel" | "spatial"
    min_params: int = 0  # leave layers with fewer parameters alone
    keep_output: bool = True  # leave the layer producing the model output whole (a bottleneck caps accuracy)
    calib_samples: int = 128  # inputs on which each layer's output error is measured (0: skip)

    def validate(self) -> None:
        super().validate()
        given = [p for p in ("rank", "energy", "ratio") if getattr(self, p) is not None]
        if len(given) > 1:
            self.fail(
                given[1], f"unset when {given[0]} is given (choose one rank rule)", getattr(self, given[1])
            )
        if not given:
            self.energy = 0.95
        self.check_number("rank", 1, integer=True, optional=True)
        self.check_number("energy", 0.0, 1.0, lo_open=True, optional=True)
        self.check_number("ratio", 0.0, 1.0, lo_open=True, hi_open=True, optional=True)
        self.check_choice("method", ("auto", "channel", "spatial"))
        self.check_number("min_params", 0, integer=True)
        self.check_bool("keep_output")
        self.check_number("calib_samples", 0, integer=True)

    def apply(self, model: keras.Model, dataset: Dataset) -> StageResult:
        start = time.perf_counter()
        graph = ModelGraph(model)
        self.check_names(list(graph.nodes))
        accounting = Accounting(model)
        taken = {layer.name for layer in graph.layers()}
        replacements: dict[str, Replacement] = {}
        decisions: dict[str, tuple[str, Any]] = {}
        for name, node in graph.nodes.items():
            layer = node.layer
            if not layer.get_weights():
                continue
            reason = self._unsupported(layer, node.calls)
            if not reason and self.keep_output and name in graph.output_names:
                reason = "produces the model output (keep_output=true)"
            if reason:
                decisions[name] = ("skip", reason)
                continue
            in_shape = node.keras_nodes[0].input_tensors[0].shape
            out_shape = node.keras_nodes[0].outputs[0].shape
            plan = self._plan(layer, in_shape, out_shape)
            if isinstance(plan, str):
                decisions[name] = ("skip", plan)
                continue
            replacements[name] = self._replacement(layer, plan, taken)
            decisions[name] = ("factorized", plan)
        new_model = graph.rebuild(replacements)
        totals = accounting.finish(new_model)
        errors = {}
        if self.calib_samples and replacements and dataset is not None:
            inputs = graph.layer_inputs(list(replacements), dataset.representative(self.calib_samples))
            errors = {
                n: output_error(graph.nodes[n].layer, r.layers, inputs[n]) for n, r in replacements.items()
            }
        rows = []
        for name, (action, info) in decisions.items():
            if action == "skip":
                rows.append(accounting.skipped(name, info))
                continue
            new_names = [layer.name for layer in replacements[name].layers]
            detail = {"scheme": info.scheme, "layers": new_names, "output_error": errors.get(name)}
            rows.append(
                accounting.row(name, "factorized", new_names, rank=info.rank, error=info.error, detail=detail)
            )
        record = StageRecord(self.name, self.get_config(), rows, totals)
        record.seconds = time.perf_counter() - start
        return StageResult(new_model, record)

    def _unsupported(self, layer: keras.layers.Layer, calls: int) -> str:
        if not self.selected(layer.name):
            return "not selected"
        if calls > 1:
            return f"shared layer (called {calls} times)"
        params = sum(int(np.prod(w.shape)) for w in layer.get_weights())
        if params < self.min_params:
            return f"{params} parameters < min_params {self.min_params}"
        if type(layer) is keras.layers.Dense:
            return ""
        if type(layer) is keras.layers.Conv2D:
            if layer.groups != 1:
                return "grouped convolution"
            if layer.data_format != "channels_last":
                return "channels_first data format"
            return ""
        if isinstance(layer, keras.layers.DepthwiseConv2D | keras.layers.SeparableConv2D):
            return f"{type(layer).__name__} is already factorized"
        return f"{type(layer).__name__} is not factorized (Dense and Conv2D only)"

    def _rank(self, sigma: np.ndarray, params_per_rank: int, params_before: int) -> int:
        budget = math.floor(self.ratio * params_before / params_per_rank) if self.ratio is not None else None
        return fz.choose_rank(sigma, self.rank, self.energy, budget)

    def _plan(self, layer: keras.layers.Layer, in_shape: tuple, out_shape: tuple) -> Candidate | str:
        kernel = np.asarray(layer.kernel)
        if isinstance(layer, keras.layers.Dense):
            m, n = kernel.shape
            sigma = fz.singular_values(kernel)
            k = self._rank(sigma, m + n, m * n)
            positions = math.prod(int(d) for d in out_shape[1:-1]) if len(out_shape) > 2 else 1
            candidates = [
                Candidate(
                    "dense", k, fz.truncation_error(sigma, k), (m + n) * k, positions * (m + n) * k, m, n
                )
            ]
        else:
            candidates = self._conv_candidates(kernel, in_shape, out_shape)
        valid = [c for c in candidates if c.rank >= 1 and (c.m + c.n) * c.rank < c.m * c.n]
        if not valid:
            c = candidates[0]
            if c.rank < 1:
                return f"ratio {self.ratio} leaves no rank (needs at least {(c.m + c.n) / (c.m * c.n):.3f})"
            return (
                f"rank {c.rank}: (M+N)K = {(c.m + c.n) * c.rank} >= MN = {c.m * c.n}, "
                "factorizing would not save anything"
            )
        return min(valid, key=lambda c: (c.macs, c.error))

    def _conv_candidates(self, kernel: np.ndarray, in_shape: tuple, out_shape: tuple) -> list[Candidate]:
        kh, kw, d_in, d_out = kernel.shape
        h_out, w_out = int(out_shape[1]), int(out_shape[2])
        w_in = int(in_shape[2]) if in_shape[2] is not None else w_out
        out: list[Candidate] = []
        if self.method in ("auto", "channel"):
            sigma = fz.singular_values(fz.channel_matrix(kernel))
            m, n = kh * kw * d_in, d_out
            r = self._rank(sigma, m + n, m * n)
            out.append(
                Candidate(
                    "channel",
                    r,
                    fz.truncation_error(sigma, r),
                    (m + n) * r,
                    h_out * w_out * (m + n) * r,
                    m,
                    n,
                )
            )
        if self.method in ("auto", "spatial") and kh > 1 and kw > 1:
            sigma = fz.singular_values(fz.spatial_matrix(kernel))
            m, n = kh * d_in, kw * d_out
            r = self._rank(sigma, m + n, m * n)
            if out and out[0].rank >= 1 and self.energy is None:
                # Match the channel split's error (never above a ratio's budget), then compare costs.
                r = min(fz.rank_for_error(sigma, out[0].error), r if self.ratio is not None else len(sigma))
            macs = h_out * w_in * kh * d_in * r + h_out * w_out * kw * r * d_out
            out.append(Candidate("spatial", r, fz.truncation_error(sigma, r), (m + n) * r, macs, m, n))
        return out

    def _replacement(self, layer: keras.layers.Layer, plan: Candidate, taken: set[str]) -> Replacement:
        first_name, second_name = (
            unique_name(f"{layer.name}_lr1", taken),
            unique_name(f"{layer.name}_lr2", taken),
        )
        bias = [np.asarray(layer.bias)] if layer.use_bias else []
        kernel = np.asarray(layer.kernel)
        linear = {"use_bias": False, "activation": "linear", "name": first_name}
        if plan.scheme == "dense":
            a, b = fz.split(kernel, plan.rank)
            first = copy_layer(layer, units=plan.rank, **linear)
            second = copy_layer(layer, name=second_name)
        elif plan.scheme == "channel":
            a, b = fz.channel_factors(kernel, plan.rank)
            first = copy_layer(layer, filters=plan.rank, **linear)
            second = copy_layer(
                layer,
                kernel_size=(1, 1),
                strides=(1, 1),
                padding="valid",
                dilation_rate=(1, 1),
                name=second_name,
            )
        else:
            a, b = fz.spatial_factors(kernel, plan.rank)
            (kh, kw), (sh, sw), (dh, dw) = layer.kernel_size, layer.strides, layer.dilation_rate
            first = copy_layer(
                layer,
                filters=plan.rank,
                kernel_size=(kh, 1),
                strides=(sh, 1),
                dilation_rate=(dh, 1),
                **linear,
            )
            second = copy_layer(
                layer, kernel_size=(1, kw), strides=(1, sw), dilation_rate=(1, dw), name=second_name
            )
        first.edgeslim_rank = plan.rank  # shown by `inspect` while in memory; the record keeps it for good
        return Replacement([first, second], [[a], [b, *bias]])
