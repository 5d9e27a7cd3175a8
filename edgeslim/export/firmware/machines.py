"""The emulated boards the firmware runs on (``machines.json``), and which one serves a board profile.

A board profile (``edgeslim.export.boards``) names a CPU such as "Arm Cortex-M4F, 120 MHz"; the firmware
runs on the QEMU board with that core. The emulated board has more memory than most parts (4 MB of
flash, 4 MB of RAM); the profile's own RAM and flash decide the fit.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources

from edgeslim.errors import EdgeslimError

DEFAULT_MACHINE = "cortex-m4"


@dataclass(frozen=True)
class Machine:
    name: str  # the core, as users pass it: "cortex-m4"
    machine: str  # qemu-system-arm -M ...
    cpu: str  # -mcpu= for the compiler
    description: str
    linker_script: str
    flash_bytes: int
    ram_bytes: int


def _load() -> dict[str, Machine]:
    text = (resources.files("edgeslim.export.firmware") / "machines.json").read_text(encoding="utf-8")
    return {name: Machine(name=name, **fields) for name, fields in json.loads(text).items()}


MACHINES: dict[str, Machine] = _load()


def resolve_machine(board: str | None) -> Machine:
    """``board``: a core (cortex-m4), a QEMU machine (mps2-an386), or a board profile whose CPU is one."""
    name = (board or DEFAULT_MACHINE).strip()
    key = name.lower()
    if key in MACHINES:
        return MACHINES[key]
    for machine in MACHINES.values():
        if machine.machine == key:
            return machine
    from edgeslim.export.boards import load_board

    profile = load_board(name)  # EdgeslimError for an unknown name or a bad file
    core = re.search(r"cortex-m\d+", profile.cpu.lower().replace(" ", "-"))
    if core is None or core.group(0) not in MACHINES:
        raise EdgeslimError(
            f"board {profile.name} ({profile.cpu}) has no emulated counterpart for the firmware run",
            f"the firmware runs on {', '.join(sorted(MACHINES))}; export without --firmware for this board",
        )
    return MACHINES[core.group(0)]
