"""The smallest tensor arena TFLite Micro can run a model in, found by bisection on the real interpreter.

Too small an arena fails allocation (``TFLM failed to allocate tensors``); the requirement is monotone
in the arena size, so a bisection finds the exact byte count: the minimum works and one byte less
fails. Measured with TFLite Micro's reference kernels on a 64-bit host, whose pointers are twice a
Cortex-M's, so the figure errs on the large side; optimized kernels (CMSIS-NN, ESP-NN) ask for scratch
buffers the reference kernels do not, which is what ``ARENA_MARGIN`` covers.
"""

from __future__ import annotations

import numpy as np

from edgeslim.errors import EdgeslimError, MissingTool
from edgeslim.export.mcu_resolver import RESOLVER_METHODS, resolver_method
from edgeslim.export.native_output import silenced_stderr
from edgeslim.runtime.tflite_file import read_tflite
from edgeslim.runtime.tflm import ALIGNMENT, ARENA_MARGIN, recommended_arena  # noqa: F401 - re-exported

START_BYTES = 16 * 1024
MAX_BYTES = 256 * 1024 * 1024


def arena_runs(data: bytes, arena_size: int, n_inputs: int = 1) -> bool:
    """Whether the model allocates and runs one inference in ``arena_size`` bytes."""
    from edgeslim.runtime.tflm import tflm_interpreter

    try:
        interp = tflm_interpreter(data, arena_size)
        for index in range(n_inputs):
            detail = interp.get_input_details(index)
            interp.set_input(np.zeros(detail["shape"], detail["dtype"]), index)
        interp.invoke()
        return True
    except RuntimeError:
        return False


def find_min_arena(data: bytes) -> int:
    """The exact minimum arena in bytes; EdgeslimError if TFLite Micro cannot run the model at all."""
    try:
        import tflite_micro  # noqa: F401
    except ImportError:
        raise MissingTool(
            "the mcu target measures the tensor arena with TensorFlow Lite Micro's Python interpreter",
            "install the mcu extra: pip install 'edgeslim[mcu]'",
        ) from None
    info = read_tflite(data, "mcu export")
    n_inputs = len(info.inputs)
    with silenced_stderr():  # every failed try prints an allocation report
        hi = START_BYTES
        while not arena_runs(data, hi, n_inputs):
            if hi >= MAX_BYTES:
                break
            hi *= 2
        ok = hi < MAX_BYTES or arena_runs(data, hi, n_inputs)
        if not ok:
            missing = sorted({op for op in info.op_names() if resolver_method(op) not in RESOLVER_METHODS})
            if missing:
                raise EdgeslimError(
                    f"TFLite Micro has no kernel for {', '.join(missing)}, which this model uses",
                    "replace the layers that use them, or deploy to the cpu target",
                )
            raise EdgeslimError(
                f"TFLite Micro cannot run this model even with a {MAX_BYTES // 2**20} MiB arena",
                "an op's kernel refuses its shapes or types; check `edgeslim inspect` on the .tflite",
            )
        lo = hi // 2 if hi > START_BYTES else 0  # lo fails (or is 0), hi works
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if arena_runs(data, mid, n_inputs):
                hi = mid
            else:
                lo = mid
    return hi
