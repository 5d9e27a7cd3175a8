"""ONNX export: float32 and float16, int8 QDQ (``quantize_static``) and dynamic int8 (``quantize_dynamic``).

tf2onnx's ``from_keras`` breaks on Keras 3 models; ``from_function`` on a traced ``tf.function`` works.
The opset is fixed on purpose (see ``OPSET``) and recorded in the sidecar.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeslim.errors import EdgeslimError
from edgeslim.export.format import Format
from edgeslim.export.keras_graph import input_specs, tensor_specs
from edgeslim.export.native_output import stdout_to_stderr
from edgeslim.export.refusal import ONNXRUNTIME_SHAPE_INFERENCE, TF2ONNX, first_line, raised_inside
from edgeslim.recipe import QuantRecipe

if TYPE_CHECKING:
    import keras

# Opset 17: the newest tf2onnx 1.17 writes without gaps (its ceiling is 18); onnxruntime runs it
# from 1.12, TensorRT from 8.6; per-channel QDQ needs 13 or more. Change it here, nowhere else.
OPSET = 17
MODES = ("float32", "float16", "int8", "dynamic")
OUTPUT_NAME = "output"
RECURRENT_OPS = {"LSTM", "GRU", "RNN", "Loop", "Scan"}


def convert(
    model: keras.Model, recipe: QuantRecipe, calibration: Any, batch: int | None
) -> tuple[bytes, dict[str, Any]]:
    """``calibration``: representative samples (one array, or a dict by input name) for int8."""
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
            proto = _quantized(proto, recipe, calibration, list(input_specs(model)))
    extras: dict[str, Any] = {
        "onnx_opset": OPSET,
        "onnx_ir_version": int(proto.ir_version),
        "calibration_method": recipe.calibration if recipe.mode == "int8" else None,
        "quant_format": {"int8": "QDQ", "dynamic": "dynamic (ConvInteger/MatMulInteger)"}.get(recipe.mode),
    }
    recurrent = sorted({node.op_type for node in _nodes(proto.graph)} & RECURRENT_OPS)
    if recurrent:  # tf2onnx rewrote the Keras loops into these; the sidecar says which
        extras["recurrent_ops"] = recurrent
    return proto.SerializeToString(), extras


def _float_model(model: keras.Model, batch: int | None) -> Any:
    import tensorflow as tf
    import tf2onnx

    function = tf.function(lambda x: model(x, training=False))
    specs = tensor_specs(model, batch)
    try:
        proto, _ = tf2onnx.convert.from_function(function, input_signature=specs, opset=OPSET)
    except Exception as exc:
        # tf2onnx's op handlers raise many types for graphs they cannot map; an error raised while
        # tracing the model (Keras, TensorFlow) or by our code is a bug and keeps its traceback.
        if not raised_inside(exc, TF2ONNX):
            raise
        raise EdgeslimError(
            f"tf2onnx could not convert model {model.name!r}: {first_line(exc)}",
            "the model may use an op ONNX opset 17 lacks; export --format tflite instead",
        ) from None
    # An op tf2onnx cannot map is only logged and left in the graph under its TensorFlow name.
    unmapped = sorted({n.op_type for n in _nodes(proto.graph) if not _known_op(n)})
    if unmapped:
        raise EdgeslimError(
            f"tf2onnx has no ONNX opset {OPSET} op for {unmapped} in model {model.name!r}",
            "replace the layers that use them, or export --format tflite instead",
        )
    _inline_captured_constants(proto, function.get_concrete_function(*specs))  # the trace tf2onnx used
    _rename_outputs(proto)
    return proto


def _inline_captured_constants(proto: Any, concrete: Any) -> None:
    """Tensors the traced function captured by value (a Normalization's mean and variance, say) are
    constants, but tf2onnx lists every non-variable capture as a graph input: make them initializers,
    so the file takes the model's inputs only."""
    import tensorflow as tf
    from onnx import numpy_helper

    values = {
        internal.name: external
        for external, internal in concrete.graph.captures
        if external.dtype != tf.resource and hasattr(external, "numpy")
    }
    for graph_input in list(proto.graph.input):
        if graph_input.name in values:
            proto.graph.initializer.append(
                numpy_helper.from_array(values[graph_input.name].numpy(), graph_input.name)
            )
            proto.graph.input.remove(graph_input)


def _nodes(graph: Any) -> list[Any]:
    """Every node, those in subgraphs (Loop and If bodies) included."""
    found = []
    for node in graph.node:
        found.append(node)
        for attribute in node.attribute:
            for sub in [attribute.g, *attribute.graphs] if attribute.HasField("g") else attribute.graphs:
                found += _nodes(sub)
    return found


def _known_op(node: Any) -> bool:
    import onnx

    domain = node.domain or ""
    if domain not in ("", "ai.onnx"):
        return True  # contrib domains (com.microsoft) are ONNX Runtime's, checked when it loads the file
    return bool(onnx.defs.has(node.op_type, domain))


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


def _quantized(proto: Any, recipe: QuantRecipe, calibration: Any, names: list[str]) -> Any:
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
        # Symbolic shape inference leaves temporary files in the working directory when it gives up
        # on a graph (sym_shape_infer_temp.onnx and a .data file): let it leave them in ours.
        with contextlib.chdir(tmp):
            _pre_process(src, pre)
        if recipe.mode == "dynamic":
            quantize_dynamic(pre, out, per_channel=recipe.per_channel, weight_type=QuantType.QInt8)
        else:
            if calibration is None or not _rows(calibration):
                raise EdgeslimError("ONNX int8 quantization needs calibration samples", "pass a dataset")
            overrides = {}
            if recipe.calibration != "minmax":
                ranges = calibrated_ranges(pre, names, calibration, recipe.calibration, Path(tmp))
                overrides = {
                    n: [{"rmin": np.float32(lo), "rmax": np.float32(hi)}] for n, (lo, hi) in ranges.items()
                }
            quantize_static(
                pre,
                out,
                _Reader(names, calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=recipe.per_channel,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"TensorQuantOverrides": overrides} if overrides else None,
            )
        return onnx.load(out)


# quantize_static passes no histogram settings to its calibrators, and its entropy default (128 bins
# searched over 128 quantized bins) has no threshold to try below the maximum: its scales came out
# equal to min/max's. These are the settings the entropy method is defined with (TensorRT's: 2048
# bins, 128 levels per side), and a percentile that clips the last 0.01 %.
CALIBRATION_SETTINGS = {
    "entropy": {"num_bins": 2048, "num_quantized_bins": 128},
    "percentile": {"num_bins": 2048, "percentile": 99.99, "symmetric": False},
}


def calibrated_ranges(model: Path, names: list[str], samples: Any, method: str, work: Path) -> dict:
    """{tensor: (min, max)} from onnxruntime's entropy or percentile calibrator, run with its settings."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    kind = {"entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}[method]
    calibrator = create_calibrator(
        model,
        augmented_model_path=work / f"augmented-{method}.onnx",
        calibrate_method=kind,
        extra_options=CALIBRATION_SETTINGS[method],
    )
    calibrator.collect_data(_Reader(names, samples))
    ranges = {
        name: tuple(float(v) for v in data.range_value) for name, data in calibrator.compute_data().items()
    }
    # The model's outputs keep min/max: clipping a softmax's top probability makes argmax ties.
    import onnx

    outputs = {o.name for o in onnx.load(model).graph.output}
    return {name: (min(lo, 0.0), max(hi, 0.0)) for name, (lo, hi) in ranges.items() if name not in outputs}


def _pre_process(src: Path, dst: Path) -> None:
    """Shape inference and graph cleanup that make quantization per-channel and complete."""
    from onnxruntime.quantization import quant_pre_process

    try:
        quant_pre_process(src, dst)
    except ImportError:  # symbolic shape inference needs sympy; ONNX's own shape inference still runs
        quant_pre_process(src, dst, skip_symbolic_shape=True)
    except Exception as exc:
        # onnxruntime's symbolic shape inference gives up on some graphs (a plain Exception,
        # "Incomplete symbolic shape inference", or a ValueError); anything else is a bug.
        if not raised_inside(exc, ONNXRUNTIME_SHAPE_INFERENCE):
            raise
        quant_pre_process(src, dst, skip_symbolic_shape=True)


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over the representative samples, one per step."""

    def __init__(self, names: list[str], samples: Any) -> None:
        # Several inputs come as a dict by input name (the ONNX inputs carry the model's input names).
        arrays = samples if isinstance(samples, dict) else {names[0]: samples}
        self.samples = {name: np.asarray(arrays[name], np.float32) for name in names}
        self.rows, self.i = _rows(self.samples), 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= self.rows:
            return None
        self.i += 1
        return {name: a[self.i - 1 : self.i] for name, a in self.samples.items()}

    def rewind(self) -> None:
        self.i = 0


def _rows(samples: Any) -> int:
    return len(next(iter(samples.values()))) if isinstance(samples, dict) else len(samples)


FORMAT = Format("onnx", ".onnx", MODES, convert, "ONNX (opset 17) for ONNX Runtime")
