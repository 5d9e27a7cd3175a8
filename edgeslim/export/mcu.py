"""The ``mcu`` target: full int8 for TensorFlow Lite Micro, checked against a board, shipped as C.

Before anything is written: the minimum tensor arena (bisection on the TFLM interpreter) and the
board fit (model bytes in flash, arena in RAM); a model that does not fit raises EdgeslimError.
With the ``firmware`` option the arena and the fit come from the model built into firmware and run
on an emulated Cortex-M instead (``mcu_firmware``). After verification in LiteRT: the same test set
through TFLM itself, then the C package, its compile check and, with ``firmware``, its run as firmware.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from edgeslim.errors import EdgeslimError
from edgeslim.export.artifact import Artifact
from edgeslim.export.boards import Board, load_board
from edgeslim.export.mcu_arena import ARENA_MARGIN, find_min_arena, recommended_arena
from edgeslim.export.mcu_package import compile_check, ops_in_order, write_package
from edgeslim.export.mcu_readme import readme_text
from edgeslim.export.mcu_scheme import per_channel_cost
from edgeslim.export.target import ArtifactPlan, ExportContext, Target
from edgeslim.export.verify import verify_artifact
from edgeslim.runtime.tflite_file import read_tflite

PACKAGE_DIR = "mcu"


class McuTarget(Target):
    name = "mcu"
    description = "Microcontrollers (TFLite Micro): full int8, static batch 1, arena and board fit, C package"
    defaults = {"tflite": "int8"}
    allowed = {"tflite": ("int8",)}
    io_dtypes = ("int8",)
    static_batch = 1
    why = "TFLite Micro runs full-integer int8 TFLite models (no float16 or dynamic-range kernels)"

    def before_write(self, data: bytes, plan: ArtifactPlan, context: ExportContext) -> dict[str, Any]:
        board = load_board(context.options.board)
        arena_host = find_min_arena(data)
        firmware = None
        if context.options.firmware:
            from edgeslim.export import mcu_firmware

            firmware = mcu_firmware.measure(data, context)
            arena = firmware.arena_min_bytes
            ram = firmware.ram_bytes + firmware.stack_used_bytes
            fit = board_fit(board, firmware.flash_bytes, ram, firmware=True)
        else:
            arena = arena_host
            fit = board_fit(board, len(data), recommended_arena(arena), firmware=False)
        arena_size = recommended_arena(arena)
        info = read_tflite(data, "mcu export")
        if not fit["fits"]:
            _refuse(board, fit, arena, arena_size, firmware is not None)
        return {
            "mcu": {
                "arena_bytes": arena,
                "arena_source": "firmware" if firmware else "host",
                "arena_host_bytes": arena_host,
                "arena_margin": ARENA_MARGIN,
                "arena_size": arena_size,
                "flash_bytes": fit["flash_bytes"],
                "ram_needed_bytes": fit["ram_needed"],
                "board": board.name,
                "board_description": board.description,
                "ram_bytes": board.ram_bytes,
                "ram_reserved_bytes": board.ram_reserved_bytes,
                "ram_available": board.ram_available,
                "flash_board_bytes": board.flash_bytes,
                "flash_reserved_bytes": board.flash_reserved_bytes,
                "flash_available": board.flash_available,
                "fit": fit,
                "fits": True,
                "ops": ops_in_order(info.op_names()),
                "per_channel_cost": per_channel_cost(info, len(data), arena),
                "c_package_dir": None,
                "firmware": firmware.to_dict() if firmware else None,
            }
        }

    def after_verify(self, artifact: Artifact, context: ExportContext) -> None:
        verification = artifact.sidecar.get("verification")
        if verification is not None and context.reference is not None:
            # The microcontroller's own kernels, not LiteRT's: argmax may differ by one quantization step.
            floor = context.options.agreement_floor
            tflm = verify_artifact(artifact.path, context.reference, floor, backend="tflm", latency=False)
            verification["tflm"] = tflm
            verification["passed"] = bool(verification["passed"] and tflm["passed"])
        package_dir = artifact.path.parent / PACKAGE_DIR
        data = artifact.path.read_bytes()
        mcu = artifact.sidecar["mcu"]
        mcu["c_package_dir"] = PACKAGE_DIR  # relative to the sidecar, so a run folder can move
        write_package(package_dir, data, artifact.path.name, artifact.sidecar)
        check = compile_check(package_dir, data, mcu["ops"])
        mcu["compile_check"] = check
        if check["passed"] is False:
            raise EdgeslimError(
                f"the generated C package in {package_dir} does not compile: {check.get('reason')}",
                "this is a bug in edgeslim; please report it with the model",
            )
        if context.options.firmware:
            from edgeslim.atomic import write_text
            from edgeslim.export import mcu_firmware

            shipped = mcu_firmware.run_shipped(
                data, package_dir, context, recommended_arena(mcu["arena_host_bytes"])
            )
            mcu["firmware"] = {**shipped, "measured_before_write": mcu["firmware"]}
            if verification is not None:
                verification["firmware"] = shipped["interpreter_agreement"]
                verification["passed"] = bool(
                    verification["passed"] and shipped["interpreter_agreement"]["passed"]
                )
            write_text(package_dir / "README.md", readme_text(artifact.path.name, artifact.sidecar))


HOST_BASIS = "estimate: model bytes in flash, kTensorArenaSize in RAM, after the board's reserve"


def board_fit(board: Board, flash_needed: int, ram_needed: int, firmware: bool) -> dict[str, Any]:
    """The one board rule: export refuses what breaks it, and fit searches within it.

    With ``firmware``, the figures are the firmware's (text + data in flash; data + bss, which holds the
    arena plus its margin, and the measured stack in RAM), against the board's whole flash and RAM;
    else the model's bytes and kTensorArenaSize (the arena plus its margin) against what the board's
    reserve for the rest of the firmware leaves.
    """
    if firmware:
        from edgeslim.export.mcu_firmware import BASIS

        whole = replace(board, ram_reserved_bytes=0, flash_reserved_bytes=0)
        return {"basis": BASIS, **whole.fit(flash_needed=flash_needed, ram_needed=ram_needed)}
    return {"basis": HOST_BASIS, **board.fit(flash_needed=flash_needed, ram_needed=ram_needed)}


def _refuse(board: Board, fit: dict[str, Any], arena: int, arena_size: int, measured: bool) -> None:
    problems = []
    if not fit["flash_fits"]:
        what = "the firmware takes" if measured else "the model takes"
        problems.append(f"flash: {what} {fit['flash_bytes']:,} B of {fit['flash_available']:,} B available")
    if not fit["ram_fits"]:
        if measured:
            problems.append(
                f"RAM: the firmware needs {fit['ram_needed']:,} B (the tensor arena {arena_size:,} B = "
                f"{arena:,} B measured on the target + {ARENA_MARGIN:.0%}, data, bss and stack) of "
                f"{fit['ram_available']:,} B"
            )
        else:
            problems.append(
                f"RAM: the tensor arena needs {arena_size:,} B ({arena:,} B minimum + "
                f"{ARENA_MARGIN:.0%}) of {fit['ram_available']:,} B available"
            )
    raise EdgeslimError(
        f"the model does not fit board {board.name} ({board.description}): " + "; ".join(problems),
        "shrink it (edgeslim compress: prune, lowrank, separable), or choose a larger board, "
        "e.g. --board stm32l4r5 (640 KB RAM, 2 MB flash)",
    )


TARGET = McuTarget()
