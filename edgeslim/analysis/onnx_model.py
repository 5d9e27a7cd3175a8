"""What an ``.onnx`` file holds: nodes, opsets, tensor types, parameter counts and bytes.

TensorFlow-free and ``onnx``-free (a minimal protobuf reader), so ``edgeslim inspect`` works on a device.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from edgeslim.runtime.errors import RuntimeModelError
from edgeslim.runtime.onnx_file import read_onnx


def analyze_onnx(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise RuntimeModelError(f"{path}: no such file", "check the path")
    info = read_onnx(path.read_bytes(), str(path))
    bytes_by_type: Counter[str] = Counter()
    for init in info.initializers:
        bytes_by_type[init.dtype] += init.bytes
    return {
        "path": str(path),
        "format": "onnx",
        "bytes": info.size,
        "ir_version": info.ir_version,
        "opsets": info.opsets,
        "producer": info.producer,
        "external_data": info.external_data,
        "ops": [
            {
                "index": n.index,
                "op": n.op if not n.domain else f"{n.domain}.{n.op}",
                "inputs": n.inputs,
                "outputs": n.outputs,
            }
            for n in info.nodes
        ],
        "op_counts": dict(Counter(n.op for n in info.nodes)),
        "inputs": [{"name": v.name, "dtype": v.dtype, "shape": v.shape} for v in info.inputs],
        "outputs": [{"name": v.name, "dtype": v.dtype, "shape": v.shape} for v in info.outputs],
        "tensors": [
            {"name": i.name, "dtype": i.dtype, "shape": i.dims, "bytes": i.bytes} for i in info.initializers
        ],
        "dtypes": {"parameters": dict(Counter(i.dtype for i in info.initializers))},
        "param_bytes": sum(i.bytes for i in info.initializers),
        "param_bytes_by_dtype": dict(bytes_by_type),
        "total_params": sum(i.elements for i in info.initializers),
    }
