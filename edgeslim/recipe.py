"""The quantization recipe: one type, set by the quantize stage, saved with the model, honoured by export.

``QuantRecipe(mode="int8", per_channel=True, calib_samples=200, io_dtype="int8", calibration="minmax")``.
``calib_samples`` representative training samples calibrate the activation ranges (int8 and int16x8);
``io_dtype`` is the integer type of a full-int8 model's input and output; ``calibration`` the ONNX
calibration method (LiteRT always uses min/max).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from edgeslim.errors import ConfigError, Problems

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
DEFAULT_CALIB_SAMPLES = 200


@dataclass(frozen=True)
class QuantRecipe:
    mode: str = "int8"
    per_channel: bool = True
    calib_samples: int = DEFAULT_CALIB_SAMPLES
    io_dtype: str = "int8"
    calibration: str = "minmax"

    def __post_init__(self) -> None:
        problems = Problems()
        if self.mode not in MODES:
            problems.add(f"quant mode {self.mode!r} is unknown", f"choose one of {list(MODES)}")
        if not isinstance(self.per_channel, bool):
            problems.add(f"per_channel must be true or false, got {self.per_channel!r}")
        calib = self.calib_samples
        if isinstance(calib, bool) or not isinstance(calib, int) or calib < 1:
            problems.add(f"calib_samples must be a positive integer, got {calib!r}")
        if self.io_dtype not in IO_DTYPES:
            problems.add(f"io_dtype {self.io_dtype!r} is unknown", f"choose one of {list(IO_DTYPES)}")
        if self.calibration not in CALIBRATIONS:
            problems.add(
                f"calibration {self.calibration!r} is unknown", f"choose one of {list(CALIBRATIONS)}"
            )
        problems.raise_if_any()

    @property
    def needs_calibration(self) -> bool:
        return self.mode in ("int8", "int16x8")

    def with_mode(self, mode: str) -> QuantRecipe:
        return replace(self, mode=ALIASES.get(mode, mode))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> QuantRecipe:
        unknown = sorted(set(values) - {f for f in cls.__dataclass_fields__})
        if unknown:
            raise ConfigError(
                f"quant recipe: unknown key {unknown[0]!r}", f"use only {sorted(cls.__dataclass_fields__)}"
            )
        mode = str(values.get("mode", "int8")).lower()
        return cls(**(values | {"mode": ALIASES.get(mode, mode)}))


def parse_quant(
    quant: str | dict[str, Any] | QuantRecipe | None,
    *,
    calib_samples: int = DEFAULT_CALIB_SAMPLES,
    io_dtype: str = "int8",
    calibration: str = "minmax",
) -> QuantRecipe | None:
    """A recipe from a mode name, a recipe dict or a recipe; ``None`` lets the export target choose.

    The keyword arguments fill what a plain mode name leaves open; a dict's own keys take precedence.
    """
    if quant is None:
        return None
    if isinstance(quant, QuantRecipe):
        return quant
    if isinstance(quant, str):
        mode = quant.lower()
        return QuantRecipe(ALIASES.get(mode, mode), True, calib_samples, io_dtype, calibration)
    if isinstance(quant, dict):
        defaults = {"calib_samples": calib_samples, "io_dtype": io_dtype, "calibration": calibration}
        return QuantRecipe.from_dict(defaults | quant)
    raise ConfigError(f"quant must be a mode name or a recipe dict, got {type(quant).__name__}")
