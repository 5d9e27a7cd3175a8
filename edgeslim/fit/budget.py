"""The budget a fit must meet: what the board holds and what the user tolerates.

Sizes take bytes or ``48KB``, ``0.5MB`` (1 KB = 1,024 bytes, as board datasheets count flash and RAM).
``max_flash`` bounds the model's bytes (the deployable file, the array the firmware keeps in flash);
``max_arena`` the TFLite Micro tensor arena measured by bisection (mcu target); ``max_latency_ms`` the
batch-1 p50 in the target's runtime on this host; ``max_instructions`` the instructions per inference
of the firmware run on an emulated Cortex-M (mcu target, ``firmware``); ``max_loss`` the tolerated
accuracy loss in points against the input model (search.py says how it is judged). An mcu budget with
a board adds ``board_flash`` and ``board_ram``: the board's whole flash and RAM against what export's
board rule counts, so a winner fits the board exactly when its export does.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from edgeslim.errors import ConfigError, EdgeslimError, Problems

# "architecture": moves that change the network's shape (fit/architecture.py), when the levels of the
# others alone cannot meet the budget
TECHNIQUES = ("architecture", "prune", "lowrank", "separable", "quantize")
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2}
# constraint -> how the report names it
CONSTRAINTS = {
    "max_flash": "model bytes",
    "max_arena": "TFLM arena bytes",
    "max_macs": "multiplications",
    "max_latency_ms": "host latency p50 (ms)",
    "max_instructions": "instructions per inference",
    "board_flash": "board flash as export counts it",
    "board_ram": "board RAM as export counts it",
}


def parse_size(text: Any, what: str) -> int:
    """``48KB`` -> 49152, ``0.5MB`` -> 524288, ``1000`` -> 1000."""
    if isinstance(text, bool):
        raise ConfigError(f"{what}: must be a size like 48KB, 0.5MB or a byte count, got {text!r}")
    if isinstance(text, int | float):
        value = _number(text)
        if value is None:  # NaN, infinity, or an int too big for a float
            raise ConfigError(f"{what}: must be a positive size, got {text!r}")
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
        unit = match.group(2).lower() if match else None
        if not match or unit not in _UNITS:
            raise ConfigError(f"{what}: must be a size like 48KB, 0.5MB or a byte count, got {text!r}")
        value = float(match.group(1)) * _UNITS[unit]
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{what}: must be a positive size, got {text!r}")
    return int(value)


@dataclass(frozen=True)
class Budget:
    target: str = "cpu"
    max_flash: int | None = None
    max_arena: int | None = None
    max_macs: int | None = None
    max_latency_ms: float | None = None
    max_instructions: int | None = None
    max_loss: float = 1.0
    board: str | None = None
    # mcu with a board: the board's whole flash and RAM, against what export's board rule counts
    # (export.mcu.board_fit: the model or firmware, the arena with its margin, the board's reserve)
    board_flash: int | None = None
    board_ram: int | None = None

    def limits(self) -> dict[str, float]:
        """The constraints that are set, by name."""
        return {k: float(getattr(self, k)) for k in CONSTRAINTS if getattr(self, k) is not None}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_budget(
    target: str = "cpu",
    board: str | None = None,
    max_flash: Any = None,
    max_arena: Any = None,
    max_macs: Any = None,
    max_latency_ms: Any = None,
    max_instructions: Any = None,
    max_loss: Any = 1.0,
    prefix: str = "--",
) -> Budget:
    """A validated budget; a board fills flash and arena from its profile unless they are given."""
    problems = Problems()
    name = (
        (lambda key: f"{prefix}{key.replace('_', '-')}") if prefix == "--" else (lambda key: f"{prefix}{key}")
    )
    from edgeslim.export.registry import TARGET_NAMES  # fit searches for any target export knows

    if target not in TARGET_NAMES:
        problems.add(f"{name('target')}: must be one of {list(TARGET_NAMES)}, got {target!r}")
    values: dict[str, Any] = {}
    for key, value in (("max_flash", max_flash), ("max_arena", max_arena)):
        if value is not None:
            with problems.collect():
                values[key] = parse_size(value, name(key))
    if board is not None:
        from edgeslim.export.boards import load_board

        try:
            profile = load_board(board)
        except EdgeslimError as exc:
            problems.add(f"{name('board')}: {exc.message}", exc.hint)
        else:
            if target == "mcu":  # what export will demand of the board, not the bare arena
                values["board_flash"], values["board_ram"] = profile.flash_bytes, profile.ram_bytes
            else:
                values.setdefault("max_flash", profile.flash_available)
    for key, value, kind in (
        ("max_macs", max_macs, int),
        ("max_latency_ms", max_latency_ms, float),
        ("max_instructions", max_instructions, int),
    ):
        if value is None:
            continue
        number = _number(value)
        if number is None or number <= 0:
            problems.add(f"{name(key)}: must be a positive number, got {value!r}")
        else:
            values[key] = kind(number)
    loss = _number(max_loss)
    if loss is None or not 0 <= loss <= 100:
        problems.add(f"{name('max_loss')}: must be accuracy points in [0, 100], got {max_loss!r}")
    if target != "mcu":
        for key, given in (("max_arena", max_arena), ("max_instructions", max_instructions)):
            if given is not None:
                problems.add(f"{name(key)}: applies to target mcu only", f"add {name('target')} mcu")
    problems.raise_if_any()
    if not values:
        raise ConfigError(
            "fit needs a budget: none of board, max flash, max arena, max MACs, max latency is set",
            "e.g. --board stm32l4r5, or --max-flash 48KB",
        )
    return Budget(target=target, max_loss=float(loss or 0.0), board=board, **values)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond a float's range
        return None
    return number if math.isfinite(number) else None


def binding(over: dict[str, float], unknown: list[str]) -> list[str]:
    """What keeps a measured artifact from the budget: the constraints it is over, then those not measured."""
    return sorted(over) + [f"{k} (not measured)" for k in unknown]


def over_budget(limits: dict[str, float], measured: dict[str, Any]) -> tuple[dict[str, float], list[str]]:
    """({constraint: share over its limit}, [constraints with no measurement]) of measured figures; an
    Edge TPU artifact with ops left on the CPU is over too."""
    over: dict[str, float] = {}
    unknown = []
    for key, limit in limits.items():
        value = measured.get(key)
        if value is None:
            unknown.append(key)
        elif value > limit:
            over[key] = value / limit - 1.0
    if measured.get("edgetpu_unmapped"):
        over["edgetpu"] = measured["edgetpu_unmapped"]
    return over, unknown
