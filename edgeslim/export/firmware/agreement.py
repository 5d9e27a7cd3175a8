"""The firmware's outputs against TFLite Micro's Python interpreter on the same int8 inputs.

Both run TFLite Micro's reference kernels, so the outputs should be equal byte for byte; the share of
equal samples, the argmax agreement and the largest difference in quantization steps say how close.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeslim.export.native_output import silenced_stderr


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


def compare(firmware: np.ndarray, interpreter: np.ndarray) -> dict[str, Any]:
    if firmware.shape != interpreter.shape:
        raise ValueError(f"output shapes differ: firmware {firmware.shape}, interpreter {interpreter.shape}")
    n = len(firmware)
    flat_f, flat_i = firmware.reshape(n, -1), interpreter.reshape(n, -1)
    identical = (flat_f == flat_i).all(axis=1)
    steps = np.abs(flat_f.astype(np.int64) - flat_i.astype(np.int64))
    return {
        "samples": int(n),
        "identical": float(identical.mean()) if n else 0.0,  # share of samples equal byte for byte
        "argmax_agreement": float((flat_f.argmax(axis=1) == flat_i.argmax(axis=1)).mean()) if n else 0.0,
        "max_diff_steps": int(steps.max()) if n else 0,
    }
