"""Microcontroller board profiles (``boards/*.json``): RAM and flash, less the firmware's share.

``ram_reserved_bytes`` and ``flash_reserved_bytes`` stand for everything but the model and its arena:
the TFLite Micro runtime and kernels, the stack, the RTOS and the application. They are estimates;
measure your firmware and pass your own profile as ``--board path/to/board.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from edgeslim.errors import EdgeslimError

DEFAULT_BOARD = "cortex-m4"
_FIELDS = (
    "name",
    "description",
    "cpu",
    "ram_bytes",
    "flash_bytes",
    "ram_reserved_bytes",
    "flash_reserved_bytes",
)


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    cpu: str
    ram_bytes: int
    flash_bytes: int
    ram_reserved_bytes: int = 0
    flash_reserved_bytes: int = 0
    reference: str = ""
    # The emulated board (edgeslim.export.firmware's machines.json) with this board's memory map, if any
    emulator: str = ""

    @property
    def ram_available(self) -> int:
        return self.ram_bytes - self.ram_reserved_bytes

    @property
    def flash_available(self) -> int:
        return self.flash_bytes - self.flash_reserved_bytes

    def fit(self, flash_needed: int, ram_needed: int) -> dict[str, Any]:
        return {
            "board": self.name,
            "flash_bytes": flash_needed,
            "flash_available": self.flash_available,
            "flash_fits": flash_needed <= self.flash_available,
            "ram_needed": ram_needed,
            "ram_bytes": self.ram_bytes,
            "ram_available": self.ram_available,
            "ram_fits": ram_needed <= self.ram_available,
            "fits": flash_needed <= self.flash_available and ram_needed <= self.ram_available,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def board_names() -> list[str]:
    folder = resources.files("edgeslim.export") / "boards"
    return sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json"))


def load_board(name: str | None) -> Board:
    """A shipped profile by name, or a JSON file with the same fields."""
    name = name or DEFAULT_BOARD
    if name.endswith(".json"):
        path = Path(name)
        if not path.is_file():
            raise EdgeslimError(
                f"board profile {path}: no such file", f"use one of {board_names()} or a JSON file"
            )
        text, source = path.read_text(encoding="utf-8"), str(path)
    else:
        resource = resources.files("edgeslim.export") / "boards" / f"{name.lower()}.json"
        if not resource.is_file():
            raise EdgeslimError(
                f"unknown board {name!r}", f"choose one of {board_names()} or pass a board JSON file"
            )
        text, source = resource.read_text(encoding="utf-8"), f"board {name}"
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EdgeslimError(
            f"{source}: not valid JSON ({exc})", f"a board profile needs {list(_FIELDS)}"
        ) from None
    if not isinstance(data, dict):
        raise EdgeslimError(f"{source}: must be a JSON object", f"a board profile needs {list(_FIELDS)}")
    missing = [k for k in _FIELDS if k not in data]
    if missing:
        raise EdgeslimError(f"{source}: missing fields {missing}", f"a board profile needs {list(_FIELDS)}")
    for key in ("ram_bytes", "flash_bytes", "ram_reserved_bytes", "flash_reserved_bytes"):
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise EdgeslimError(
                f"{source}: {key} must be a whole number of bytes, got {value!r}",
                "write e.g. 262144 for 256 KiB",
            )
    for key in ("reference", "emulator"):
        if not isinstance(data.get(key, ""), str):
            raise EdgeslimError(f"{source}: {key} must be a string, got {data[key]!r}")
    board = Board(**{k: data[k] for k in (*_FIELDS, "reference", "emulator") if k in data})
    if board.ram_available <= 0 or board.flash_available <= 0:
        raise EdgeslimError(f"{source}: the reserved bytes exceed the board's RAM or flash")
    return board


# The shipped profiles by name (five small JSON files, read once at import).
BOARDS: dict[str, Board] = {name: load_board(name) for name in board_names()}
