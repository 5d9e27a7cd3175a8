"""The quantization recipe: what the export step does when it converts a model to LiteRT.

``{"mode": "int8", "per_channel": True, "calib_samples": 500, "io_dtype": "int8"}``; a bare mode
string stands for that mode with the defaults.
"""

from __future__ import annotations

from typing import Any

from edgeslim.errors import ConfigError

MODES = ("float32", "float16", "dynamic", "int8", "int16x8")
IO_DTYPES = ("int8", "uint8")
DEFAULTS: dict[str, Any] = {"mode": "int8", "per_channel": True, "calib_samples": 500, "io_dtype": "int8"}


def normalize_recipe(recipe: str | dict[str, Any], prefix: str = "quantize") -> dict[str, Any]:
    """A full, validated recipe dict from a mode name or a partial dict."""
    values = {"mode": recipe} if isinstance(recipe, str) else dict(recipe)
    unknown = sorted(set(values) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"{prefix}.{unknown[0]}: unknown recipe key", f"known keys: {sorted(DEFAULTS)}")
    spec = DEFAULTS | values
    if spec["mode"] not in MODES:
        raise ConfigError(f"{prefix}.mode: must be one of {list(MODES)}, got {spec['mode']!r}")
    if not isinstance(spec["per_channel"], bool):
        raise ConfigError(f"{prefix}.per_channel: must be true or false, got {spec['per_channel']!r}")
    calib = spec["calib_samples"]
    if isinstance(calib, bool) or not isinstance(calib, int) or calib < 1:
        raise ConfigError(f"{prefix}.calib_samples: must be a positive integer, got {calib!r}")
    if spec["io_dtype"] not in IO_DTYPES:
        raise ConfigError(f"{prefix}.io_dtype: must be one of {list(IO_DTYPES)}, got {spec['io_dtype']!r}")
    return spec
