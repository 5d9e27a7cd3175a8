"""The mcu target's ``firmware`` option: the C package built into firmware and measured on the board.

Before anything is written, the ``.tflite`` bytes run as firmware once (``run_firmware`` with the
arena margin): the arena TFLite Micro needs on the 32-bit target, and the flash and RAM of a whole
firmware linked with that arena plus the margin. The board fit uses these figures, against the
board's whole flash and RAM: the firmware already holds the runtime, the C library, the model, the
arena and the measured stack, so only the application is left for the rest.

After verification, the C package as it ships runs as firmware on the test samples; its outputs are
compared with TFLite Micro's Python interpreter, byte for byte.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeslim.export.boards import DEFAULT_BOARD
from edgeslim.export.firmware import FirmwareResult, raw_inputs, run_firmware
from edgeslim.export.firmware.agreement import interpreter_outputs, task_check
from edgeslim.export.target import ExportContext
from edgeslim.runtime.tflite_file import read_tflite

BASIS = (
    "firmware: text + data of the whole firmware in flash; data + bss (the arena at kTensorArenaSize) + "
    "the measured stack in RAM; compared with the board's whole flash and RAM"
)


def measure(data: bytes, context: ExportContext) -> FirmwareResult:
    """The firmware run before writing: one test sample, the arena found on the target plus the margin."""
    from edgeslim.export.mcu_arena import ARENA_MARGIN

    options = context.options
    return run_firmware(
        data,
        options.board or DEFAULT_BOARD,
        context.dataset.x_test[:1],
        arena_margin=ARENA_MARGIN,
        kernels=options.kernels,
    )


def run_shipped(data: bytes, package_dir: Path, context: ExportContext, arena_host: int) -> dict[str, Any]:
    """The C package as written, on the test samples; outputs checked against the Python interpreter."""
    options = context.options
    samples = options.firmware_samples
    x, y = context.dataset.x_test[:samples], np.asarray(context.dataset.y_test[:samples])
    board = options.board or DEFAULT_BOARD
    result = run_firmware(data, board, x, package_dir=package_dir, kernels=options.kernels)
    info = read_tflite(data, "mcu export")
    raw = raw_inputs(info, x)
    assert raw is not None
    reference = interpreter_outputs(data, raw, arena_host)
    anomaly = context.dataset.anomaly
    anomaly = None if anomaly is None else np.asarray(anomaly)[:samples]
    task = context.dataset.task
    agreement = task_check(info, result.outputs, reference, y, task, anomaly, options.agreement_floor)
    metrics = agreement.pop("metrics")
    return {**result.to_dict(), **metrics, "task": task, "interpreter_agreement": agreement}
