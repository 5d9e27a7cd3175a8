"""The Dataset type every stage shares: splits, task, and one or several named inputs and outputs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeslim.errors import EdgeslimError
from edgeslim.tasks import DEFAULT_TASK, get_task

SPLITS = ("train", "val", "test")
# One input or output as a plain array (the common case), several as a dict keyed by their names.
Arrays = np.ndarray | dict[str, np.ndarray]


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
    """Train, validation and test splits (already preprocessed, float32) with their metadata.

    ``x_*`` is one array (one model input) or a dict input name -> array; ``y_*`` likewise for the
    outputs: class indices (classification), float targets (regression) or the input itself
    (reconstruction). ``anomaly``: for reconstruction, one flag per test sample marking it anomalous,
    which lets the reconstruction error be scored as an anomaly detector (AUC).
    """

    name: str
    x_train: Arrays
    y_train: Arrays
    x_val: Arrays
    y_val: Arrays
    x_test: Arrays
    y_test: Arrays
    class_names: list[str]
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    task: str = DEFAULT_TASK
    anomaly: np.ndarray | None = None
    anomaly_class: int | None = None  # the class held out as anomalous (reconstruction), for the record

    def __post_init__(self) -> None:
        get_task(self.task)  # an unknown task fails here, with the choices
        for split in SPLITS:
            sizes = {len(a) for a in _values(self.x(split))} | {len(a) for a in _values(self.y(split))}
            if len(sizes) > 1:
                raise EdgeslimError(
                    f"dataset {self.name}: the {split} inputs and targets have different row counts "
                    f"{sorted(sizes)}",
                    "give every input and output array of a split the same number of rows",
                )
        if self.anomaly is not None and len(self.anomaly) != self.size("test"):
            raise EdgeslimError(
                f"dataset {self.name}: {len(self.anomaly)} anomaly flags, {self.size('test')} test samples",
                "give one anomaly flag per test sample",
            )

    # --- structure ---------------------------------------------------------------------------------
    @property
    def multi_input(self) -> bool:
        return isinstance(self.x_train, Mapping)

    @property
    def multi_output(self) -> bool:
        return isinstance(self.y_train, Mapping)

    @property
    def input_names(self) -> list[str]:
        """The inputs' names in sorted order (the order Keras and the converters flatten a dict in)."""
        return sorted(self.x_train) if isinstance(self.x_train, Mapping) else ["input"]

    @property
    def output_names(self) -> list[str]:
        return sorted(self.y_train) if isinstance(self.y_train, Mapping) else ["output"]

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample shape of each input, by name (``{"input": shape}`` for a one-input dataset)."""
        if isinstance(self.x_train, Mapping):
            return {k: _sample_shape(self.x_train[k]) for k in sorted(self.x_train)}
        return {"input": _sample_shape(self.x_train)}

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The per-sample shape of the one input; a dataset with several inputs names them instead."""
        if isinstance(self.x_train, Mapping):
            raise EdgeslimError(
                f"dataset {self.name} has {len(self.x_train)} inputs {self.input_names}, not one input shape",
                "use a .keras model that takes these named inputs (dataset.input_shapes gives their shapes)",
            )
        return _sample_shape(self.x_train)

    @property
    def target_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample shape of each target, by name (empty for class indices)."""
        if isinstance(self.y_train, Mapping):
            return {k: _sample_shape(self.y_train[k]) for k in sorted(self.y_train)}
        return {"output": _sample_shape(self.y_train)}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # --- rows --------------------------------------------------------------------------------------
    def x(self, split: str) -> Arrays:
        return getattr(self, f"x_{_split(split)}")

    def y(self, split: str) -> Arrays:
        return getattr(self, f"y_{_split(split)}")

    def size(self, split: str) -> int:
        return len(_values(self.x(split))[0])

    def take(self, split: str, idx: Any) -> tuple[Arrays, Arrays]:
        """Rows ``idx`` (a slice, indices or a mask) of a split's inputs and targets, same structure."""
        return select(self.x(split), idx), select(self.y(split), idx)

    def representative(self, n: int = 200, seed: int = 0) -> Arrays:
        """``n`` training samples for calibration, drawn deterministically (same structure as x)."""
        total = self.size("train")
        n = min(n, total)
        idx = np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))
        return select(self.x_train, idx)

    def summary(self) -> dict[str, object]:
        out: dict[str, object] = {
            "name": self.name,
            "task": self.task,
            "input_shape": list(self.input_shapes[self.input_names[0]]) if not self.multi_input else None,
            "num_classes": self.num_classes,
            "train": self.size("train"),
            "val": self.size("val"),
            "test": self.size("test"),
            "preprocessing": self.preprocessing.to_dict(),
        }
        if self.multi_input:
            out["inputs"] = {k: list(v) for k, v in self.input_shapes.items()}
        if self.multi_output:
            out["outputs"] = {k: list(v) for k, v in self.target_shapes.items()}
        if self.anomaly is not None:
            out["anomaly_class"] = self.anomaly_class
            out["test_anomalies"] = int(np.sum(self.anomaly))
        return out


def select(arrays: Arrays, idx: Any) -> Arrays:
    """The same rows of one array or of every array in a dict."""
    if isinstance(arrays, Mapping):
        return {k: v[idx] for k, v in arrays.items()}
    return arrays[idx]


def _values(arrays: Arrays) -> list[np.ndarray]:
    return list(arrays.values()) if isinstance(arrays, Mapping) else [arrays]


def _sample_shape(array: np.ndarray) -> tuple[int, ...]:
    return tuple(int(d) for d in np.shape(array)[1:])


def _split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")  # a caller's bug, not the user's
    return split
