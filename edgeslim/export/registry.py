"""Formats and targets by name. A new format or target: one module, one line here."""

from __future__ import annotations

from edgeslim.export import cpu, edgetpu, gpu, mcu, onnx, tflite
from edgeslim.export.format import Format
from edgeslim.export.target import Target

FORMATS: dict[str, Format] = {
    "tflite": tflite.FORMAT,
    "onnx": onnx.FORMAT,
}

TARGETS: dict[str, Target] = {
    "cpu": cpu.TARGET,
    "gpu": gpu.TARGET,
    "edgetpu": edgetpu.TARGET,
    "mcu": mcu.TARGET,
}
TARGET_NAMES: tuple[str, ...] = tuple(TARGETS)
