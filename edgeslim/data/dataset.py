"""The Dataset type every stage shares."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Preprocessing:
    """How raw device input becomes model input: ``model_input = raw * scale + offset``.

    A quantized artifact needs this to map a sensor's raw values (uint8 pixels, say) to its input scale.
    """

    scale: float = 1.0
    offset: float = 0.0
    raw_dtype: str = "float32"

    def apply(self, raw: np.ndarray) -> np.ndarray:
        return (raw.astype(np.float32) * np.float32(self.scale) + np.float32(self.offset)).astype(np.float32)

    def to_dict(self) -> dict[str, float | str]:
        return {"scale": self.scale, "offset": self.offset, "raw_dtype": self.raw_dtype}


@dataclass
class Dataset:
    """Train, validation and test arrays (already preprocessed, float32, NHWC) with their metadata."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    preprocessing: Preprocessing = field(default_factory=Preprocessing)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def representative(self, n: int = 200, seed: int = 0) -> np.ndarray:
        """``n`` training samples for calibration, drawn deterministically."""
        n = min(n, len(self.x_train))
        idx = np.random.default_rng(seed).choice(len(self.x_train), size=n, replace=False)
        return self.x_train[np.sort(idx)]

    def summary(self) -> dict[str, object]:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "train": len(self.x_train),
            "val": len(self.x_val),
            "test": len(self.x_test),
            "preprocessing": self.preprocessing.to_dict(),
        }
