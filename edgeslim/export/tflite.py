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
from edgeslim.export.native_output import silenced_stderr, stdout_to_stderr
from edgeslim.export.refusal import TFLITE_CALIBRATOR, first_line, raised_at
from edgeslim.export.tflite_compact import compact
from edgeslim.recipe import QuantRecipe
from edgeslim.runtime.tflite_file import read_tflite

if TYPE_CHECKING:
    import keras

MODES = ("float32", "float16", "dynamic", "int8", "int16x8")
TFLM_ARENA_FACTOR = 10  # the check's arena: what tflite-micro itself assumes without a measured one
TFLM_MIN_ARENA = 1 << 20


def convert(
    model: keras.Model, recipe: QuantRecipe, calibration: Any, batch: int | None
) -> tuple[bytes, dict[str, Any]]:
    """``calibration``: representative samples (one array, or a dict by input name) for int8/int16x8."""
    import tensorflow as tf

    from edgeslim.export.recurrent import describe, plan_for_tflite  # Keras: imported when converting

    if recipe.mode not in MODES:
        raise EdgeslimError(f"TFLite cannot write quant mode {recipe.mode!r}", f"choose one of {list(MODES)}")
    options = _converter_options(recipe, calibration)
    extras: dict[str, Any] = {
        "converter": f"tensorflow {tf.__version__} TFLiteConverter via keras.Model.export(format='litert')",
        "calibration_method": "minmax" if recipe.needs_calibration else None,
    }
    plan = plan_for_tflite(model)
    if plan is None:
        return _converted(model, options, batch, recipe), extras
    used_batch = 1 if plan.wants_static_batch and batch is None else batch
    fallback = None
    try:
        data = _export(plan.model, options, used_batch)
    except (converter_error(), RuntimeError) as exc:
        if not refused_by_converter(exc):
            raise
        if not plan.fused:
            raise _refusal(exc, recipe) from None
        # The fused LSTM has no kernel for this mode (int16x8, say): unroll every recurrence instead.
        fallback = (
            f"the fused LSTM did not convert in mode {recipe.mode} ({first_line(exc)}); unrolled instead"
        )
        plan = plan_for_tflite(model, fuse=False)
        assert plan is not None
        used_batch = batch
        data = _converted(plan.model, options, used_batch, recipe)
    record = describe(plan, read_tflite(data, "tflite export").op_names())
    if plan.unrolled:  # one copy of the cell's ops per step: mostly names and repeated tables
        converted_bytes, data = len(data), compact(data)
        record["compacted"] = {"converter_bytes": converted_bytes, "bytes": len(data)}
    record.update({"batch": used_batch, "fallback": fallback})
    if recipe.needs_calibration:
        record["integer_path"] = _integer_path(recipe.mode, record["fused_lstm_ops"])
        record["tflm"] = tflm_check(data)
    extras["recurrent"] = record
    return data, extras


def _converter_options(recipe: QuantRecipe, calibration: Any) -> dict[str, Any]:
    import tensorflow as tf

    options: dict[str, Any] = {"target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}}
    if recipe.mode != "float32":
        options["optimizations"] = [tf.lite.Optimize.DEFAULT]
    if recipe.mode == "float16":
        options["target_spec"]["supported_types"] = [tf.float16]
    if recipe.needs_calibration:
        if calibration is None or not _rows(calibration):
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
    return options


def _converted(model: keras.Model, options: dict[str, Any], batch: int | None, recipe: QuantRecipe) -> bytes:
    """The converted bytes; a model the converter refuses is the user's EdgeslimError, anything else a bug."""
    try:
        return _export(model, options, batch)
    except (converter_error(), RuntimeError) as exc:
        if not refused_by_converter(exc):
            raise
        raise _refusal(exc, recipe) from None


def _refusal(exc: BaseException, recipe: QuantRecipe) -> EdgeslimError:
    return EdgeslimError(
        f"the TFLite converter failed for mode {recipe.mode}: {first_line(exc)}",
        "the model may use an op TFLite builtins lack; try --quant float32 or simplify that layer",
    )


def _export(model: keras.Model, options: dict[str, Any], batch: int | None) -> bytes:
    with tempfile.TemporaryDirectory(prefix="edgeslim-tflite-") as tmp, stdout_to_stderr():
        path = Path(tmp) / "model.tflite"
        model.export(
            str(path), format="litert", verbose=False, input_signature=tensor_specs(model, batch), **options
        )
        return path.read_bytes()


def converter_error() -> type[Exception]:
    """The TFLite converter's own error type (it has no public alias); imported with TensorFlow."""
    from tensorflow.lite.python.convert_phase import ConverterError

    return ConverterError


def refused_by_converter(exc: BaseException) -> bool:
    """Whether the TFLite converter itself rejected the model, as opposed to a bug in the code calling it.

    The converter raises ConverterError for graphs it cannot lower (an op without a builtin kernel),
    and its calibrator a RuntimeError from its C++ quantizer for ops without a kernel in the chosen
    mode ("Quantization to 16x8-bit not yet supported for op: 'UNIDIRECTIONAL_SEQUENCE_LSTM'"). A
    RuntimeError raised anywhere else (our representative data failing to run, say) is a bug.
    """
    if isinstance(exc, converter_error()):
        return True
    # Only its quantizer's refusals: a failed calibration run (data of the wrong shape) is our bug.
    return isinstance(exc, RuntimeError) and raised_at(exc, TFLITE_CALIBRATOR, "QuantizeModel")


def tflm_check(data: bytes) -> dict[str, Any]:
    """Whether TFLite Micro's interpreter runs one inference of this file, and if not, why."""
    try:
        from edgeslim.runtime.tflm import tflm_interpreter

        with silenced_stderr():  # a failed allocation prints TFLite Micro's whole memory plan
            interp = tflm_interpreter(data, max(TFLM_MIN_ARENA, TFLM_ARENA_FACTOR * len(data)))
            for index in range(len(read_tflite(data, "tflite export").inputs)):
                detail = interp.get_input_details(index)
                interp.set_input(np.zeros(detail["shape"], detail["dtype"]), index)
            interp.invoke()
    except ImportError:
        return {"runs": None, "note": "not checked: TFLite Micro (the mcu extra) is not installed"}
    except (RuntimeError, ValueError) as exc:
        return {
            "runs": False,
            "note": f"TFLite Micro does not run this file ({first_line(exc)}); its kernels need a static "
            "batch and full-integer ops: export with --target mcu",
        }
    return {"runs": True, "note": "runs in TFLite Micro (one inference checked)"}


def _integer_path(mode: str, fused_ops: int) -> str:
    if fused_ops and mode == "int8":
        return "full int8: UNIDIRECTIONAL_SEQUENCE_LSTM with int8 weights and activations, 16-bit cell state"
    return f"full {mode} on unrolled builtin ops (fully connected, logistic, tanh, mul, add)"


def _representative(samples: Any) -> Any:
    named = isinstance(samples, dict)
    arrays = (
        {k: np.asarray(v, np.float32) for k, v in samples.items()}
        if named
        else np.asarray(samples, np.float32)
    )

    def gen() -> Iterator[Any]:
        for i in range(_rows(arrays)):  # one sample per step: the calibrator resizes to batch 1
            # Several inputs go by name, the input signature's keys; one input positionally.
            yield {k: v[i : i + 1] for k, v in arrays.items()} if named else [arrays[i : i + 1]]

    return gen


def _rows(samples: Any) -> int:
    return len(next(iter(samples.values()))) if isinstance(samples, dict) else len(samples)


FORMAT = Format("tflite", ".tflite", MODES, convert, "LiteRT / TFLite flatbuffer")
