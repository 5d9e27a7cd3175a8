"""`inspect` for any model file: dispatch on the suffix to the Keras, LiteRT or ONNX analyser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeslim.errors import EdgeslimError

SUFFIXES = (".keras", ".tflite", ".onnx")


def inspect_file(path: str | Path, unsafe: bool = False) -> dict[str, Any]:
    """Return one JSON-ready object describing the model file's layers (or ops)."""
    path = Path(path)
    if not path.is_file():
        raise EdgeslimError(f"{path}: no such file", "check the path")
    suffix = path.suffix.lower()
    if suffix == ".keras":
        from edgeslim.analysis.keras_model import analyze_keras
        from edgeslim.modelio import load_keras_model

        result = analyze_keras(load_keras_model(path, unsafe=unsafe)).to_dict()
        result["format"] = "keras"
        return result
    if suffix == ".tflite":
        from edgeslim.analysis.tflite_model import analyze_tflite

        return {"format": "tflite", **analyze_tflite(path)}
    if suffix == ".onnx":
        from edgeslim.analysis.onnx_model import analyze_onnx

        return {"format": "onnx", **analyze_onnx(path)}
    raise EdgeslimError(
        f"{path}: unknown model type {suffix!r}", f"inspect reads {', '.join(SUFFIXES)} files"
    )
