"""The `lowrank` stage: replace a layer by two thinner ones from a truncated SVD of its weight matrix.

Each layer's handler offers its factorizations, priced per rank without building anything (Dense:
M_in -> K -> M_out; convolutions: "channel" K-wide conv to R filters then 1x1, or for 2-D "spatial"
K_h x 1 then 1 x K_w; transposed convolutions; the input or the recurrent kernel of
LSTM/GRU/SimpleRNN; embedding tables). The rank comes from one rule: explicit, by kept energy of
sum sigma^2, or by a parameter ratio; "auto" picks the split that saves more multiplications at the
same error (keeping a fusable LSTM's fused kernel). A layer where (M + N) K >= M N would not shrink
and is skipped, with the reason.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edgeslim.compress.base import LayerStage, StageRecord, StageResult

if TYPE_CHECKING:
    import keras

    from edgeslim.data.dataset import Dataset
    from edgeslim.layers import Factorization


METHOD_FAMILIES = (("channel", "spatial"), ("input", "recurrent"))  # schemes that compete for one layer


@dataclass(kw_only=True)
class LowRankStage(LayerStage):
    name: ClassVar[str] = "lowrank"

    rank: int | None = None  # exactly one of rank / energy / ratio; energy 0.95 when none is given
    energy: float | None = None  # kept fraction of sum sigma^2
    ratio: float | None = None  # target parameters after / before, per layer
    method: str = "auto"  # or convolutions' "channel" | "spatial", recurrent layers' "input" | "recurrent"
    min_params: int = 0  # leave layers with fewer parameters alone
    keep_output: bool = True  # leave the layer producing the model output whole (a bottleneck caps accuracy)
    calib_samples: int = 128  # inputs on which each layer's output error is measured (0: skip)
    per_layer: str | dict[str, int] | None = None  # ranks that override the rule, "conv2:4|dense1:32"

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
        self.check_choice("method", ("auto", *(m for family in METHOD_FAMILIES for m in family)))
        self.check_number("min_params", 0, integer=True)
        self.check_bool("keep_output")
        self.check_number("calib_samples", 0, integer=True)
        self.ranks()

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
        decisions: dict[str, tuple[str, Any]] = {}
        for name, node in graph.nodes.items():
            if not node.layer.get_weights():
                continue
            reason = self._unsupported(node, graph.output_names)
            plan = reason or self._plan(
                node.handler.factorizations(node.call_shapes()[0]), self.ranks().get(name)
            )
            if isinstance(plan, str):
                decisions[name] = ("skip", plan)
                continue
            fact, rank = plan
            replacements[name] = node.handler.factorize(fact.scheme, rank, taken)
            decisions[name] = ("factorized", plan)
        new_model = graph.rebuild(replacements)
        totals = accounting.finish(new_model)
        errors = output_errors(graph, replacements, dataset, self.calib_samples)
        rows = []
        for name, (action, info) in decisions.items():
            if action == "skip":
                rows.append(accounting.skipped(name, info))
                continue
            fact, rank = info
            new_names = [layer.name for layer in replacements[name].layers]
            detail = {"scheme": fact.scheme, "layers": new_names, "output_error": errors.get(name)}
            rows.append(
                accounting.row(
                    name, "factorized", new_names, rank=rank, error=fact.error(rank), detail=detail
                )
            )
        record = StageRecord(self.name, self.get_config(), rows, totals)
        record.seconds = time.perf_counter() - start
        return StageResult(new_model, record)

    def _unsupported(self, node: Any, outputs: list[str]) -> str:
        if not self.selected(node.name):
            return "not selected"
        if self.keep_output and node.name in outputs:
            return "produces the model output (keep_output=true)"
        params = node.handler.params()
        if params < self.min_params:
            return f"{params} parameters < min_params {self.min_params}"
        return node.handler.why_not_factorize()

    def ranks(self) -> dict[str, int]:
        """``per_layer`` as a dict, validated: every value a positive integer rank."""
        values = self.per_layer_values(
            "per_layer", lambda v: v >= 1 and v == int(v), "layer:rank pairs, rank >= 1"
        )
        return {k: int(v) for k, v in values.items()}

    def _plan(self, options: list[Factorization], rank: int | None = None) -> tuple[Factorization, int] | str:
        if self.method == "auto":
            options = [o for o in options if o.auto]
        else:  # the method picks within its own family's schemes only
            family = next(f for f in METHOD_FAMILIES if self.method in f)
            options = [o for o in options if o.scheme not in family or o.scheme == self.method]
        if not options:
            return f"no {self.method} factorization for this layer"
        ranks = [min(rank, o.full_rank) if rank else self.choose_rank(o) for o in options]
        if self.energy is None and not rank and len(options) == 2 and ranks[0] >= 1:
            # Match the first split's error (never above a ratio's budget), then compare costs.
            first_error = options[0].error(ranks[0])
            budget = ranks[1] if self.ratio is not None else options[1].full_rank
            ranks[1] = min(rank_for_error(options[1], first_error), budget)
        valid = [(o, r) for o, r in zip(options, ranks, strict=True) if o.saves(r)]
        if not valid:
            o, r = options[0], ranks[0]
            if r < 1:
                return f"ratio {self.ratio} leaves no rank (needs at least {(o.m + o.n) / (o.m * o.n):.3f})"
            return (
                f"rank {r}: (M+N)K = {(o.m + o.n) * r} >= MN = {o.m * o.n}, "
                "factorizing would not save anything"
            )
        # The split that saves the most (an LSTM's two kernels differ in size), then the smaller error.
        return min(
            valid, key=lambda pair: (pair[0].macs(pair[1]) - pair[0].macs_before, pair[0].error(pair[1]))
        )

    def choose_rank(self, option: Factorization) -> int:
        """The truncation rank: explicit (capped at full rank), the smallest keeping ``energy`` of
        sum sigma^2, or the largest a parameter ratio allows."""
        sigma = option.sigma
        if self.rank is not None:
            return min(self.rank, len(sigma))
        if self.ratio is not None:
            return min(len(sigma), math.floor(self.ratio * option.params_before / option.params_per_rank))
        assert self.energy is not None
        return rank_for_energy(sigma, self.energy)


def rank_for_energy(sigma: np.ndarray, energy: float) -> int:
    """The smallest rank keeping ``energy`` of sum sigma^2 (never above the numerical rank)."""
    full = int(np.sum(sigma > sigma.max() * 1e-7)) if sigma.size and sigma.max() > 0 else 0
    kept = np.cumsum(sigma**2) / max(float(np.sum(sigma**2)), 1e-30)
    return int(min(len(sigma), np.searchsorted(kept, energy - 1e-9) + 1, max(full, 1)))


def rank_for_error(option: Factorization, error: float) -> int:
    """The smallest rank whose truncation error is at most ``error``."""
    for k in range(1, option.full_rank + 1):
        if option.error(k) <= error + 1e-9:
            return k
    return option.full_rank
