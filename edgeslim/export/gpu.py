"""The ``gpu`` target: float16 TFLite for the GPU delegate, float ONNX for the CUDA/TensorRT providers.

GPU kernels compute in float16 or float32; integer models would be dequantized op by op, so the
target refuses integer modes instead of producing a slow artifact.
"""

from __future__ import annotations

from edgeslim.export.target import Target


class GpuTarget(Target):
    name = "gpu"
    description = "GPUs: float16 TFLite (GPU delegate), float16/float32 ONNX (CUDA or TensorRT providers)"
    defaults = {"tflite": "float16", "onnx": "float16"}
    allowed = {"tflite": ("float16", "float32"), "onnx": ("float16", "float32")}
    why = "GPU delegates and the CUDA/TensorRT providers run float16 or float32 models"


TARGET = GpuTarget()
