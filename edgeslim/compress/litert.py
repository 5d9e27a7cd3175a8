"""A small LiteRT round trip for the compression stages' own measurements.

The deployable artifacts are the export step's job (edgeslim.export); this module only converts a
model in memory to measure what a stage changed in the file (pruning's zeros under gzip and under
LiteRT's sparse encoding) and to check accuracy under a quantization recipe (QAT's tests).
"""

from __future__ import annotations

import gzip
import os
import tempfile
from typing import Any

import keras
import numpy as np

from edgeslim.compress.recipe import normalize_recipe


def to_tflite(
    model: keras.Model,
    recipe: str | dict[str, Any] | None = None,
    representative: np.ndarray | None = None,
    sparse: bool = False,
) -> bytes:
    """Convert with ``model.export(format="litert")``; ``sparse`` adds LiteRT's sparse weight encoding."""
    import tensorflow as tf

    spec = normalize_recipe(recipe or "float32")
    mode = spec["mode"]
    options: dict[str, Any] = {}
    optimizations = [] if mode == "float32" else [tf.lite.Optimize.DEFAULT]
    if sparse:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    if optimizations:
        options["optimizations"] = optimizations
    if mode == "float16":
        options["target_spec"] = {"supported_types": [tf.float16]}
    if mode in ("int8", "int16x8"):
        if representative is None:
            raise ValueError(f"quantization mode {mode} needs representative samples")
        samples = np.asarray(representative[: spec["calib_samples"]], dtype=np.float32)
        options["representative_dataset"] = lambda: ([s[None]] for s in samples)
        if mode == "int8":
            io = tf.int8 if spec["io_dtype"] == "int8" else tf.uint8
            options["target_spec"] = {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]}
            options["inference_input_type"] = io
            options["inference_output_type"] = io
        else:
            ops16 = tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            options["target_spec"] = {"supported_ops": [ops16]}
        if not spec["per_channel"]:
            options["_experimental_disable_per_channel"] = True
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.tflite")
        model.export(path, format="litert", verbose=False, **options)
        with open(path, "rb") as f:
            return f.read()


def sizes(data: bytes) -> dict[str, int]:
    return {"bytes": len(data), "gzip_bytes": len(gzip.compress(data, compresslevel=9))}


def tflite_predict(data: bytes, x: np.ndarray) -> np.ndarray:
    """Run a .tflite (any quantization) on ``x`` in one invoke; outputs dequantized to float."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data)
    inp = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(inp["index"], [len(x), *inp["shape"][1:]])
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    values = x.astype(np.float32)
    scale, zero = inp["quantization"]
    if np.issubdtype(inp["dtype"], np.integer) and scale:
        info = np.iinfo(inp["dtype"])
        values = np.clip(np.round(values / scale + zero), info.min, info.max)
    interpreter.set_tensor(inp["index"], values.astype(inp["dtype"]))
    interpreter.invoke()
    result = interpreter.get_tensor(out["index"]).astype(np.float32)
    scale, zero = out["quantization"]
    return (result - zero) * scale if np.issubdtype(out["dtype"], np.integer) and scale else result


def tflite_accuracy(data: bytes, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(tflite_predict(data, x), axis=-1) == y))
