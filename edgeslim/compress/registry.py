"""Stages by name, built from ``name:key=value`` specs or config mappings alike. Imports no Keras.

Adding a technique: one module with a Stage subclass, and one line in STAGES.
"""

from __future__ import annotations

from typing import Any

from edgeslim.compress.architecture import ArchitectureStage
from edgeslim.compress.base import Stage
from edgeslim.compress.lowrank import LowRankStage
from edgeslim.compress.prune import PruneStage
from edgeslim.compress.quantize import QuantizeStage
from edgeslim.compress.separable import SeparableStage
from edgeslim.errors import ConfigError

STAGES: dict[str, type[Stage]] = {
    "architecture": ArchitectureStage,
    "prune": PruneStage,
    "lowrank": LowRankStage,
    "separable": SeparableStage,
    "quantize": QuantizeStage,
}


def build_stage(name: str, **params: Any) -> Stage:
    """A configured stage by name; unknown names and parameters raise ConfigError (all of them at once)."""
    if not isinstance(name, str) or name not in STAGES:
        raise ConfigError(f"unknown stage {name!r}", f"known stages: {sorted(STAGES)}")
    cls = STAGES[name]
    known = cls.param_names()
    unknown = [key for key in params if key not in known]
    if unknown:
        raise ConfigError.several(
            [
                ConfigError(f"{name}.{key}: unknown parameter", f"{name} takes: {', '.join(known)}")
                for key in unknown
            ]
        )
    return cls(**params)


def parse_value(text: str) -> Any:
    """'3' -> 3, '0.5' -> 0.5, 'true' -> True, 'none' -> None, anything else stays a string."""
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


def parse_stage_spec(spec: str) -> Stage:
    """``"prune:sparsity=0.8,mode=structured"`` -> a configured PruneStage."""
    name, params = split_stage_spec(spec)
    return build_stage(name, **params)


def split_stage_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"prune:sparsity=0.8"`` -> ("prune", {"sparsity": 0.8}), checked for form only."""
    name, _, rest = spec.strip().partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"stage spec {spec!r}: expected key=value, got {item!r}",
                "write e.g. prune:sparsity=0.8,mode=structured",
            )
        params[key.strip()] = parse_value(value)
    return name.strip(), params
