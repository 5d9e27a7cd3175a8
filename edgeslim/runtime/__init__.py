"""The TensorFlow-free runtime: load an exported ``.tflite`` or ``.onnx`` file and run it on float data.

Nothing here imports TensorFlow or Keras (a test enforces it), so a Raspberry Pi needs only numpy,
ai-edge-litert and onnxruntime; TFLite Micro's interpreter comes with the ``mcu`` extra.

    model = edgeslim.runtime.load("model_int8.tflite")
    probabilities = model.predict(x)          # float in, float out, any batch size
"""

from edgeslim.runtime.errors import RuntimeModelError
from edgeslim.runtime.loader import BACKENDS, load
from edgeslim.runtime.measure import benchmark, evaluate
from edgeslim.runtime.model import RuntimeModel
from edgeslim.runtime.spec import TensorSpec

__all__ = ["BACKENDS", "RuntimeModel", "RuntimeModelError", "TensorSpec", "benchmark", "evaluate", "load"]
