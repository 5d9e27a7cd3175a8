"""What a ``.tflite`` file holds: ops in execution order, tensor types, parameter counts and bytes.

TensorFlow-free (the flatbuffer is read in pure Python), so ``edgeslim inspect`` works on a device.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from edgeslim.runtime.errors import RuntimeModelError
from edgeslim.runtime.tflite_file import read_tflite


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
        "ops": [op.to_dict() for op in info.ops],
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
