"""Model analysis: per-layer parameters, multiplications and sparsity (Keras here; .tflite/.onnx too)."""

from edgeslim.analysis.stats import LayerStats, ModelStats

__all__ = ["LayerStats", "ModelStats"]
