"""Run a firmware ELF on QEMU's emulated board and read back what it reported through semihosting.

``-icount shift=0`` makes QEMU's virtual clock advance one nanosecond per executed instruction, so the
SysTick timer the harness reads counts instructions (up to a ratio the harness calibrates itself).
The harness reads ``inputs.bin`` and writes ``result.txt`` in the working folder.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgeslim.errors import EdgeslimError

RESULT_FILE = "result.txt"
INPUTS_FILE = "inputs.bin"
PROBE_FILE = "probe.bin"  # an arena size for the harness to try, and nothing else


class FirmwareRunError(RuntimeError):
    """The firmware started but did not finish (a fault, a failed allocation); ``report`` has what it said."""

    def __init__(self, message: str, report: RunReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class RunReport:
    calibration: tuple[int, int] = (0, 0)  # instructions, ticks
    arena_capacity: int = 0
    arena_used: int = 0
    probe: tuple[int, bool] | None = None  # (arena bytes, whether AllocateTensors() succeeded)
    io: tuple[int, int] = (0, 0)
    samples: list[tuple[int, bytes]] = field(default_factory=list)  # (ticks, output bytes)
    stack_used: int = 0
    # The first sample once more with each operator timed: the whole inference, the invocations counted,
    # and each invocation's ticks in execution order
    profile_ticks: int = 0
    profile_count: int = 0
    op_ticks: list[int] = field(default_factory=list)
    error: str = ""  # the "error ..." or "fault ..." line of a run that stopped
    seconds: float = 0.0

    @property
    def instructions_per_tick(self) -> float:
        instructions, ticks = self.calibration
        return instructions / ticks if ticks else 0.0


def qemu_command(qemu: str, machine: str, elf: Path) -> list[str]:
    return [
        qemu,
        "-M",
        machine,
        "-nographic",
        "-monitor",
        "none",
        "-serial",
        "null",
        "-semihosting-config",
        "enable=on,target=native",
        "-icount",
        "shift=0",
        "-kernel",
        str(elf),
    ]


def run_elf(qemu: str, machine: str, elf: Path, folder: Path, timeout: float) -> RunReport:
    """Run ``elf`` in ``folder`` (the semihosting working folder); FirmwareRunError if it did not finish."""
    result = folder / RESULT_FILE
    result.unlink(missing_ok=True)
    started = time.perf_counter()
    try:
        ran = subprocess.run(
            qemu_command(qemu, machine, elf),
            cwd=folder,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise EdgeslimError(
            f"the firmware did not finish within {timeout:.0f} s on {machine}",
            "run fewer samples, or raise the timeout",
        ) from None
    seconds = time.perf_counter() - started
    text = result.read_text(errors="replace") if result.is_file() else ""
    report = parse_report(text)
    report.seconds = seconds
    finished = any(line.startswith("done ") for line in text.splitlines())
    if ran.returncode != 0 or not finished:
        last = report.error or ran.stderr.strip()[-300:] or "no output"
        raise FirmwareRunError(f"the firmware on {machine} stopped (exit {ran.returncode}): {last}", report)
    return report


def parse_report(text: str) -> RunReport:
    report = RunReport()
    for line in text.splitlines():
        word, *rest = line.split() or [""]
        if word == "calibration":
            report.calibration = (int(rest[0]), int(rest[1]))
        elif word == "arena_capacity":
            report.arena_capacity = int(rest[0])
        elif word == "probe":
            report.probe = (int(rest[0]), rest[1] == "1")
        elif word == "arena_used":
            report.arena_used = int(rest[0])
        elif word == "io":
            report.io = (int(rest[0]), int(rest[1]))
        elif word == "sample":
            report.samples.append((int(rest[1]), bytes.fromhex(rest[2] if len(rest) > 2 else "")))
        elif word == "profile":
            report.profile_ticks, report.profile_count = int(rest[0]), int(rest[1])
        elif word == "op":
            report.op_ticks.append(int(rest[1]))
        elif word == "stack_used":
            report.stack_used = int(rest[0])
        elif word in ("error", "fault"):
            report.error = line.strip()
    return report
