"""What one firmware run measured, every figure read from the built program or printed by it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class FirmwareResult:
    machine: str  # the QEMU board: "mps2-an386"
    cpu: str  # "cortex-m4"
    kernels: str  # TFLite Micro's kernel set: "cmsis_nn" or "reference" (edgeslim.tflm_kernels)
    # `arm-none-eabi-size` of the linked ELF (Berkeley: text holds code, read-only data and the model).
    text_bytes: int
    data_bytes: int
    bss_bytes: int
    model_bytes: int  # the model array in flash (model_data.o), from the map file
    runtime_text_bytes: int  # TFLite Micro's code and read-only data, from the map file
    arena_used_bytes: int  # interpreter.arena_used_bytes() on the 32-bit target
    arena_min_bytes: int  # the smallest arena AllocateTensors() accepts there (bisection on the target)
    arena_linked_bytes: int  # the arena buffer this firmware was linked with (in bss)
    stack_used_bytes: int  # the stack's high-water mark over the whole run
    instructions_per_inference: int  # median over the samples
    instructions_per_tick: float  # the calibration: SysTick ticks to instructions under -icount
    outputs: np.ndarray  # raw output tensor per sample (int8 for the mcu target)
    build_seconds: float
    run_seconds: float
    library_build_seconds: float = 0.0  # building TFLite Micro in this call (0 when it was cached)
    split: dict[str, dict[str, int]] = field(default_factory=dict)  # map file: group -> text/data/bss
    instructions: list[int] = field(default_factory=list)  # per sample
    library_key: str = ""
    compiler: str = ""
    flags: str = ""
    # One inference's instructions per operator (profile.py): ops, their layers and multiplications
    profile: dict[str, Any] = field(default_factory=dict)

    @property
    def flash_bytes(self) -> int:
        return self.text_bytes + self.data_bytes

    @property
    def ram_bytes(self) -> int:
        return self.data_bytes + self.bss_bytes

    @property
    def samples(self) -> int:
        return int(len(self.outputs))

    def to_dict(self) -> dict[str, Any]:
        """Everything but the raw outputs (one row per sample), JSON-ready."""
        return {
            "machine": self.machine,
            "cpu": self.cpu,
            "kernels": self.kernels,
            "text_bytes": self.text_bytes,
            "data_bytes": self.data_bytes,
            "bss_bytes": self.bss_bytes,
            "flash_bytes": self.flash_bytes,
            "ram_bytes": self.ram_bytes,
            "model_bytes": self.model_bytes,
            "runtime_text_bytes": self.runtime_text_bytes,
            "split": self.split,
            "arena_used_bytes": self.arena_used_bytes,
            "arena_min_bytes": self.arena_min_bytes,
            "arena_linked_bytes": self.arena_linked_bytes,
            "stack_used_bytes": self.stack_used_bytes,
            "instructions_per_inference": self.instructions_per_inference,
            "instructions_min": min(self.instructions, default=0),
            "instructions_max": max(self.instructions, default=0),
            "instructions_per_tick": round(self.instructions_per_tick, 4),
            "samples": self.samples,
            "build_seconds": round(self.build_seconds, 2),
            "run_seconds": round(self.run_seconds, 2),
            "library_build_seconds": round(self.library_build_seconds, 1),
            "library_key": self.library_key,
            "compiler": self.compiler,
            "flags": self.flags,
            "profile": self.profile,
        }
