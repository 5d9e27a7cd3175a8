"""The ``cpu`` target (Raspberry Pi, x86): full-integer int8 TFLite and int8 QDQ ONNX by default."""

from __future__ import annotations

from edgeslim.export.onnx import MODES as ONNX_MODES
from edgeslim.export.target import Target
from edgeslim.export.tflite import MODES as TFLITE_MODES


class CpuTarget(Target):
    name = "cpu"
    description = "Raspberry Pi and x86 CPUs: int8 TFLite (XNNPACK) and int8 ONNX (ONNX Runtime)"
    defaults = {"tflite": "int8", "onnx": "int8"}
    allowed = {"tflite": TFLITE_MODES, "onnx": ONNX_MODES}
    why = "the cpu target takes every mode its formats can write"


TARGET = CpuTarget()
