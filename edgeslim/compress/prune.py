"""The `prune` stage: unstructured magnitude pruning (exact zeros) or structured pruning (fewer units).

Unstructured, alone, prunes at once to the target. Fine-tuned (``Stage.run`` with epochs), it ramps
sparsity along s_t = s_f + (s_i - s_f)(1 - t/n)^3 over the first ``end_fraction`` of the steps and
re-applies the masks after every step. Structured pruning removes whole Dense units and conv
filters and rebuilds a smaller model (structured.py), then fine-tunes like any other stage.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edgeslim.compress.base import (
    Finetuner,
    LayerStage,
    StageRecord,
    StageResult,
    finetune_summary,
    plain_copy,
    require,
)

if TYPE_CHECKING:
    import keras

    from edgeslim.data.dataset import Dataset
    from edgeslim.layers.graph import ModelGraph
    from edgeslim.train.config import FinetuneConfig


@dataclass(kw_only=True)
class PruneStage(LayerStage):
    name: ClassVar[str] = "prune"

    sparsity: float = 0.5  # share of weights (unstructured) or of units/filters (structured) removed
    mode: str = "unstructured"  # or "structured"
    scope: str = "layer"  # "layer": each layer at `sparsity`; "global": one ranking over all layers
    per_layer: str | dict[str, float] | None = None  # overrides, "dense1:0.9|conv2:0.5"
    schedule: str = "polynomial"  # unstructured + fine-tuning: ramp gradually; "oneshot": prune at once
    initial_sparsity: float = 0.0
    end_fraction: float = 0.7  # share of the fine-tuning steps over which the ramp runs
    frequency: int = 10  # steps between mask updates during the ramp
    criterion: str = "l1"  # structured ranking: "l1" | "l2" norm of the filter, "bn" = |BatchNorm gamma|
    compensate: str = "lstsq"  # structured: refit consumers ("lstsq"), move the mean into the bias, or "none"
    round_to: int = 1  # structured: keep a multiple of this many channels per layer
    min_params: int = 0  # unstructured: leave layers with fewer kernel weights dense

    def validate(self) -> None:
        super().validate()
        self.check_number("sparsity", 0.0, 1.0, hi_open=True)
        self.check_choice("mode", ("unstructured", "structured"))
        self.check_choice("scope", ("layer", "global"))
        self.check_choice("schedule", ("polynomial", "oneshot"))
        self.check_number("initial_sparsity", 0.0, 1.0, hi_open=True)
        if self.initial_sparsity > self.sparsity:
            self.fail("initial_sparsity", f"<= sparsity ({self.sparsity})", self.initial_sparsity)
        self.check_number("end_fraction", 0.0, 1.0, lo_open=True)
        self.check_number("frequency", 1, 1_000_000, integer=True)
        self.check_choice("criterion", ("l1", "l2", "bn"))
        self.check_choice("compensate", ("lstsq", "mean", "none"))
        self.check_number("round_to", 1, integer=True)
        self.check_number("min_params", 0, integer=True)
        if self.per_layer is not None and self.scope == "global":
            self.fail("per_layer", "unset when scope is global", self.per_layer)
        self.overrides()

    def overrides(self) -> dict[str, float]:
        """``per_layer`` as a dict, validated: every value a sparsity in [0, 1)."""
        values = self.per_layer_values(
            "per_layer", lambda v: 0 <= v < 1, "layer:sparsity pairs, sparsity in [0, 1)"
        )
        return {k: float(v) for k, v in values.items()}

    def target(self, layer_name: str) -> float:
        return self.overrides().get(layer_name, self.sparsity)

    def apply(self, model: keras.Model, dataset: Dataset) -> StageResult:
        if self.mode == "structured":
            return self._structured(model, dataset)
        return self._unstructured(model, dataset)

    def run(
        self,
        model: keras.Model,
        dataset: Dataset,
        finetune: FinetuneConfig | None = None,
        teacher: keras.Model | None = None,
        progress: Any = False,
        finetuner: Finetuner | None = None,
    ) -> StageResult:
        gradual = self.mode == "unstructured" and self.schedule == "polynomial"
        if finetune is None or finetune.epochs == 0 or not gradual:
            return super().run(model, dataset, finetune, teacher, progress, finetuner)
        teacher = teacher if teacher is not None else model
        return self._unstructured(model, dataset, finetune, teacher, progress, require(finetuner))

    # -- unstructured ------------------------------------------------------------------------
    def _unstructured(
        self,
        model: keras.Model,
        dataset: Dataset,
        finetune: FinetuneConfig | None = None,
        teacher: keras.Model | None = None,
        progress: Any = False,
        finetuner: Finetuner | None = None,
    ) -> StageResult:
        from edgeslim.compress.accounting import Accounting
        from edgeslim.compress.magnitude import compute_masks
        from edgeslim.compress.masks import PolynomialPruning
        from edgeslim.layers.graph import ModelGraph
        from edgeslim.layers.sparsity import kernel_variables, sparsity_of

        start = time.perf_counter()
        graph = ModelGraph(model)
        self._check_overrides(graph)
        accounting = Accounting(graph.model)
        new_model = graph.rebuild()
        targets, skipped = [], {}
        for layer in new_model.layers:
            variables = kernel_variables(layer)
            size = sum(int(np.prod(v.shape)) for v in variables)
            if not variables:
                if layer.get_weights():
                    skipped[layer.name] = f"{type(layer).__name__} has no prunable kernel"
            elif not self.selected(layer.name):
                skipped[layer.name] = "not selected"
            elif size < self.min_params:
                skipped[layer.name] = f"{size} kernel weights < min_params {self.min_params}"
            else:
                targets.append(layer)
        variables = [v for layer in targets for v in kernel_variables(layer)]
        finals = [self.target(layer.name) for layer in targets for _ in kernel_variables(layer)]
        record_extra: dict[str, Any] = {}
        if finetune is not None and finetuner is not None:
            steps = math.ceil(len(dataset.x_train) / finetune.train.batch_size) * finetune.epochs
            ramp = max(1, int(self.end_fraction * steps))
            callback = PolynomialPruning(
                variables, finals, self.initial_sparsity, ramp, self.frequency, self.scope
            )
            trained = finetuner(
                new_model, dataset, finetune, teacher=teacher, progress=progress, callbacks=[callback]
            )
            record_extra["schedule"] = {"ramp_steps": ramp, "total_steps": steps, "updates": callback.history}
        else:
            arrays = [np.asarray(v) for v in variables]
            for variable, mask in zip(variables, compute_masks(arrays, finals, self.scope), strict=True):
                variable.assign(np.asarray(variable) * mask)
        totals = accounting.finish(new_model)
        rows = []
        for layer in targets:
            arrays = [np.asarray(v) for v in kernel_variables(layer)]
            rows.append(
                accounting.row(
                    layer.name,
                    "pruned",
                    sparsity=sparsity_of(arrays),
                    detail={
                        "target": self.target(layer.name),
                        "nonzero_params": accounting.after[layer.name].nonzero_params,
                    },
                )
            )
        rows += [accounting.skipped(name, reason) for name, reason in skipped.items()]
        record_extra["kernel_sparsity"] = sparsity_of([np.asarray(v) for v in variables])
        record = StageRecord(self.name, self.get_config(), rows, totals, extra=record_extra)
        if finetune is not None and finetuner is not None:
            record.finetune = finetune_summary(trained, finetune)
            new_model = plain_copy(new_model)
        record.seconds = time.perf_counter() - start
        return StageResult(new_model, record)

    def _check_overrides(self, graph: ModelGraph) -> None:
        self.check_names(list(graph.nodes), ("layers", "exclude", "per_layer"))

    # -- structured --------------------------------------------------------------------------
    def _structured(self, model: keras.Model, dataset: Dataset) -> StageResult:
        from edgeslim.compress.accounting import Accounting
        from edgeslim.compress.channels import ChannelAnalysis
        from edgeslim.compress.structured import channel_scores, plan_removal, rebuild_pruned
        from edgeslim.layers.graph import ModelGraph

        start = time.perf_counter()
        graph = ModelGraph(model)
        self._check_overrides(graph)
        accounting = Accounting(graph.model)
        analysis = ChannelAnalysis(graph, lambda layer: self.selected(layer.name))
        scores = channel_scores(analysis, self.criterion)
        plan = plan_removal(analysis, scores, self.sparsity, self.overrides(), self.scope, self.round_to)
        calibration = (
            dataset.representative(256) if self.compensate != "none" and dataset is not None else None
        )
        new_model, counts = rebuild_pruned(analysis, plan, calibration, self.compensate)
        totals = accounting.finish(new_model)
        rows = []
        for name, node in graph.nodes.items():
            if name in counts:
                c = counts[name]
                removed = 1.0 - c["channels_after"] / max(1, c["channels_before"])
                action = "pruned" if c["channels_after"] < c["channels_before"] else "resized"
                rows.append(
                    accounting.row(name, action, sparsity=removed, error=c.pop("refit_error", None), detail=c)
                )
            elif name in analysis.producers:
                ids = analysis.producers[name]
                reason = next((analysis.pin_reason(int(i)) for i in ids if analysis.pinned(int(i))), "")
                rows.append(accounting.skipped(name, reason or "no channel scored low enough to remove"))
            elif node.layer.get_weights() and name in analysis.blocked:
                rows.append(accounting.skipped(name, analysis.blocked[name]))
        record = StageRecord(
            self.name, self.get_config(), rows, totals, extra={"groups_removed": len(plan.removed_roots)}
        )
        record.seconds = time.perf_counter() - start
        return StageResult(new_model, record)
