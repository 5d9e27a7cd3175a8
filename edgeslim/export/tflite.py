"""TFLite (LiteRT) export: float32, float16, dynamic-range, full-integer int8 and int16x8.

Keras 3's own ``model.export(format="litert")`` traces the model into a SavedModel and hands every
keyword to the TFLite converter; we pass builtin ops only (no Flex ops, which LiteRT, the Edge TPU
and TFLite Micro cannot run) and, for full-integer modes, a representative dataset.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeslim.errors import EdgeslimError
from edgeslim.export.format import Format
from edgeslim.export.keras_graph import tensor_specs
from edgeslim.export.native_output import stdout_to_stderr
from edgeslim.export.quant import QuantRecipe

if TYPE_CHECKING:
    import keras

MODES = ("float32", "float16", "dynamic", "int8", "int16x8")


def convert(
    model: keras.Model, recipe: QuantRecipe, calibration: np.ndarray | None, batch: int | None
) -> tuple[bytes, dict[str, Any]]:
    import tensorflow as tf

    if recipe.mode not in MODES:
        raise EdgeslimError(f"TFLite cannot write quant mode {recipe.mode!r}", f"choose one of {list(MODES)}")
    options: dict[str, Any] = {"target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}}
    if recipe.mode != "float32":
        options["optimizations"] = [tf.lite.Optimize.DEFAULT]
    if recipe.mode == "float16":
        options["target_spec"]["supported_types"] = [tf.float16]
    if recipe.needs_calibration:
        if calibration is None or not len(calibration):
            raise EdgeslimError(f"quant mode {recipe.mode} needs calibration samples", "pass a dataset")
        options["representative_dataset"] = _representative(calibration)
        if recipe.mode == "int8":
            io_type = tf.int8 if recipe.io_dtype == "int8" else tf.uint8
            options["target_spec"]["supported_ops"] = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        else:
            io_type = tf.int16
            options["target_spec"]["supported_ops"] = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            ]
        options["inference_input_type"] = io_type
        options["inference_output_type"] = io_type
        if not recipe.per_channel:
            options["_experimental_disable_per_channel"] = True
    with tempfile.TemporaryDirectory(prefix="edgeslim-tflite-") as tmp, stdout_to_stderr():
        path = Path(tmp) / "model.tflite"
        try:
            model.export(
                str(path),
                format="litert",
                verbose=False,
                input_signature=tensor_specs(model, batch),
                **options,
            )
        except Exception as exc:  # noqa: BLE001 - the converter raises ConverterError, ValueError, RuntimeError...
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise EdgeslimError(
                f"the TFLite converter failed for mode {recipe.mode}: {first}",
                "the model may use an op TFLite builtins lack; try --quant float32 or simplify that layer",
            ) from None
        data = path.read_bytes()
    extras = {
        "converter": f"tensorflow {tf.__version__} TFLiteConverter via keras.Model.export(format='litert')",
        "calibration_method": "minmax" if recipe.needs_calibration else None,
    }
    return data, extras


def _representative(samples: np.ndarray) -> Any:
    samples = np.asarray(samples, np.float32)

    def gen() -> Iterator[list[np.ndarray]]:
        for i in range(len(samples)):  # one sample per step: the calibrator resizes to batch 1
            yield [samples[i : i + 1]]

    return gen


FORMAT = Format("tflite", ".tflite", MODES, convert, "LiteRT / TFLite flatbuffer")
