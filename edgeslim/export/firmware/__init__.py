"""The mcu artifact as firmware: TFLite Micro built for a Cortex-M, run on QEMU's emulated MPS2 board.

``run_firmware`` compiles a small harness (vector table, reset handler, linker script, semihosting
output) with a model's C package and TFLite Micro, runs it under ``qemu-system-arm -icount``, and
returns what the program measured: text/data/bss of the ELF (split by origin from the map file), the
arena on the 32-bit target, the instructions of one inference, and the raw outputs. TFLite Micro is
built once per core and cached (``python -m edgeslim.export.firmware build``).
"""

from edgeslim.export.firmware.library import cache_root, cached_library, ensure_library
from edgeslim.export.firmware.machines import MACHINES, resolve_machine
from edgeslim.export.firmware.result import FirmwareResult
from edgeslim.export.firmware.run import firmware_available, raw_inputs, run_firmware

__all__ = [
    "MACHINES",
    "FirmwareResult",
    "cache_root",
    "cached_library",
    "ensure_library",
    "firmware_available",
    "raw_inputs",
    "resolve_machine",
    "run_firmware",
]
