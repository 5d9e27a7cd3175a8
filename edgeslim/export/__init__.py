"""Export a Keras model to TFLite (LiteRT) and ONNX for a deployment target, and verify each file.

    artifacts = export_model(model, dataset, target="cpu", out_dir="exports/cpu")

Each artifact is written with a JSON sidecar (``<file>.json``) holding everything a runtime needs:
input/output specs with quantization parameters, preprocessing, class names, hashes, tool versions
and the verification results. Importing this package does not import TensorFlow, and its names load
on first use, so ``edgeslim --help`` can read ``ExportOptions``' defaults without the converters.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgeslim.export.api import ExportVerificationError, export_model
    from edgeslim.export.artifact import Artifact
    from edgeslim.export.options import ExportOptions
    from edgeslim.export.registry import FORMATS, TARGETS
    from edgeslim.recipe import QuantRecipe, parse_quant

_HOMES = {
    "ExportVerificationError": "edgeslim.export.api",
    "export_model": "edgeslim.export.api",
    "Artifact": "edgeslim.export.artifact",
    "ExportOptions": "edgeslim.export.options",
    "FORMATS": "edgeslim.export.registry",
    "TARGETS": "edgeslim.export.registry",
    "QuantRecipe": "edgeslim.recipe",
    "parse_quant": "edgeslim.recipe",
}
__all__ = [
    "FORMATS",
    "TARGETS",
    "Artifact",
    "ExportOptions",
    "ExportVerificationError",
    "QuantRecipe",
    "export_model",
    "parse_quant",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_HOMES[name]), name)
