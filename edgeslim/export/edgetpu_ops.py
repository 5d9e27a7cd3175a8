"""Which ops of a full-int8 ``.tflite`` the Coral Edge TPU compiler would map, predicted from Coral's table.

Source: coral.ai/docs/edgetpu/models-intro ("Supported operations" and "Model requirements"): the
model must be fully 8-bit quantized with static shapes; only the 3 innermost dimensions of a tensor
may exceed 1; only the ops below map, with the limits noted. The compiler partitions once: the first
op it cannot map, and every op after it, runs on the CPU. This module is TensorFlow-free.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgeslim.runtime.tflite_file import TFLiteModelInfo, TFLiteOp, read_tflite

PARAMETER_CACHE_BYTES = 8 * 1024 * 1024  # on-chip memory; larger models stream weights every inference
SOFTMAX_MAX_ELEMENTS = 16_000

Check = Callable[[TFLiteOp, TFLiteModelInfo], str | None]


def _no_fused_activation(op: TFLiteOp, info: TFLiteModelInfo) -> str | None:
    act = op.options.get("fused_activation", "NONE")
    return None if act == "NONE" else f"fused activation {act} is not supported on {op.op}"


def _one_dimensional_output(op: TFLiteOp, info: TFLiteModelInfo) -> str | None:
    out = info.tensors[op.outputs[0]]
    return None if _effective_rank(out.shape) <= 1 else f"output {out.shape} is not one-dimensional"


def _softmax_limits(op: TFLiteOp, info: TFLiteModelInfo) -> str | None:
    t = info.tensors[op.inputs[0]]
    if _effective_rank(t.shape) > 1:
        return f"input {t.shape} is not one-dimensional"
    return (
        None
        if t.elements <= SOFTMAX_MAX_ELEMENTS
        else f"input has {t.elements} > {SOFTMAX_MAX_ELEMENTS} elements"
    )


def _ok(op: TFLiteOp, info: TFLiteModelInfo) -> str | None:
    return None


# Ops that map with no limit beyond the model-wide ones (8-bit, static, at most 3 dimensions above 1).
_PLAIN_OPS = """
    ADD SUB MUL MAXIMUM MINIMUM SQUARED_DIFFERENCE CONV_2D DEPTHWISE_CONV_2D TRANSPOSE_CONV LOGISTIC
    TANH RELU RELU6 RELU_N1_TO_1 PRELU L2_NORMALIZATION MEAN SUM REDUCE_MAX REDUCE_MIN PAD RESHAPE
    SQUEEZE EXPAND_DIMS PACK SLICE STRIDED_SLICE SPLIT SPACE_TO_DEPTH TRANSPOSE RESIZE_BILINEAR
    RESIZE_NEAREST_NEIGHBOR RSQRT QUANTIZE UNIDIRECTIONAL_SEQUENCE_LSTM
"""
SUPPORTED: dict[str, Check] = {
    **{op: _ok for op in _PLAIN_OPS.split()},
    "AVERAGE_POOL_2D": _no_fused_activation,
    "MAX_POOL_2D": _no_fused_activation,
    "CONCATENATION": _no_fused_activation,
    "FULLY_CONNECTED": _one_dimensional_output,
    "SOFTMAX": _softmax_limits,
}

# What to change, per op the Edge TPU cannot run.
ADVICE: dict[str, str] = {
    "SHAPE": "export with a static batch size of 1 (the edgetpu target does): a dynamic batch adds SHAPE ops",
    "DEQUANTIZE": "8-bit data turns float here: a following op has no int8 kernel (replace it, see below) "
    "or the output is float (keep io_dtype int8 or uint8)",
    "QUANTIZE": "float data turns 8-bit here: replace the float op before it, or feed int8/uint8 input",
    "ELU": "replace ELU with ReLU or ReLU6",
    "HARD_SWISH": "replace hard-swish with ReLU6",
    "GELU": "replace GELU with ReLU",
    "LEAKY_RELU": "replace LeakyReLU with ReLU or PReLU",
    "EXP": "move the exponential to post-processing on the CPU, after the last TPU op",
    "LOG_SOFTMAX": "use Softmax, or drop it and take the argmax of the logits",
    "GATHER": "replace the gather with a supported Slice/StridedSlice",
    "BATCH_MATMUL": "replace the batched matmul with a Dense (FullyConnected) layer",
    "DIV": "multiply by a constant reciprocal instead of dividing",
}
GENERIC_ADVICE = (
    "replace it with a supported op, or move it to the end of the model so only it runs on the CPU"
)


def _effective_rank(shape: list[int]) -> int:
    return sum(1 for d in shape if d > 1)


def op_problem(op: TFLiteOp, info: TFLiteModelInfo) -> str | None:
    """Why ``op`` cannot map to the Edge TPU, or None if it can (per Coral's table and limits)."""
    if op.op not in SUPPORTED:
        return "operation not supported by the Edge TPU"
    for index in op.inputs + op.outputs:
        if index < 0:
            continue
        t = info.tensors[index]
        constant = t.data_bytes > 0
        if any(d < 0 for d in t.shape_signature):
            return f"tensor {t.name!r} has a dynamic shape {t.shape_signature}"
        if not constant and t.type not in ("INT8", "UINT8"):
            return f"tensor {t.name!r} is {t.type}, not 8-bit quantized"
        if constant and t.type not in ("INT8", "UINT8", "INT32"):
            return f"constant {t.name!r} is {t.type}, not quantized"
        if not constant and _effective_rank(t.shape) > 3:
            return f"tensor {t.name!r} {t.shape} has more than 3 dimensions above 1 (unsupported rank)"
    return SUPPORTED[op.op](op, info)


def analyze_edgetpu(data: bytes, source: str = "model") -> dict[str, Any]:
    """The predicted mapping: every op in execution order, where it runs and why, and what to change."""
    info = read_tflite(data, source)
    rows: list[dict[str, Any]] = []
    first_unmapped: dict[str, Any] | None = None
    for op in info.ops:
        problem = op_problem(op, info)
        if problem and first_unmapped is None:
            first_unmapped = {"index": op.index, "op": op.op, "reason": problem}
        if first_unmapped is None:
            rows.append({"index": op.index, "op": op.op, "runs_on": "edgetpu", "reason": None})
        else:
            reason = (
                problem or f"after the first unmapped op ({first_unmapped['op']} #{first_unmapped['index']})"
            )
            rows.append({"index": op.index, "op": op.op, "runs_on": "cpu", "reason": reason})
    mapped = sum(1 for r in rows if r["runs_on"] == "edgetpu")
    param_bytes = sum(t.data_bytes for t in info.tensors)
    advice = _advice(rows, first_unmapped, param_bytes)
    return {
        "mapped_ops": mapped,
        "total_ops": len(rows),
        "mapped_fraction": mapped / len(rows) if rows else 0.0,
        "first_unmapped": first_unmapped,
        "ops": rows,
        "unsupported": sorted({r["op"] for r in rows if r["reason"] and not r["reason"].startswith("after")}),
        "param_bytes": param_bytes,
        "prediction": True,
        "advice": advice,
    }


def _advice(rows: list[dict[str, Any]], first: dict[str, Any] | None, param_bytes: int) -> list[str]:
    advice: list[str] = []
    if first is not None:
        advice.append(
            f"op #{first['index']} {first['op']} cannot map ({first['reason']}); it and the "
            f"{len(rows) - first['index'] - 1} ops after it run on the CPU"
        )
        seen = set()
        for row in rows:
            if row["reason"] and not row["reason"].startswith("after") and row["op"] not in seen:
                seen.add(row["op"])
                advice.append(f"{row['op']}: {ADVICE.get(row['op'], GENERIC_ADVICE)}")
    if param_bytes > PARAMETER_CACHE_BYTES:
        advice.append(
            f"parameters take {param_bytes / 2**20:.1f} MiB, more than the ~8 MiB on-chip cache: "
            "they stream from host memory on every inference (prune or slim the model)"
        )
    return advice
