"""Compile and link the harness with a C package and the cached TFLite Micro library.

The harness sources, linker script and start-up code ship inside this package (``harness/``). The C
package is compiled as it is, with the flags the library was built with (the same TF_LITE_STATIC_MEMORY
layout of TfLiteTensor, the same float ABI), and with -Werror so a warning in it fails the build.
"""

from __future__ import annotations

import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from edgeslim.errors import EdgeslimError
from edgeslim.export.firmware.library import TflmLibrary
from edgeslim.export.firmware.machines import Machine
from edgeslim.export.firmware.mapfile import split_sizes
from edgeslim.export.firmware.toolchain import Toolchain

HARNESS_FILES = ("main.cc", "op_timer.h", "startup.c", "arena.cc", "semihost.h")
LINKER_SCRIPT = "board.ld"  # written from the machine's memory map
HARNESS_OBJECTS = frozenset({"main.o", "startup.o", "arena.o"})
COMPILE_TIMEOUT_S = 900
# The linker's words when the program outgrows the board's memory (board.ld).
TOO_BIG = ("overflowed by", "will not fit in region", "leaves no room for the stack")
TOO_BIG_HINT = (
    "shrink the model (edgeslim compress, or edgeslim fit with --board), or choose a board with more memory"
)
OVERFLOW = re.compile(r"region `?(\w+)'? overflowed by (\d+) bytes")


def target_flags(machine: Machine) -> list[str]:
    # TFLite Micro's cortex_m_qemu target: soft float (the library's ABI), unsigned char.
    return [f"-mcpu={machine.cpu}", "-mthumb", "-mfloat-abi=soft", "-funsigned-char", "-mlittle-endian"]


COMMON_FLAGS = [
    "-Os",
    "-ffunction-sections",
    "-fdata-sections",
    "-fno-unwind-tables",
    "-fno-asynchronous-unwind-tables",
    "-DTF_LITE_STATIC_MEMORY",
    "-DTF_LITE_STRIP_ERROR_STRINGS",
    "-DNDEBUG",
    "-Wall",
    "-Wextra",
    "-Werror",
]
CXX_FLAGS = ["-std=c++17", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics"]


class FirmwareBuildError(RuntimeError):
    """The compiler or linker refused: a bug in the harness or the generated package, with its message."""


@dataclass(frozen=True)
class Linked:
    elf: Path
    text: int
    data: int
    bss: int
    split: dict[str, dict[str, int]]


class FirmwareBuilder:
    """Compiles the objects once in ``folder``; ``link`` can then be called for several arena sizes."""

    def __init__(self, toolchain: Toolchain, library: TflmLibrary, machine: Machine, folder: Path) -> None:
        # Absolute paths: the compiler runs in ``folder``, so a relative -I (from a relative --out) breaks.
        self.toolchain, self.library, self.machine = toolchain, library, machine
        self.folder = folder.resolve()
        self.harness = self.folder / "harness"
        self.harness.mkdir(parents=True, exist_ok=True)
        source = resources.files("edgeslim.export.firmware") / "harness"
        for name in HARNESS_FILES:
            (self.harness / name).write_bytes((source / name).read_bytes())
        (self.harness / LINKER_SCRIPT).write_text(machine.linker_script(), encoding="utf-8")

    @property
    def flags(self) -> list[str]:
        return [*target_flags(self.machine), *COMMON_FLAGS]

    def startup_defines(self) -> list[str]:
        """Where flash is, for the MPU region that makes it read-only (ARMv7-M parts only), and whether
        the kernels need the coprocessors enabled (Helium)."""
        defines = ["-DEDGESLIM_ENABLE_CP10=1"] if self.machine.has_helium else []
        if not self.machine.has_mpu:
            return defines
        size_log2 = max(5, (self.machine.flash_bytes - 1).bit_length())  # the region: a power of two
        return [
            *defines,
            "-DEDGESLIM_MPU=1",
            f"-DEDGESLIM_FLASH_ORIGIN={self.machine.flash_origin:#x}u",
            f"-DEDGESLIM_FLASH_SIZE_LOG2={size_log2}",
        ]

    def includes(self, package_dir: Path) -> list[str]:
        # The library's headers as system headers: their own warnings are not the package's.
        return [
            f"-I{package_dir.resolve()}",
            f"-I{self.harness}",
            *(f"-isystem{d}" for d in self.library.include_dirs),
        ]

    def compile(self, package_dir: Path, operators: int, jobs: int = 2) -> list[Path]:
        """startup.o, main.o and model_data.o, ``jobs`` at a time (the arena is compiled per link).
        ``operators``: the model's operator count, for the per-operator timing's records."""
        units = [
            (self.toolchain.gcc, self.harness / "startup.c", ["-std=c11", *self.startup_defines()]),
            (self.toolchain.gxx, self.harness / "main.cc", [*CXX_FLAGS, f"-DEDGESLIM_OPERATORS={operators}"]),
            (self.toolchain.gxx, package_dir.resolve() / "model_data.cc", CXX_FLAGS),
        ]
        commands = [
            [compiler, *self.flags, *extra, *self.includes(package_dir), "-c", str(source), "-o", str(obj)]
            for compiler, source, extra in units
            for obj in [self.folder / f"{source.stem}.o"]
        ]
        # Threads only wait on the compiler processes; main.cc (TFLite Micro's headers) takes longest.
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            list(pool.map(self._run, commands))
        return [Path(cmd[-1]) for cmd in commands]

    def link(self, objects: list[Path], package_dir: Path, arena_bytes: int | None, name: str) -> Linked:
        """Link with an arena of ``arena_bytes``, or None: the package's own kTensorArenaSize."""
        arena_obj = self.folder / "arena.o"
        define = [] if arena_bytes is None else [f"-DEDGESLIM_ARENA_SIZE={arena_bytes}"]
        arena_cmd = [self.toolchain.gxx, *self.flags, *CXX_FLAGS, *define, *self.includes(package_dir)]
        self._run([*arena_cmd, "-c", str(self.harness / "arena.cc"), "-o", str(arena_obj)])
        elf, map_file = self.folder / f"{name}.elf", self.folder / f"{name}.map"
        self._run(
            [
                self.toolchain.gxx,
                *target_flags(self.machine),
                "-nostartfiles",
                "--specs=nano.specs",
                "--specs=nosys.specs",
                f"-T{self.harness / LINKER_SCRIPT}",
                "-Wl,--gc-sections",
                f"-Wl,-Map={map_file}",
                *(str(o) for o in objects),
                str(arena_obj),
                str(self.library.archive),
                "-lm",
                "-o",
                str(elf),
            ]
        )
        text, data, bss = self.sizes(elf)
        return Linked(elf, text, data, bss, split_sizes(map_file, HARNESS_OBJECTS))

    def too_big(self, lines: list[str]) -> str:
        """The linker's verdict in words: which memory, by how much."""
        m = self.machine
        over = [f"{region} by {int(n):,} B" for region, n in OVERFLOW.findall("\n".join(lines))]
        if not over and any("no room for the stack" in line for line in lines):
            over = [f"RAM: data + bss leave less than the {m.stack_bytes:,} B the stack needs"]
        return f"the firmware does not fit {m.board_name}: over " + ("; ".join(over) or "its memory")

    def largest_arena(self, objects: list[Path], package_dir: Path, cap: int) -> int:
        """The largest arena this board's RAM holds beside the firmware's data, bss and stack (at most
        ``cap``): one link with a token arena shows what the rest takes."""
        token = 16
        linked = self.link(objects, package_dir, token, "room")
        rest = linked.data + linked.bss - token
        room = (self.machine.ram_bytes - self.machine.stack_bytes - rest - 64) // 16 * 16  # alignment slack
        if room < token:
            raise EdgeslimError(
                f"the firmware does not fit {self.machine.board_name}: its data and bss "
                f"take {rest:,} B of {self.machine.ram_bytes:,} B of RAM before any tensor arena",
                TOO_BIG_HINT,
            )
        return min(cap, room)

    def sizes(self, elf: Path) -> tuple[int, int, int]:
        out = self._run([self.toolchain.size, "--format=berkeley", str(elf)])
        text, data, bss = (int(v) for v in out.splitlines()[1].split()[:3])
        return text, data, bss

    def _run(self, cmd: list[str]) -> str:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, cwd=self.folder)
        if done.returncode != 0:
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
            if any(words in line for line in lines for words in TOO_BIG):
                raise EdgeslimError(self.too_big(lines), TOO_BIG_HINT)
            raise FirmwareBuildError(f"{Path(cmd[0]).name} failed: {' | '.join(lines[-6:])[:1500]}")
        return done.stdout


def compiler_version(toolchain: Toolchain) -> str:
    return f"{Path(toolchain.gxx).name} {toolchain.gcc_version}"
