"""The `separable` stage: replace a K-wide convolution by a depthwise conv (multiplier r) + a 1x1 conv.

Initialised in closed form, not at random (the convolution handler's ``separate``): for input channel
c the kernel slice W[..., c, :], reshaped to K^n x D_out, has an SVD U S V^T; its rank-r truncation
gives the channel's r depthwise kernels and their pointwise rows. Summed over c that is the
convolution with the truncated kernels, so the substitution is exact when r = min(K^n, D_out), and
otherwise the best rank-r approximation of every slice. Conv1D and Conv2D; strides, padding and
dilation go to the depthwise layer, bias and activation to the pointwise one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from edgeslim.compress.base import LayerStage, StageRecord, StageResult

if TYPE_CHECKING:
    import keras

    from edgeslim.data.dataset import Dataset


@dataclass(kw_only=True)
class SeparableStage(LayerStage):
    name: ClassVar[str] = "separable"

    rank: int | None = None  # depth multiplier r; capped at min(K^n, D_out), where the split is exact
    energy: float | None = None  # else the smallest r keeping this share of sum sigma^2 (0.9 by default)
    min_params: int = 0
    calib_samples: int = 128  # inputs on which each layer's output error is measured (0: skip)
    require_saving: bool = True  # skip a layer the substitution would not make cheaper (full rank never does)
    per_layer: str | dict[str, int] | None = None  # ranks that override the rule, "conv2:2|conv3:4"

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
        self.ranks()

    def ranks(self) -> dict[str, int]:
        """``per_layer`` as a dict, validated: every value a positive integer rank."""
        values = self.per_layer_values(
            "per_layer", lambda v: v >= 1 and v == int(v), "layer:rank pairs, rank >= 1"
        )
        return {k: int(v) for k, v in values.items()}

    def _unsupported(self, node: Any) -> str:
        if not self.selected(node.name):
            return "not selected"
        if reason := node.handler.why_not_separate():
            return reason
        params = node.handler.params()
        if params < self.min_params:
            return f"{params} parameters < min_params {self.min_params}"
        return ""

    def apply(self, model: keras.Model, dataset: Dataset) -> StageResult:
        from edgeslim.compress.accounting import Accounting, output_errors
        from edgeslim.layers import Replacement
        from edgeslim.layers.graph import ModelGraph

        start = time.perf_counter()
        graph = ModelGraph(model)
        self.check_names(list(graph.nodes), ("layers", "exclude", "per_layer"))
        accounting = Accounting(graph.model)
        taken = {layer.name for layer in graph.layers()}
        replacements: dict[str, Replacement] = {}
        skipped: dict[str, str] = {}
        info: dict[str, dict] = {}
        for name, node in graph.nodes.items():
            if not node.layer.get_weights():
                continue
            reason = self._unsupported(node)
            if reason:
                skipped[name] = reason
                continue
            plan = node.handler.separation(node.call_shapes()[0])
            chosen = self.ranks().get(name, self.rank)
            r = min(chosen, plan.exact_rank) if chosen is not None else plan.rank_for_energy(self.energy)
            if self.require_saving and not plan.saves(r):
                skipped[name] = (
                    f"r = {r}: {plan.macs(r):,} multiplications >= {plan.macs_before:,} of the convolution, "
                    "no saving"
                )
                continue
            replacements[name] = node.handler.separate(r, taken)
            info[name] = {"rank": r, "error": plan.error(r), "exact_rank": plan.exact_rank}
        new_model = graph.rebuild(replacements)
        totals = accounting.finish(new_model)
        errors = output_errors(graph, replacements, dataset, self.calib_samples)
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
