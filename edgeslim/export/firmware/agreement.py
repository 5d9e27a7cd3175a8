"""The firmware's outputs against TFLite Micro's Python interpreter on the same int8 inputs.

Both run TFLite Micro's reference kernels, so the outputs should be equal byte for byte; the share of
equal samples and the largest difference in quantization steps say how close, and the task's own rule
(argmax agreement for a classifier, fidelity for regression and reconstruction, edgeslim.tasks) says
whether the firmware passes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeslim.export.native_output import silenced_stderr
from edgeslim.export.options import DEFAULT_FLOOR
from edgeslim.runtime.spec import Codec
from edgeslim.runtime.tflite_file import TFLiteModelInfo
from edgeslim.tasks import get_task


def interpreter_outputs(data: bytes, raw_inputs: np.ndarray, arena_size: int) -> np.ndarray:
    """Raw outputs of TFLite Micro's Python interpreter (the mcu extra), one inference per sample."""
    from edgeslim.runtime.tflm import tflm_interpreter

    with silenced_stderr():
        interpreter = tflm_interpreter(data, arena_size)
    rows = []
    for sample in raw_inputs:
        interpreter.set_input(sample[None], 0)
        interpreter.invoke()
        rows.append(np.array(interpreter.get_output(0))[0])
    return np.stack(rows)


def task_check(
    info: TFLiteModelInfo,
    firmware: np.ndarray,
    interpreter: np.ndarray,
    y: np.ndarray | None,
    task: str | None,
    anomaly: np.ndarray | None = None,
    floor: float = DEFAULT_FLOOR,
) -> dict[str, Any]:
    """Byte-level closeness of the raw outputs; with targets ``y`` also the task's metrics of the
    firmware's outputs (``metrics``) and its verdict against the interpreter (``criterion``, ``passed``)."""
    if firmware.shape != interpreter.shape:
        raise ValueError(f"output shapes differ: firmware {firmware.shape}, interpreter {interpreter.shape}")
    n = len(firmware)
    flat_f, flat_i = firmware.reshape(n, -1), interpreter.reshape(n, -1)
    identical = (flat_f == flat_i).all(axis=1)
    steps = np.abs(flat_f.astype(np.int64) - flat_i.astype(np.int64))
    out: dict[str, Any] = {
        "samples": int(n),
        "identical": float(identical.mean()) if n else 0.0,  # share of samples equal byte for byte
        "max_diff_steps": int(steps.max()) if n else 0,
    }
    if y is None:
        return out
    decode = Codec(info.tensors[info.outputs[0]].spec()).decode
    verdict = get_task(task).compare(decode(firmware), decode(interpreter), y, floor)
    out.update(verdict.details)  # "agreement" (argmax) for a classifier; "fidelity" and more otherwise
    out["criterion"], out["passed"] = verdict.criterion, bool(n) and verdict.passed
    out["metrics"] = get_task(task).metrics(y, decode(firmware), anomaly)
    return out
