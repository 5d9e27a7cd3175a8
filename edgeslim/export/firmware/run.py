"""``run_firmware``: build the harness around a model, run it on the emulated board, read the figures.

Two ways to run:
- with ``package_dir`` (an exported C package, as it ships): one build with the package's own
  ``kTensorArenaSize``, one run on every sample;
- from the ``.tflite`` bytes alone: a build with a large arena measures (the arena used, the
  outputs, the instructions), then a second build with the minimum arena (plus ``arena_margin`` when
  given) runs the first sample again and gives the flash and RAM figures of a firmware that needs no
  more than that.

The minimum arena is found by bisection on the target, one run per size tried (``minimum_arena``), so
that a kernel that faults in a too-small arena ends only that trial.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgeslim.errors import EdgeslimError, MissingTool
from edgeslim.export.firmware.builder import (
    COMMON_FLAGS,
    FirmwareBuilder,
    Linked,
    compiler_version,
    target_flags,
)
from edgeslim.export.firmware.emulator import INPUTS_FILE, PROBE_FILE, FirmwareRunError, RunReport, run_elf
from edgeslim.export.firmware.library import cached_library, ensure_library
from edgeslim.export.firmware.machines import DEFAULT_MACHINE, Machine, resolve_machine
from edgeslim.export.firmware.profile import op_profile
from edgeslim.export.firmware.result import FirmwareResult
from edgeslim.export.firmware.toolchain import (
    APT_HINT,
    find_sources,
    find_toolchain,
    qemu_machines,
    sources_reason,
)
from edgeslim.runtime.tflite_file import TFLiteModelInfo, read_tflite
from edgeslim.tflm_kernels import DEFAULT_KERNELS, check_kernels

MEASURE_ARENA_BYTES = 3 * 1024 * 1024  # at most: of the MPS2 boards' 4 MB of RAM
DEFAULT_TIMEOUT_S = 1800.0


def firmware_available(board: str = DEFAULT_MACHINE) -> tuple[bool, str]:
    """(True, "") when the firmware for ``board`` can be built and run here, else (False, why not)."""
    try:
        machine = resolve_machine(board)
    except EdgeslimError as exc:
        return False, exc.message
    toolchain, reason = find_toolchain()
    if toolchain is None:
        return False, reason
    if machine.machine not in qemu_machines(toolchain.qemu):
        return False, f"{toolchain.qemu} does not emulate board {machine.machine}"
    if find_sources() is None:
        return False, sources_reason()
    return True, ""


def run_firmware(
    tflite: bytes | Path,
    board: str = DEFAULT_MACHINE,
    inputs: np.ndarray | None = None,
    work_dir: str | Path | None = None,
    *,
    package_dir: Path | None = None,
    arena_margin: float | None = None,
    kernels: str = DEFAULT_KERNELS,
    timeout: float = DEFAULT_TIMEOUT_S,
    jobs: int = 2,
    log: Callable[[str], None] | None = None,
) -> FirmwareResult:
    """Build and run the firmware; ``inputs``: samples for the model's input (its int8 values, or float
    data quantized with the input's scale and zero point), None for one inference on zeros.
    ``kernels``: TFLite Micro's kernel set (``KERNELS``): CMSIS-NN, as products ship, or the reference ones.

    ``work_dir`` keeps the build (ELF, map file, result.txt) for inspection; None uses a temporary one.
    Raises EdgeslimError when the tools are missing or the model cannot run there.
    """
    machine = resolve_machine(board)
    check_kernels(kernels)
    ok, reason = firmware_available(machine.name)
    if not ok:
        raise MissingTool(f"cannot build the firmware for {machine.name}: {reason}", APT_HINT)
    if isinstance(tflite, str | Path) and not Path(tflite).is_file():
        raise EdgeslimError(f"{tflite}: no such .tflite file", "export the model with --target mcu first")
    data = Path(tflite).read_bytes() if isinstance(tflite, str | Path) else bytes(tflite)
    info = read_tflite(data, "firmware")
    if len(info.inputs) != 1 or len(info.outputs) != 1:
        raise EdgeslimError(
            f"the firmware harness runs models with one input and one output, this one has "
            f"{len(info.inputs)} and {len(info.outputs)}"
        )
    raw = raw_inputs(info, inputs)
    toolchain, _ = find_toolchain()
    assert toolchain is not None  # firmware_available checked it
    was_cached = cached_library(machine.cpu, kernels) is not None
    started = time.perf_counter()
    library = ensure_library(machine.cpu, kernels, jobs=jobs, log=log or _stderr)
    library_seconds = 0.0 if was_cached else time.perf_counter() - started

    with _folder(work_dir) as folder:
        builder = FirmwareBuilder(toolchain, library, machine, folder)
        package = (
            package_dir if package_dir is not None else _standalone_package(folder / "package", data, info)
        )
        _write_inputs(folder, raw)
        clock = _Clock()
        with clock.build():
            objects = builder.compile(package, len(info.ops), jobs)
        if package_dir is not None and arena_margin is None:
            with clock.build():
                final = builder.link(objects, package, None, "firmware")
            measured = last = _run(builder, final, folder, timeout, clock, shipped=True)
            arena_min = minimum_arena(builder, final, folder, measured, timeout, clock)
        else:
            with clock.build():
                room = builder.largest_arena(objects, package, MEASURE_ARENA_BYTES)
                probe = builder.link(objects, package, room, "measure")
            measured = _run(builder, probe, folder, timeout, clock, shipped=False)
            arena = arena_min = minimum_arena(builder, probe, folder, measured, timeout, clock)
            if arena_margin is not None:
                from edgeslim.export.mcu_arena import recommended_arena

                arena = recommended_arena(arena, arena_margin)
            with clock.build():
                final = builder.link(objects, package, arena, "firmware")
            _write_inputs(folder, None if raw is None else raw[:1])
            last = _run(builder, final, folder, timeout, clock, shipped=False)
            if last.samples[0][1] != measured.samples[0][1]:
                raise FirmwareRunError("the firmware's outputs changed with the arena size", last)

    _check_stack(machine, last)
    ratio = measured.instructions_per_tick
    instructions = [round(ticks * ratio) for ticks, _ in measured.samples]
    out = info.tensors[info.outputs[0]]
    out_dtype = np.dtype(out.type.lower())
    outputs = np.frombuffer(b"".join(o for _, o in measured.samples), out_dtype)
    return FirmwareResult(
        machine=machine.machine,
        cpu=machine.cpu,
        kernels=kernels,
        text_bytes=final.text,
        data_bytes=final.data,
        bss_bytes=final.bss,
        model_bytes=final.split["model"]["text"],
        runtime_text_bytes=final.split["tflm"]["text"],
        arena_used_bytes=measured.arena_used,
        arena_min_bytes=arena_min,
        arena_linked_bytes=last.arena_capacity,
        stack_used_bytes=last.stack_used,
        instructions_per_inference=int(np.median(instructions)),
        instructions_per_tick=ratio,
        outputs=outputs.reshape(len(measured.samples), *out.shape[1:]),
        build_seconds=clock.build_seconds,
        run_seconds=clock.run_seconds,
        library_build_seconds=library_seconds,
        split=final.split,
        instructions=instructions,
        library_key=library.key,
        compiler=compiler_version(toolchain),
        flags=" ".join([*target_flags(machine), *COMMON_FLAGS]),
        profile=op_profile(info, measured, ratio),
    )


def _check_stack(machine: Machine, report: RunReport) -> None:
    """The painted stack was used to its limit: it may have run into the arena, so no figure holds."""
    if report.stack_used >= machine.stack_bytes - 16:
        raise EdgeslimError(
            f"the firmware's stack reached the {machine.stack_bytes:,} B {machine.board_name} "
            "keeps for it: its figures cannot be trusted",
            "choose a board with more RAM (edgeslim firmware --board cortex-m4)",
        )


def raw_inputs(info: TFLiteModelInfo, inputs: np.ndarray | None) -> np.ndarray | None:
    """The samples as the input tensor's own type, shape (N, *input shape without the batch)."""
    if inputs is None:
        return None
    from edgeslim.runtime.spec import Codec

    tensor = info.tensors[info.inputs[0]]
    dtype, trailing = np.dtype(tensor.type.lower()), tuple(tensor.shape[1:])
    x = np.asarray(inputs)
    if x.shape == trailing:
        x = x[None]
    if x.shape[1:] != trailing or len(x) == 0:
        raise EdgeslimError(
            f"firmware inputs have shape {x.shape}, the model takes (N, {', '.join(map(str, trailing))})",
            "pass the samples with the model's input shape",
        )
    if x.dtype.kind == "f" and tensor.scale:
        return Codec(tensor.spec()).encode(x.astype(np.float32))
    if x.dtype != dtype:
        raise EdgeslimError(
            f"firmware inputs are {x.dtype}, the model's input is {dtype}", "pass float or the input's type"
        )
    return np.ascontiguousarray(x)


def _stderr(message: str) -> None:
    # Building TFLite Micro takes minutes the first time: say so rather than sit silent.
    print(message, file=sys.stderr, flush=True)


class _Clock:
    def __init__(self) -> None:
        self.build_seconds = 0.0
        self.run_seconds = 0.0

    @contextlib.contextmanager
    def build(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.build_seconds += time.perf_counter() - started


def _run(
    builder: FirmwareBuilder, linked: Linked, folder: Path, timeout: float, clock: _Clock, shipped: bool
) -> RunReport:
    try:
        report = run_elf(builder.toolchain.qemu, builder.machine.machine, linked.elf, folder, timeout)
    except FirmwareRunError as exc:
        if exc.report.error.startswith("error allocate"):
            m, capacity = builder.machine, exc.report.arena_capacity
            if shipped:
                raise EdgeslimError(
                    f"TFLite Micro on {m.machine} cannot allocate the model's tensors in the C package's "
                    f"kTensorArenaSize ({capacity:,} B)",
                    "re-export the C package, or choose a board with more RAM",
                ) from None
            raise EdgeslimError(
                f"the model does not fit {m.board_name}: TFLite Micro cannot allocate its tensors in the "
                f"largest arena the board's {m.ram_bytes:,} B of RAM leave beside the firmware and its "
                f"{m.stack_bytes:,} B stack ({capacity:,} B)",
                "shrink the model's activations (edgeslim fit --board), or choose a board with more RAM; "
                "edgeslim firmware MODEL --board cortex-m4 measures the arena it needs",
            ) from None
        if exc.report.error.startswith(HALTED):
            raise EdgeslimError(
                f"TFLite Micro stopped on a failed internal check while running the model on "
                f"{builder.machine.machine}",
                "TFLite Micro's Python interpreter (edgeslim eval --backend tflm) should fail the same way; "
                "look for degenerate quantization (activation scales near zero: outputs that vanish)",
            ) from None
        raise
    clock.run_seconds += report.seconds
    return report


HALTED = ("error abort", "error halted")  # the harness's lines for TFLite Micro stopping on a failed check
PROBE_SLACK = 64  # below arena_used_bytes(): allocation padding only, so the search starts this close


def minimum_arena(
    builder: FirmwareBuilder, linked: Linked, folder: Path, measured: RunReport, timeout: float, clock: _Clock
) -> int:
    """The smallest arena AllocateTensors() accepts on the target, by bisection in separate runs.

    The answer lies at or just above the interpreter's own count with the whole arena (``measured``);
    the search widens both ways until a size fails and a size works, so it never trusts that guess."""

    def allocates(size: int) -> bool:
        (folder / PROBE_FILE).write_bytes(int(size).to_bytes(4, "little"))
        try:
            report = run_elf(builder.toolchain.qemu, builder.machine.machine, linked.elf, folder, timeout)
        except FirmwareRunError as exc:
            if exc.report.error.startswith(("fault", "error allocate", *HALTED)):
                return False  # a kernel that wrote outside, or stopped on, a too-small arena
            raise
        finally:
            (folder / PROBE_FILE).unlink(missing_ok=True)
        clock.run_seconds += report.seconds
        if report.probe is None or report.probe[0] != size:
            raise FirmwareRunError(f"the firmware did not answer the arena probe of {size} B", report)
        return report.probe[1]

    used, capacity = measured.arena_used, measured.arena_capacity
    works = min(used + PROBE_SLACK, capacity)
    while not allocates(works):  # the padding guess was short: widen the step up to the capacity
        if works >= capacity:
            raise FirmwareRunError(f"the arena of {works:,} B no longer allocates", RunReport())
        works = min(capacity, works + 2 * (works - used) + PROBE_SLACK)
    fails = max(0, used - PROBE_SLACK)
    while fails > 0 and allocates(fails):
        works, fails = fails, max(0, fails - 2 * (works - fails))
    while works - fails > 1:
        mid = (works + fails) // 2
        if allocates(mid):
            works = mid
        else:
            fails = mid
    return works


def _write_inputs(folder: Path, raw: np.ndarray | None) -> None:
    path = folder / INPUTS_FILE
    if raw is None:
        path.unlink(missing_ok=True)
    else:
        path.write_bytes(np.ascontiguousarray(raw).tobytes())


@contextlib.contextmanager
def _folder(work_dir: str | Path | None) -> Iterator[Path]:
    if work_dir is not None:
        folder = Path(work_dir)
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="edgeslim-firmware-") as tmp:
        yield Path(tmp)


def _standalone_package(folder: Path, data: bytes, info: TFLiteModelInfo) -> Path:
    """The C package's source files for bare ``.tflite`` bytes (no sidecar): the same generator as the
    mcu export, fed with the file's own tensor facts; the arena size is always given at link time."""
    from edgeslim.export.mcu_package import ops_in_order, write_sources

    def spec(index: int) -> dict[str, Any]:
        tensor = info.tensors[index]
        return {
            "dtype": tensor.type.lower(),
            "shape": tensor.shape,
            "scale": tensor.scale[0] if tensor.scale else None,
            "zero_point": tensor.zero_point[0] if tensor.zero_point else None,
        }

    sidecar = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "inputs": [spec(info.inputs[0])],
        "outputs": [spec(info.outputs[0])],
        "preprocessing": None,
        "mcu": {"arena_bytes": 0, "arena_margin": 0.0, "arena_size": 0, "ops": ops_in_order(info.op_names())},
    }
    write_sources(folder, data, "model.tflite", sidecar)
    return folder
