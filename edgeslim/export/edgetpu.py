"""The ``edgetpu`` target: full int8, static batch 1, and where each op will run on a Coral Edge TPU."""

from __future__ import annotations

from typing import Any

from edgeslim.export.artifact import Artifact
from edgeslim.export.edgetpu_compiler import compiler_path, run_compiler
from edgeslim.export.edgetpu_ops import analyze_edgetpu
from edgeslim.export.target import ArtifactPlan, ExportContext, Target


class EdgeTpuTarget(Target):
    name = "edgetpu"
    description = "Coral Edge TPU: full-integer int8 TFLite with static batch 1, op mapping analysis"
    defaults = {"tflite": "int8"}
    allowed = {"tflite": ("int8",)}
    static_batch = 1
    why = "the Edge TPU runs fully 8-bit quantized TFLite models with static shapes"

    def before_write(self, data: bytes, plan: ArtifactPlan, context: ExportContext) -> dict[str, Any]:
        analysis = analyze_edgetpu(data, "edgetpu export")
        analysis["prediction"] = compiler_path() is None  # replaced by the compiler's verdict below
        return {"edgetpu": analysis}

    def after_verify(self, artifact: Artifact, context: ExportContext) -> None:
        """With the compiler on PATH, its log replaces the prediction and the compiled file sits beside."""
        if compiler_path() is None:
            return
        result = run_compiler(artifact.path, artifact.path.parent)
        analysis = artifact.sidecar["edgetpu"]
        analysis["compiler"] = {k: v for k, v in result.items() if k != "log"}
        if result.get("ran") and result.get("mapped_ops") is not None:
            analysis["prediction"] = False
            analysis["mapped_ops"] = result["mapped_ops"]
            total = result["mapped_ops"] + (result.get("cpu_ops") or 0)
            analysis["mapped_fraction"] = result["mapped_ops"] / total if total else 0.0
        else:
            analysis["prediction"] = True


TARGET = EdgeTpuTarget()
