"""The mcu artifact as firmware: TFLite Micro built for a Cortex-M, run on QEMU's emulated boards.

``run_firmware`` compiles a small harness (vector table, reset handler, linker script, semihosting
output) with a model's C package and TFLite Micro, runs it under ``qemu-system-arm -icount``, and
returns what the program measured: text/data/bss of the ELF (split by origin from the map file), the
arena on the 32-bit target, the instructions of one inference, and the raw outputs. TFLite Micro is
built once per core and kernel set (CMSIS-NN by default) and cached
(``python -m edgeslim.export.firmware build``). Names load on first use, so the export options can read
the kernel sets without the runner.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgeslim.export.firmware.library import cache_root, cached_library, ensure_library
    from edgeslim.export.firmware.machines import MACHINES, resolve_machine, roomy_machine
    from edgeslim.export.firmware.result import FirmwareResult
    from edgeslim.export.firmware.run import firmware_available, raw_inputs, run_firmware
    from edgeslim.tflm_kernels import DEFAULT_KERNELS, KERNELS

_HOMES = {
    "DEFAULT_KERNELS": "edgeslim.tflm_kernels",
    "KERNELS": "edgeslim.tflm_kernels",
    "cache_root": "edgeslim.export.firmware.library",
    "cached_library": "edgeslim.export.firmware.library",
    "ensure_library": "edgeslim.export.firmware.library",
    "MACHINES": "edgeslim.export.firmware.machines",
    "resolve_machine": "edgeslim.export.firmware.machines",
    "roomy_machine": "edgeslim.export.firmware.machines",
    "FirmwareResult": "edgeslim.export.firmware.result",
    "firmware_available": "edgeslim.export.firmware.run",
    "raw_inputs": "edgeslim.export.firmware.run",
    "run_firmware": "edgeslim.export.firmware.run",
}
__all__ = [
    "DEFAULT_KERNELS",
    "FirmwareResult",
    "KERNELS",
    "MACHINES",
    "cache_root",
    "cached_library",
    "ensure_library",
    "firmware_available",
    "raw_inputs",
    "resolve_machine",
    "roomy_machine",
    "run_firmware",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_HOMES[name]), name)
