"""What a deployment target decides: which formats and modes, a static batch, and its own checks.

A target is a small class; adding one is a new module with a subclass and one line in
``edgeslim.export.registry``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from edgeslim.errors import EdgeslimError
from edgeslim.export.format import Format
from edgeslim.export.options import ExportOptions
from edgeslim.recipe import QuantRecipe

if TYPE_CHECKING:
    from edgeslim.data import Dataset
    from edgeslim.export.artifact import Artifact
    from edgeslim.export.verify import Reference


@dataclass(frozen=True)
class ArtifactPlan:
    """One artifact to write: a format and the recipe for it."""

    format: Format
    recipe: QuantRecipe


@dataclass
class ExportContext:
    """What the target hooks may need beyond the file itself."""

    out_dir: Path
    dataset: Dataset
    options: ExportOptions = field(default_factory=ExportOptions)
    reference: Reference | None = None


class Target:
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # format name -> the mode it gets when the user names none, and the modes the target accepts.
    defaults: ClassVar[dict[str, str]] = {}
    allowed: ClassVar[dict[str, tuple[str, ...]]] = {}
    io_dtypes: ClassVar[tuple[str, ...]] = ("int8", "uint8")
    static_batch: ClassVar[int | None] = None  # None keeps the batch dimension dynamic
    why: ClassVar[str] = ""  # one line on the target's constraints, for error messages

    def plan(
        self, formats: list[str] | None, recipe: QuantRecipe, mode_given: bool, available: dict[str, Format]
    ) -> list[ArtifactPlan]:
        """The artifacts to write; ``mode_given`` False lets each format take this target's default mode."""
        names = formats or list(self.defaults)
        plans = []
        for name in names:
            if name not in available:
                raise EdgeslimError(f"unknown export format {name!r}", f"choose one of {sorted(available)}")
            if name not in self.allowed:
                raise EdgeslimError(
                    f"target {self.name} does not take format {name}: {self.why}",
                    f"use --format {' or '.join(self.allowed)}",
                )
            mode = recipe.mode if mode_given else self.defaults[name]
            if mode not in available[name].modes:
                raise EdgeslimError(
                    f"format {name} cannot be written in quant mode {mode}",
                    f"{name} takes {', '.join(available[name].modes)}",
                )
            if mode not in self.allowed[name]:
                raise EdgeslimError(
                    f"target {self.name} does not take {name} {mode}: {self.why}",
                    f"use --quant {' or '.join(self.allowed[name])}",
                )
            if mode == "int8" and name == "tflite" and recipe.io_dtype not in self.io_dtypes:
                raise EdgeslimError(
                    f"target {self.name} needs {' or '.join(self.io_dtypes)} input and output, "
                    f"not {recipe.io_dtype}",
                    f"pass --io-dtype {self.io_dtypes[0]}",
                )
            plans.append(ArtifactPlan(available[name], recipe.with_mode(mode)))
        return plans

    def before_write(self, data: bytes, plan: ArtifactPlan, context: ExportContext) -> dict[str, Any]:
        """Checks on the converted bytes before anything is written; extras for the sidecar.

        Raise EdgeslimError here when the artifact cannot serve the target (a model too big for a board).
        """
        return {}

    def after_verify(self, artifact: Artifact, context: ExportContext) -> None:
        """Work that needs the written, verified file (a C package, a compiler run)."""
        return None
