"""ONNX export: float32 and float16, int8 QDQ (``quantize_static``) and dynamic int8 (``quantize_dynamic``).

tf2onnx's ``from_keras`` breaks on Keras 3 models; ``from_function`` on a traced ``tf.function`` works.
The opset is fixed on purpose (see ``OPSET``) and recorded in the sidecar.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeslim.errors import EdgeslimError
from edgeslim.export.format import Format
from edgeslim.export.keras_graph import input_name, tensor_specs
from edgeslim.export.native_output import stdout_to_stderr
from edgeslim.export.quant import QuantRecipe

if TYPE_CHECKING:
    import keras

# Opset 17: the newest tf2onnx 1.17 writes without gaps (its ceiling is 18); onnxruntime runs it
# from 1.12, TensorRT from 8.6; per-channel QDQ needs 13 or more. Change it here, nowhere else.
OPSET = 17
MODES = ("float32", "float16", "int8", "dynamic")
OUTPUT_NAME = "output"


def convert(
    model: keras.Model, recipe: QuantRecipe, calibration: np.ndarray | None, batch: int | None
) -> tuple[bytes, dict[str, Any]]:
    if recipe.mode not in MODES:
        raise EdgeslimError(
            f"ONNX export cannot write quant mode {recipe.mode!r}",
            f"choose one of {list(MODES)} (int16x8 is TFLite only)",
        )
    with stdout_to_stderr():
        proto = _float_model(model, batch)
        if recipe.mode == "float16":
            from onnxruntime.transformers.float16 import convert_float_to_float16

            # Float inputs and outputs stay float32, so the same data feeds every artifact.
            proto = convert_float_to_float16(proto, keep_io_types=True)
        elif recipe.mode in ("int8", "dynamic"):
            proto = _quantized(proto, recipe, calibration, input_name(model))
    extras = {
        "onnx_opset": OPSET,
        "onnx_ir_version": int(proto.ir_version),
        "calibration_method": recipe.calibration if recipe.mode == "int8" else None,
        "quant_format": {"int8": "QDQ", "dynamic": "dynamic (ConvInteger/MatMulInteger)"}.get(recipe.mode),
    }
    return proto.SerializeToString(), extras


def _float_model(model: keras.Model, batch: int | None) -> Any:
    import tensorflow as tf
    import tf2onnx

    function = tf.function(lambda x: model(x, training=False))
    try:
        proto, _ = tf2onnx.convert.from_function(
            function, input_signature=tensor_specs(model, batch), opset=OPSET
        )
    except Exception as exc:  # noqa: BLE001 - tf2onnx raises many types for unsupported graphs
        raise EdgeslimError(
            f"tf2onnx could not convert model {model.name!r}: {str(exc).strip().splitlines()[0][:300]}",
            "the model may use an op ONNX opset 17 lacks; export --format tflite instead",
        ) from None
    _rename_outputs(proto)
    return proto


def _rename_outputs(proto: Any) -> None:
    """tf2onnx names outputs after TF tensors ('Identity:0'); give them stable names."""
    outputs = list(proto.graph.output)
    renames = {
        o.name: OUTPUT_NAME if len(outputs) == 1 else f"{OUTPUT_NAME}_{i}" for i, o in enumerate(outputs)
    }
    for node in proto.graph.node:
        node.output[:] = [renames.get(n, n) for n in node.output]
        node.input[:] = [renames.get(n, n) for n in node.input]
    for out in proto.graph.output:
        out.name = renames[out.name]


def _quantized(proto: Any, recipe: QuantRecipe, calibration: np.ndarray | None, name: str) -> Any:
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    with tempfile.TemporaryDirectory(prefix="edgeslim-onnx-") as tmp:
        src, pre, out = Path(tmp) / "float.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "quant.onnx"
        onnx.save(proto, src)
        _pre_process(src, pre)
        if recipe.mode == "dynamic":
            quantize_dynamic(pre, out, per_channel=recipe.per_channel, weight_type=QuantType.QInt8)
        else:
            if calibration is None or not len(calibration):
                raise EdgeslimError("ONNX int8 quantization needs calibration samples", "pass a dataset")
            method = {
                "minmax": CalibrationMethod.MinMax,
                "entropy": CalibrationMethod.Entropy,
                "percentile": CalibrationMethod.Percentile,
            }[recipe.calibration]
            quantize_static(
                pre,
                out,
                _Reader(name, calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=recipe.per_channel,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=method,
            )
        return onnx.load(out)


def _pre_process(src: Path, dst: Path) -> None:
    """Shape inference and graph cleanup that make quantization per-channel and complete."""
    from onnxruntime.quantization import quant_pre_process

    try:
        quant_pre_process(src, dst)
    except Exception:  # noqa: BLE001 - symbolic shape inference needs sympy and fails on some graphs
        quant_pre_process(src, dst, skip_symbolic_shape=True)


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over the representative samples, one per step."""

    def __init__(self, name: str, samples: np.ndarray) -> None:
        self.name, self.samples, self.i = name, np.asarray(samples, np.float32), 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.samples):
            return None
        self.i += 1
        return {self.name: self.samples[self.i - 1 : self.i]}

    def rewind(self) -> None:
        self.i = 0


FORMAT = Format("onnx", ".onnx", MODES, convert, "ONNX (opset 17) for ONNX Runtime")
