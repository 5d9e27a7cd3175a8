"""Compression stages: prune, lowrank, separable, quantize, behind one interface (base.Stage).

Importing this package imports no TensorFlow or Keras: a stage's parameters are validated without
them (a config check stays fast); the work happens in ``apply``. Adding a technique: one module with
a Stage subclass, and one line in registry.STAGES.
"""

from __future__ import annotations

from edgeslim.compress.base import Finetuner, LayerChange, Stage, StageRecord, StageResult
from edgeslim.compress.lowrank import LowRankStage
from edgeslim.compress.prune import PruneStage
from edgeslim.compress.quantize import QuantizeStage
from edgeslim.compress.registry import STAGES, build_stage, parse_stage_spec, parse_value
from edgeslim.compress.separable import SeparableStage

__all__ = [
    "STAGES",
    "Finetuner",
    "LayerChange",
    "LowRankStage",
    "PruneStage",
    "QuantizeStage",
    "SeparableStage",
    "Stage",
    "StageRecord",
    "StageResult",
    "build_stage",
    "parse_stage_spec",
    "parse_value",
]
