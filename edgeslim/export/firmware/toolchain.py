"""What the firmware needs on this machine: the Arm cross compiler, QEMU, and TFLite Micro's sources.

Nothing here builds or runs anything but ``--version`` and ``-machine help``; each answer says what is
missing and how to get it.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SOURCES_ENV = "EDGESLIM_TFLM_SOURCES"
SOURCES_SUBDIR = Path("shared") / "vendor" / "tflm"
APT_HINT = (
    "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm"
)


@dataclass(frozen=True)
class Toolchain:
    gcc: str
    gxx: str
    size: str
    qemu: str
    gcc_version: str  # part of the library's cache key: another compiler, another build


def find_toolchain() -> tuple[Toolchain | None, str]:
    """The tools, or None and the reason."""
    found = {name: shutil.which(f"arm-none-eabi-{name}") for name in ("gcc", "g++", "size")}
    missing = [f"arm-none-eabi-{name}" for name, path in found.items() if path is None]
    if missing:
        return None, f"the Arm cross compiler is not installed ({', '.join(missing)} not on PATH)"
    qemu = shutil.which("qemu-system-arm")
    if qemu is None:
        return None, "QEMU's Arm system emulator is not installed (qemu-system-arm not on PATH)"
    for tool, library, package in (
        ("gcc", "libc_nano.a", "libnewlib-arm-none-eabi"),
        ("g++", "libstdc++_nano.a", "libstdc++-arm-none-eabi-newlib"),
    ):
        # Prints the bare name back when the library is not installed for this compiler.
        where = _first_line([str(found[tool]), "-mcpu=cortex-m4", "-mthumb", f"-print-file-name={library}"])
        if not Path(where).is_absolute():
            return None, f"the Arm cross compiler's C/C++ libraries are not installed ({library}: {package})"
    version = _first_line([str(found["gcc"]), "-dumpfullversion"]) or "unknown"
    return Toolchain(str(found["gcc"]), str(found["g++"]), str(found["size"]), qemu, version), ""


@functools.lru_cache(maxsize=4)
def qemu_machines(qemu: str) -> frozenset[str]:
    try:
        out = subprocess.run([qemu, "-machine", "help"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(line.split()[0] for line in out.splitlines()[1:] if line.strip())


def find_sources() -> Path | None:
    """The folder of pinned TFLite Micro archives: ``$EDGESLIM_TFLM_SOURCES``, else ``shared/vendor/tflm``
    beside the checkout (found by walking up from this package and from the working directory)."""
    given = os.environ.get(SOURCES_ENV)
    if given:
        path = Path(given)
        return path if (path / "SHA256SUMS").is_file() else None
    starts = [Path(__file__).resolve(), Path.cwd().resolve()]
    for start in starts:
        for folder in [start, *start.parents]:
            candidate = folder / SOURCES_SUBDIR
            if (candidate / "SHA256SUMS").is_file():
                return candidate
    return None


def sources_reason() -> str:
    return (
        f"TFLite Micro's pinned sources were not found (set {SOURCES_ENV} to the folder holding "
        "SHA256SUMS and the tflite-micro, flatbuffers, gemmlowp, ruy and kissfft archives)"
    )


def python_with_pillow_and_numpy() -> str | None:
    """A python3 that TFLite Micro's Makefile can run while it parses (it imports PIL and numpy)."""
    import sys

    for candidate in (sys.executable, shutil.which("python3"), "/usr/bin/python3"):
        if candidate and Path(candidate).exists():
            try:
                probe = subprocess.run(
                    [candidate, "-c", "import PIL, numpy"], capture_output=True, timeout=120
                )
            except (OSError, subprocess.TimeoutExpired):
                continue
            if probe.returncode == 0:
                return candidate
    return None


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return re.sub(r"\s+", " ", out.strip().splitlines()[0]) if out.strip() else ""
