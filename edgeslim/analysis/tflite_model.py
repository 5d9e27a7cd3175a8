"""What a ``.tflite`` file holds: ops in execution order, tensor types, parameter counts and bytes.

TensorFlow-free (the flatbuffer is read in pure Python), so ``edgeslim inspect`` works on a device.
"""

from __future__ import annotations

from collections import Counter
from math import prod
from pathlib import Path
from typing import Any

from edgeslim.runtime.errors import RuntimeModelError
from edgeslim.runtime.tflite_file import TFLiteModelInfo, TFLiteOp, read_tflite

# Ops whose multiplications are counted: output elements times the weights each output reads.
WEIGHTED = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D"}


def analyze_tflite(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise RuntimeModelError(f"{path}: no such file", "check the path")
    info = read_tflite(path.read_bytes(), str(path))
    constants = [t for t in info.tensors if t.data_bytes > 0]
    param_bytes_by_type: Counter[str] = Counter()
    for t in constants:
        param_bytes_by_type[t.type] += t.data_bytes
    activations = [t for t in info.tensors if t.data_bytes == 0]
    return {
        "path": str(path),
        "format": "tflite",
        "bytes": info.size,
        "schema_version": info.version,
        "subgraphs": info.subgraphs,
        "ops": [op.to_dict() | {"multiplications": op_multiplications(info, op)} for op in info.ops],
        "op_counts": dict(Counter(op.op for op in info.ops)),
        "inputs": [info.tensors[i].to_dict() for i in info.inputs],
        "outputs": [info.tensors[i].to_dict() for i in info.outputs],
        "tensors": [t.to_dict() for t in info.tensors],
        "dtypes": {
            "parameters": dict(Counter(t.type for t in constants)),
            "activations": dict(Counter(t.type for t in activations)),
        },
        "param_bytes": sum(t.data_bytes for t in constants),
        "param_bytes_by_dtype": dict(param_bytes_by_type),
        "total_params": sum(t.elements for t in constants),
        "quantized_tensors": sum(1 for t in info.tensors if t.scale),
    }


def op_multiplications(info: TFLiteModelInfo, op: TFLiteOp) -> int:
    """Multiply-accumulates of one op as the runtime executes it (0 for ops without weights): each
    output element of a convolution or fully connected layer reads one weight per input it sums."""
    if op.op not in WEIGHTED or len(op.inputs) < 2 or not op.outputs:
        return 0
    weights = info.tensors[op.inputs[1]].shape
    out = info.tensors[op.outputs[0]].shape
    if not weights or not out or any(d is None or d < 0 for d in [*weights, *out]):
        return 0
    if op.op == "DEPTHWISE_CONV_2D":  # [1, kh, kw, channels]: one kernel window per output
        return prod(out) * weights[1] * weights[2]
    if op.op == "FULLY_CONNECTED":  # [units, inputs]
        return prod(out) * weights[-1]
    if op.op == "TRANSPOSE_CONV":  # [out channels, kh, kw, in channels]: each input spreads a window
        return prod(info.tensors[op.inputs[2]].shape) * prod(weights[:3])
    # CONV_2D [out, kh, kw, in], CONV_3D [kd, kh, kw, in, out]: every weight but the output channels'
    return prod(out) * prod(weights[1:] if op.op == "CONV_2D" else weights[:-1])
