"""ONNX Runtime for ``.onnx`` files: the CUDA provider when it is present, the CPU provider otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeslim.runtime.errors import RuntimeModelError
from edgeslim.runtime.model import RuntimeModel
from edgeslim.runtime.spec import TensorSpec

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


class OnnxRuntimeModel(RuntimeModel):
    backend = "onnxruntime"

    def __init__(
        self, path: Path, data: bytes, info: Any, sidecar: dict[str, Any] | None, threads: int | None
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: warnings about unused initializers are noise here
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        available = ort.get_available_providers()
        self.providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        try:
            self._session = ort.InferenceSession(data, sess_options=options, providers=self.providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph/... types
            raise RuntimeModelError(
                f"{path}: ONNX Runtime cannot load this model ({str(exc).strip().splitlines()[0][:200]})",
                "re-export the model",
            ) from None
        self.providers = self._session.get_providers()
        if self.providers and self.providers[0] == "CUDAExecutionProvider":
            self.backend = "onnxruntime+cuda"
        inputs = [_spec(v) for v in self._session.get_inputs()]
        outputs = [_spec(v) for v in self._session.get_outputs()]
        self._in_names = [s.name for s in inputs]
        self._out_names = [s.name for s in outputs]
        super().__init__(path, inputs, outputs, sidecar, threads)

    def _invoke(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        return self._session.run(self._out_names, dict(zip(self._in_names, feeds, strict=True)))


def _spec(value: Any) -> TensorSpec:
    dtype = _ORT_TYPES.get(value.type)
    if dtype is None:
        raise RuntimeModelError(f"ONNX tensor {value.name!r} has unsupported type {value.type}")
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in value.shape)
    return TensorSpec(name=value.name, shape=shape, dtype=dtype)
