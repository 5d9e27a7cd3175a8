"""How an export converts and checks: every setting's default and accepted values, once.

``edgeslim export``'s option defaults, the pipeline config's ``export:`` section and ``export_model`` read
them here, so the three never disagree. Importing this module imports neither TensorFlow nor Keras.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from edgeslim.errors import ConfigError
from edgeslim.export.boards import DEFAULT_BOARD
from edgeslim.limits import MAX_CALIB_SAMPLES, MAX_FIRMWARE_SAMPLES, MAX_VERIFY_SAMPLES
from edgeslim.recipe import CALIBRATIONS, IO_DTYPES
from edgeslim.settings import Rule, check_rules, setting
from edgeslim.tflm_kernels import DEFAULT_KERNELS, KERNELS, firmware_only

if TYPE_CHECKING:
    from edgeslim.recipe import QuantRecipe

DEFAULT_FLOOR = 0.98  # argmax agreement with Keras below which an artifact fails verification
FIRMWARE_SAMPLES = 32  # test samples run on the emulated board (all of them for byte-for-byte agreement)


@dataclass(frozen=True)
class ExportOptions:
    # None: the target's formats (cpu: tflite and onnx)
    formats: tuple[str, ...] | None = None
    # A mode (float32, float16, dynamic, int8, int16x8) changes only the mode of the recipe a quantize stage
    # saved in the model; a recipe dict or QuantRecipe replaces it. None: the saved recipe where the target
    # takes its mode, else the target's default mode per format.
    quant: str | dict[str, Any] | QuantRecipe | None = None
    # mcu: a shipped profile's name or a board JSON file (None: the default board)
    board: str | None = setting(DEFAULT_BOARD, Rule("str", optional=True))
    # calib_samples, io_dtype, per_channel: None keeps the saved recipe's (without one: 200, int8, True)
    calib_samples: int | None = setting(None, Rule("int", 1, MAX_CALIB_SAMPLES, optional=True))
    io_dtype: str | None = setting(None, Rule("str", choices=IO_DTYPES, optional=True))
    per_channel: bool | None = setting(None, Rule("bool", optional=True))
    calibration: str = setting("minmax", Rule("str", choices=CALIBRATIONS))  # ONNX int8 calibration
    agreement_floor: float = setting(DEFAULT_FLOOR, Rule("float", 0, 1))
    verify: bool = setting(True, Rule("bool"))  # run every artifact on the test set in its runtime
    verify_samples: int | None = setting(None, Rule("int", 1, MAX_VERIFY_SAMPLES, optional=True))  # None: all
    # Below the floor an artifact is written with verification.passed false; strict then raises.
    strict: bool = setting(True, Rule("bool"))
    # mcu: build the C package into firmware, run it on the emulated board, take its measured figures
    firmware: bool = setting(False, Rule("bool"))
    firmware_samples: int = setting(FIRMWARE_SAMPLES, Rule("int", 1, MAX_FIRMWARE_SAMPLES))
    # firmware: TFLite Micro's kernels; CMSIS-NN is what products ship on Arm, reference is for comparison
    kernels: str = setting(DEFAULT_KERNELS, Rule("str", choices=tuple(KERNELS)))

    def validate(self, cli: bool = False) -> None:
        """Every field against its rule, all mistakes in one ConfigError, each named as the API
        (``calib_samples``) or the CLI (``--calib-samples``) spells it."""
        name = (lambda f: "--" + f.replace("_", "-")) if cli else (lambda f: f)
        problems = check_rules(self, "export", name)
        if self.kernels in KERNELS and self.kernels != DEFAULT_KERNELS and not self.firmware:
            problems.append(firmware_only(name("kernels"), name("firmware")))
        if problems:
            raise ConfigError.several(problems)

    def updated(self, **settings: Any) -> ExportOptions:
        """A copy with ``settings`` changed, validated; an unknown name is a TypeError (a caller's bug)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise TypeError(f"ExportOptions has no setting {unknown[0]!r}; the settings are {sorted(known)}")
        formats = settings.get("formats")
        if isinstance(formats, str | list):
            settings["formats"] = (formats,) if isinstance(formats, str) else tuple(formats)
        options = replace(self, **settings)
        options.validate()
        return options

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


DEFAULTS = ExportOptions()
# What a pipeline config's export: section may set besides its targets and per-target formats: the quant
# mode comes from the model's recipe, and the pipeline reports failed artifacts (never strict).
CONFIG_FIELDS = (
    "board",
    "calib_samples",
    "io_dtype",
    "per_channel",
    "calibration",
    "agreement_floor",
    "verify_samples",
    "firmware",
    "firmware_samples",
    "kernels",
)


def config_rules() -> dict[str, Rule]:
    """The config schema's entries for the settings a pipeline's export: section takes."""
    return {f.name: f.metadata["rule"] for f in fields(ExportOptions) if f.name in CONFIG_FIELDS}


def config_defaults() -> dict[str, Any]:
    return {name: getattr(DEFAULTS, name) for name in CONFIG_FIELDS}
