"""The quantization recipe an export follows: a mode name, or the dict the ``quantize`` stage hands over."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from edgeslim.errors import EdgeslimError

MODES = ("float32", "float16", "dynamic", "int8", "int16x8")
IO_DTYPES = ("int8", "uint8")
CALIBRATIONS = ("minmax", "entropy", "percentile")
ALIASES = {
    "fp32": "float32",
    "fp16": "float16",
    "none": "float32",
    "full_int8": "int8",
    "dynamic_range": "dynamic",
}
_KEYS = {"mode", "per_channel", "calib_samples", "io_dtype", "calibration"}


@dataclass(frozen=True)
class QuantRecipe:
    """How to quantize one artifact.

    ``calib_samples`` representative training samples calibrate the activation ranges (int8 and
    int16x8). ``io_dtype`` is the integer type of a full-int8 model's input and output;
    ``calibration`` the ONNX calibration method (TFLite always uses min/max).
    """

    mode: str = "int8"
    per_channel: bool = True
    calib_samples: int = 200
    io_dtype: str = "int8"
    calibration: str = "minmax"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise EdgeslimError(f"quant mode {self.mode!r} is unknown", f"choose one of {list(MODES)}")
        if self.io_dtype not in IO_DTYPES:
            raise EdgeslimError(f"io_dtype {self.io_dtype!r} is unknown", f"choose one of {list(IO_DTYPES)}")
        if self.calibration not in CALIBRATIONS:
            raise EdgeslimError(
                f"calibration {self.calibration!r} is unknown", f"choose one of {list(CALIBRATIONS)}"
            )
        if not isinstance(self.calib_samples, int) or self.calib_samples < 1:
            raise EdgeslimError(f"calib_samples must be a positive integer, got {self.calib_samples!r}")

    @property
    def needs_calibration(self) -> bool:
        return self.mode in ("int8", "int16x8")

    def with_mode(self, mode: str) -> QuantRecipe:
        return replace(self, mode=ALIASES.get(mode, mode))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_quant(
    quant: str | dict[str, Any] | QuantRecipe | None,
    *,
    calib_samples: int = 200,
    io_dtype: str = "int8",
    calibration: str = "minmax",
) -> QuantRecipe | None:
    """A recipe from a mode name, a recipe dict or a recipe; ``None`` lets the target choose the mode.

    The keyword arguments fill what a plain mode name leaves open; a dict's own keys take precedence.
    """
    if quant is None:
        return None
    if isinstance(quant, QuantRecipe):
        return quant
    if isinstance(quant, str):
        return QuantRecipe(
            ALIASES.get(quant.lower(), quant.lower()), True, calib_samples, io_dtype, calibration
        )
    if isinstance(quant, dict):
        unknown = set(quant) - _KEYS
        if unknown:
            raise EdgeslimError(
                f"quant recipe has unknown keys {sorted(unknown)}", f"use only {sorted(_KEYS)}"
            )
        mode = str(quant.get("mode", "int8")).lower()
        return QuantRecipe(
            mode=ALIASES.get(mode, mode),
            per_channel=bool(quant.get("per_channel", True)),
            calib_samples=int(quant.get("calib_samples", calib_samples)),
            io_dtype=str(quant.get("io_dtype", io_dtype)),
            calibration=str(quant.get("calibration", calibration)).lower(),
        )
    raise EdgeslimError(f"quant must be a mode name or a recipe dict, got {type(quant).__name__}")
