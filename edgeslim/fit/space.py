"""What the search may change, layer by layer, and a plan: one choice per decision.

Two kinds of decision, both read off the layer handlers (edgeslim.layers):
- a *prune unit* is a cluster of producers whose channels are tied (one layer, or layers joined by an
  Add): its options are structured-pruning sparsities;
- a *factor unit* is one layer that can be factorized or separated: its options are low-rank ranks
  (as fractions of the layer's full rank, so they stay meaningful after pruning) and
  depthwise-separable depth multipliers.
A plan picks one option per unit (the first option of every unit is "none") and a quantization
granularity; ``Plan.stages()`` turns it into the ordinary compress stages, so a plan is reproducible
with `edgeslim pipeline`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

PRUNE_LEVELS = (0.25, 0.5, 0.625, 0.75, 0.875, 0.9375)
LOWRANK_LEVELS = (0.5, 0.25, 0.125, 0.0625, 0.03125)
SEPARABLE_RANKS = (4, 2, 1)


@dataclass(frozen=True)
class Option:
    technique: str  # "none", "prune", "lowrank", "separable"
    level: float = 0.0  # sparsity, rank fraction, or depth multiplier

    def label(self) -> str:
        if self.technique == "none":
            return "none"
        if self.technique == "lowrank":
            return f"lowrank {Fraction(self.level).limit_denominator(64)} of full rank"
        if self.technique == "separable":
            return f"separable r={int(self.level)}"
        return f"prune {self.level:g}"


NONE = Option("none")


@dataclass
class Unit:
    name: str  # the layer; for a prune unit, the first producer of the cluster
    kind: str  # "prune" or "factor"
    options: list[Option]
    members: list[str] = field(default_factory=list)  # prune: every producer in the cluster

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "members": self.members,
            "options": [o.label() for o in self.options],
        }


@dataclass(frozen=True)
class Plan:
    """Architecture moves, then one option per unit (by unit name) of the moved model, and the int8
    granularity."""

    choices: tuple[tuple[str, str, Option], ...]  # (unit kind, unit name, option), non-"none" only
    per_channel: bool = True
    quantize: bool = True
    moves: tuple[str, ...] = ()  # architecture moves (compress/moves) as labels, applied first

    @classmethod
    def make(
        cls,
        units: list[Unit],
        picks: list[int],
        per_channel: bool = True,
        quantize: bool = True,
        moves: tuple[str, ...] = (),
    ) -> Plan:
        chosen = tuple(
            (u.kind, u.name, u.options[i]) for u, i in zip(units, picks, strict=True) if u.options[i] != NONE
        )
        return cls(chosen, per_channel, quantize, tuple(moves))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """The plan a ``to_dict()`` describes (a trial's record)."""
        choices = [("prune", n, Option("prune", float(v))) for n, v in data["prune"].items()]
        choices += [("factor", n, Option("lowrank", float(v))) for n, v in data["lowrank"].items()]
        choices += [("factor", n, Option("separable", float(v))) for n, v in data["separable"].items()]
        quantization = data["quantization"]
        return cls(
            tuple(choices),
            per_channel="per channel" in quantization,
            quantize=quantization != "float32",
            moves=tuple(data.get("moves", ())),
        )

    @property
    def compressed(self) -> bool:
        """Whether the plan changes the model (quantization aside)."""
        return bool(self.choices or self.moves)

    def option(self, kind: str, name: str) -> Option:
        return next((o for k, n, o in self.choices if k == kind and n == name), NONE)

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        # without moves, the plan's dict (and key) is what it was before moves existed
        out: dict[str, Any] = {"moves": list(self.moves)} if self.moves else {}
        return out | {
            "layers": {f"{n} ({k})": o.label() for k, n, o in self.choices},
            "prune": {n: o.level for k, n, o in self.choices if o.technique == "prune"},
            "lowrank": {n: o.level for k, n, o in self.choices if o.technique == "lowrank"},
            "separable": {n: int(o.level) for k, n, o in self.choices if o.technique == "separable"},
            "quantization": ("int8 per channel" if self.per_channel else "int8 per tensor")
            if self.quantize
            else "float32",
        }

    def stages(self, lowrank_ranks: dict[str, int] | None = None) -> list[dict[str, Any]]:
        """The compress stages that apply this plan (lowrank ranks resolved on the pruned model)."""
        d = self.to_dict()
        stages: list[dict[str, Any]] = []
        if self.moves:
            stages.append({"architecture": {"moves": "|".join(self.moves)}})
        if d["prune"]:
            stages.append({"prune": {"mode": "structured", "sparsity": 0.0, "per_layer": d["prune"]}})
        if d["lowrank"]:
            ranks = lowrank_ranks or {}
            stages.append(
                {"lowrank": {"layers": sorted(d["lowrank"]), "per_layer": ranks, "keep_output": True}}
            )
        if d["separable"]:
            stages.append(
                {
                    "separable": {
                        "layers": sorted(d["separable"]),
                        "per_layer": d["separable"],
                        "require_saving": False,
                    }
                }
            )
        if self.quantize:
            stages.append({"quantize": {"mode": "int8", "per_channel": self.per_channel, "qat": True}})
        return stages


def search_space(graph: Any, analysis: Any, techniques: tuple[str, ...]) -> list[Unit]:
    """The decisions for a model (``graph``: a ModelGraph; ``analysis``: its ChannelAnalysis)."""
    units: list[Unit] = []
    if "prune" in techniques:
        for cluster in prune_clusters(analysis):
            n = min(len(analysis.producers[p]) for p in cluster)
            levels = [s for s in PRUNE_LEVELS if n - math.floor(s * n) >= 1 and math.floor(s * n) >= 1]
            if levels:
                units.append(
                    Unit(cluster[0], "prune", [NONE, *(Option("prune", s) for s in levels)], cluster)
                )
    for name, node in graph.nodes.items():
        if name in graph.output_names or not node.layer.weights:
            continue
        options = [NONE]
        call = node.call_shapes()[0]
        if "lowrank" in techniques and not node.handler.why_not_factorize():
            first = next(iter(node.handler.factorizations(call)), None)
            for fraction in LOWRANK_LEVELS if first is not None else ():
                rank = max(1, round(fraction * first.full_rank))
                if first.saves(rank) and rank < first.full_rank:
                    options.append(Option("lowrank", fraction))
        if "separable" in techniques and not node.handler.why_not_separate():
            plan = node.handler.separation(call)
            options += [
                Option("separable", r) for r in SEPARABLE_RANKS if r <= plan.exact_rank and plan.saves(r)
            ]
        if len(options) > 1:
            units.append(Unit(name, "factor", options))
    return units


def prune_clusters(analysis: Any) -> list[list[str]]:
    """Producers whose prunable channels are tied together, in graph order."""
    owners: dict[int, set[str]] = {}
    for root, members in analysis.groups().items():
        owners[root] = {analysis.channels[i][0] for i in members}
    merged: list[set[str]] = []
    for producers in owners.values():
        overlapping = [c for c in merged if c & producers]
        for c in overlapping:
            merged.remove(c)
            producers = producers | c
        merged.append(set(producers))
    order = {name: i for i, name in enumerate(analysis.producers)}
    return sorted((sorted(c, key=order.__getitem__) for c in merged), key=lambda c: order[c[0]])
