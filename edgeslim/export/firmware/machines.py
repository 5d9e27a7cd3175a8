"""The emulated boards the firmware runs on (``machines.json``), and which one serves a board profile.

Each entry is a QEMU machine with its real memory map: where flash and RAM start and how large they
are, and how much RAM the stack keeps. The harness's linker script is written from it
(``linker_script``), so a firmware that does not fit is refused by the linker, on the board's own
memory. A board profile (``edgeslim.export.boards``) names its machine (``emulator``), or else runs on
the MPS2 board with its core (a profile's "Arm Cortex-M4F, 120 MHz" on ``cortex-m4``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from string import Template

from edgeslim.errors import EdgeslimError

DEFAULT_MACHINE = "cortex-m4"


@dataclass(frozen=True)
class Machine:
    name: str  # as users pass it: a core ("cortex-m4", an MPS2 board) or a board ("microbit")
    machine: str  # qemu-system-arm -M ...
    cpu: str  # -mcpu= for the compiler, and the TFLite Micro library's core
    description: str
    flash_origin: int
    flash_bytes: int
    ram_origin: int
    ram_bytes: int
    stack_bytes: int  # RAM the linker keeps free above .bss for the stack
    memory: str = ""  # the memory map in words, for the firmware README

    @property
    def board_name(self) -> str:
        """The board in words, without how it is emulated: "BBC micro:bit v1 (Nordic nRF51822, ...)"."""
        return self.description.split(", emulated")[0]

    @property
    def has_mpu(self) -> bool:
        # The harness protects flash with the ARMv7-M MPU (M3, M4, M7); ARMv6-M parts have none to rely
        # on, and ARMv8-M's (M33, M55) is programmed differently: their flash stays writable here.
        return self.cpu in ("cortex-m3", "cortex-m4", "cortex-m7")

    @property
    def has_helium(self) -> bool:
        return self.cpu == "cortex-m55"  # its library is built with MVE (library.TARGETS)

    def linker_script(self) -> str:
        """The harness's linker script for this board's memory."""
        text = (resources.files("edgeslim.export.firmware") / "harness" / "board.ld").read_text()
        return Template(text).substitute(
            machine=self.machine,
            memory=self.memory or self.description,
            flash_origin=f"0x{self.flash_origin:08X}",
            flash_bytes=self.flash_bytes,
            ram_origin=f"0x{self.ram_origin:08X}",
            ram_bytes=self.ram_bytes,
            stack_bytes=self.stack_bytes,
        )


def _load() -> dict[str, Machine]:
    text = (resources.files("edgeslim.export.firmware") / "machines.json").read_text(encoding="utf-8")
    return {name: Machine(name=name, **fields) for name, fields in json.loads(text).items()}


MACHINES: dict[str, Machine] = _load()


def roomy_machine(cpu: str) -> Machine:
    """The machine named after ``cpu``: that core with megabytes of memory, where a model too big for
    a small board still runs (what fit's trials and the instruction model's calibration measure on)."""
    if cpu not in MACHINES:
        raise EdgeslimError(f"no emulated board with room to spare runs the {cpu}")
    return MACHINES[cpu]


def resolve_machine(board: str | None) -> Machine:
    """``board``: a machine's name (cortex-m4, microbit), a QEMU machine (mps2-an386), or a board profile
    that names its machine or whose CPU has an MPS2 board."""
    name = (board or DEFAULT_MACHINE).strip()
    key = name.lower()
    if key in MACHINES:
        return MACHINES[key]
    for machine in MACHINES.values():
        if machine.machine == key:
            return machine
    from edgeslim.export.boards import load_board

    profile = load_board(name)  # EdgeslimError for an unknown name or a bad file
    if profile.emulator:
        if profile.emulator not in MACHINES:
            raise EdgeslimError(
                f"board {profile.name}: emulator {profile.emulator!r} is not an emulated board",
                f"use one of {', '.join(sorted(MACHINES))}",
            )
        return MACHINES[profile.emulator]
    found = re.search(r"cortex-m\d+", profile.cpu.lower().replace(" ", "-"))
    core = found.group(0) if found else None
    # The MPS2 board of that core (named after it) first, else the first board with that core.
    machine = MACHINES.get(core or "") or next((m for m in MACHINES.values() if m.cpu == core), None)
    if machine is None:
        raise EdgeslimError(
            f"board {profile.name} ({profile.cpu}) has no emulated counterpart for the firmware run",
            f"the firmware runs on {', '.join(sorted(MACHINES))}; export without --firmware for this board",
        )
    return machine
