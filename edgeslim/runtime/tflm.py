"""TensorFlow Lite Micro's Python interpreter (the ``mcu`` extra): the microcontroller's own kernels."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from edgeslim.runtime.errors import RuntimeModelError
from edgeslim.runtime.model import RuntimeModel
from edgeslim.runtime.spec import TensorSpec
from edgeslim.runtime.tflite_file import TFLiteModelInfo
from edgeslim.runtime.tflm_guard import arena_is_safe

ARENA_MARGIN = 0.25
ALIGNMENT = 16


def recommended_arena(minimum: int, margin: float = ARENA_MARGIN) -> int:
    """The minimum plus the margin, rounded up to the 16-byte alignment TFLite Micro uses."""
    return int(math.ceil(minimum * (1.0 + margin) / ALIGNMENT) * ALIGNMENT)


DEFAULT_ARENA_FACTOR = 10  # without a measured arena, what tflite-micro itself assumes: 10x the model
MIN_ARENA = 64 * 1024


def tflm_interpreter(data: bytes, arena_size: int) -> Any:
    """A TFLM interpreter over ``data``: ImportError without the mcu extra, RuntimeError if it fails.

    Each new arena size is tried in a helper process first: TFLite Micro sometimes crashes instead of
    failing when the arena is too small (see tflm_guard).
    """
    from tflite_micro.python.tflite_micro import runtime

    if not arena_is_safe(data, arena_size):
        raise RuntimeError(
            "TFLM failed to allocate tensors (tried in a child process: the arena is too small)"
        )
    return runtime.Interpreter.from_bytes(data, arena_size=arena_size)


class TFLMModel(RuntimeModel):
    backend = "tflm"

    def __init__(
        self,
        path: Path,
        data: bytes,
        info: TFLiteModelInfo,
        sidecar: dict[str, Any] | None,
        threads: int | None,
    ) -> None:
        mcu = (sidecar or {}).get("mcu") or {}
        # This interpreter runs on the 64-bit host, whose pointers make every tensor's bookkeeping larger
        # than on the microcontroller: a kTensorArenaSize measured on the target can be too small here.
        host = mcu.get("arena_host_bytes")
        host_size = recommended_arena(host, float(mcu.get("arena_margin", ARENA_MARGIN))) if host else 0
        arena = max(int(mcu.get("arena_size") or 0), host_size)
        self.arena_size = arena or max(len(data) * DEFAULT_ARENA_FACTOR, MIN_ARENA)
        try:
            self._interp = tflm_interpreter(data, self.arena_size)
        except ImportError:
            raise RuntimeModelError(
                "backend 'tflm' needs TensorFlow Lite Micro's Python package",
                "install the mcu extra: pip install 'edgeslim[mcu]' (x86-64 Linux, Python 3.11)",
            ) from None
        except (RuntimeError, ValueError) as exc:
            raise RuntimeModelError(
                f"{path}: TFLite Micro cannot run this model ({str(exc).strip().splitlines()[0][:200]})",
                "TFLite Micro runs full-integer (int8) models; export with --target mcu or --quant int8",
            ) from None
        self._stateful = info.stateful  # a fused LSTM's state: reset before every call (see LiteRTModel)
        names = [info.tensors[i].name for i in info.inputs], [info.tensors[i].name for i in info.outputs]
        inputs = [_spec(self._interp.get_input_details(i), names[0][i]) for i in range(len(info.inputs))]
        outputs = [_spec(self._interp.get_output_details(i), names[1][i]) for i in range(len(info.outputs))]
        super().__init__(path, inputs, outputs, sidecar, None)
        self.input_keys, self.output_keys = info.input_keys, info.output_keys

    def _invoke(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        interp = self._interp
        if self._stateful:
            interp.reset()
        for i, feed in enumerate(feeds):
            interp.set_input(feed, i)
        interp.invoke()
        return [np.array(interp.get_output(i)) for i in range(len(self.outputs))]


def _spec(detail: dict[str, Any], name: str) -> TensorSpec:
    quant = detail.get("quantization_parameters") or {}
    scales, zeros = list(quant.get("scales", [])), list(quant.get("zero_points", []))
    return TensorSpec(
        name=name,
        shape=tuple(int(d) for d in detail["shape"]),  # TFLM plans memory for one fixed shape
        dtype=np.dtype(detail["dtype"]).name,
        scale=float(scales[0]) if scales else None,
        zero_point=int(zeros[0]) if zeros else None,
    )
