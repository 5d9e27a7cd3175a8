"""Export a Keras model to TFLite (LiteRT) and ONNX for a deployment target, and verify each file.

    artifacts = export_model(model, dataset, target="cpu", out_dir="exports/cpu")

Each artifact is written with a JSON sidecar (``<file>.json``) holding everything a runtime needs:
input/output specs with quantization parameters, preprocessing, class names, hashes, tool versions
and the verification results. Importing this package does not import TensorFlow.
"""

from edgeslim.export.api import ExportVerificationError, export_model
from edgeslim.export.artifact import Artifact
from edgeslim.export.registry import FORMATS, TARGETS
from edgeslim.recipe import QuantRecipe, parse_quant

__all__ = [
    "FORMATS",
    "TARGETS",
    "Artifact",
    "ExportVerificationError",
    "QuantRecipe",
    "export_model",
    "parse_quant",
]
