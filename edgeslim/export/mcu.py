"""The ``mcu`` target: full int8 for TensorFlow Lite Micro, checked against a board, shipped as C.

Before anything is written: the minimum tensor arena (bisection on the TFLM interpreter) and the
board fit (model bytes in flash, arena in RAM); a model that does not fit raises EdgeslimError.
After verification in LiteRT: the same test set through TFLM itself, then the C package and its
compile check.
"""

from __future__ import annotations

from typing import Any

from edgeslim.errors import EdgeslimError
from edgeslim.export.artifact import Artifact
from edgeslim.export.boards import load_board
from edgeslim.export.mcu_arena import ARENA_MARGIN, find_min_arena, recommended_arena
from edgeslim.export.mcu_package import compile_check, ops_in_order, write_package
from edgeslim.export.target import ExportContext, Plan, Target
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

    def before_write(self, data: bytes, plan: Plan, context: ExportContext) -> dict[str, Any]:
        board = load_board(context.board)
        arena = find_min_arena(data)
        arena_size = recommended_arena(arena)
        fit = board.fit(flash_needed=len(data), ram_needed=arena_size)
        if not fit["fits"]:
            problems = []
            if not fit["flash_fits"]:
                problems.append(
                    f"flash: the model takes {len(data):,} B of {board.flash_available:,} B available"
                )
            if not fit["ram_fits"]:
                problems.append(
                    f"RAM: the tensor arena needs {arena_size:,} B ({arena:,} B minimum + "
                    f"{ARENA_MARGIN:.0%}) of {board.ram_available:,} B available"
                )
            raise EdgeslimError(
                f"the model does not fit board {board.name} ({board.description}): " + "; ".join(problems),
                "shrink it (edgeslim compress: prune, lowrank, separable), or choose a larger board, "
                "e.g. --board stm32l4r5 (640 KB RAM, 2 MB flash)",
            )
        return {
            "mcu": {
                "arena_bytes": arena,
                "arena_margin": ARENA_MARGIN,
                "arena_size": arena_size,
                "flash_bytes": len(data),
                "board": board.name,
                "board_description": board.description,
                "ram_bytes": board.ram_bytes,
                "ram_reserved_bytes": board.ram_reserved_bytes,
                "ram_available": board.ram_available,
                "flash_board_bytes": board.flash_bytes,
                "flash_reserved_bytes": board.flash_reserved_bytes,
                "flash_available": board.flash_available,
                "fits": True,
                "ops": ops_in_order(read_tflite(data, "mcu export").op_names()),
                "c_package_dir": None,
            }
        }

    def after_verify(self, artifact: Artifact, context: ExportContext) -> None:
        verification = artifact.sidecar.get("verification")
        if verification is not None and context.reference is not None:
            # The microcontroller's own kernels, not LiteRT's: argmax may differ by one quantization step.
            tflm = verify_artifact(
                artifact.path, context.reference, context.floor, backend="tflm", latency=False
            )
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


TARGET = McuTarget()
