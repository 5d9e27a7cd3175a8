"""What every export format provides: a name, a file suffix, the modes it can write, and ``convert``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import keras
    import numpy as np

    from edgeslim.recipe import QuantRecipe

# convert(model, recipe, calibration samples or None, batch or None for dynamic) -> (file bytes, extras)
Converter = Callable[
    ["keras.Model", "QuantRecipe", "np.ndarray | None", "int | None"], "tuple[bytes, dict[str, Any]]"
]


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    modes: tuple[str, ...]
    convert: Converter
    description: str = ""
