"""Run each artifact in its own runtime on the test set and compare it with the Keras model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeslim.runtime import benchmark, load

if TYPE_CHECKING:
    import keras

    from edgeslim.data import Dataset

DEFAULT_FLOOR = 0.98
LATENCY_RUNS = 30


@dataclass
class Reference:
    """The Keras model's outputs on the verification samples, computed once per export."""

    x: np.ndarray
    y: np.ndarray
    outputs: np.ndarray

    @property
    def accuracy(self) -> float:
        return float((self.outputs.argmax(axis=-1) == self.y).mean())


def keras_reference(model: keras.Model, dataset: Dataset, samples: int | None = None) -> Reference:
    """``samples`` caps the test samples used (None: the whole test set)."""
    x, y = dataset.x_test, dataset.y_test
    if samples is not None:
        x, y = x[:samples], y[:samples]
    # Direct calls, not model.predict: predict builds a new tf.function per export and warns on retracing.
    import keras

    chunks = [
        keras.ops.convert_to_numpy(model(x[i : i + 256], training=False)) for i in range(0, len(x), 256)
    ]
    outputs = np.concatenate(chunks).astype(np.float32)
    return Reference(x=x.astype(np.float32), y=np.asarray(y), outputs=outputs)


def verify_artifact(
    path: Path,
    reference: Reference,
    floor: float = DEFAULT_FLOOR,
    backend: str | None = None,
    latency: bool = True,
) -> dict[str, Any]:
    """Accuracy, agreement with Keras (share of equal argmax), max |difference| of the dequantized outputs."""
    model = load(path, backend=backend)
    outputs = model.predict(reference.x)
    if isinstance(outputs, list):
        outputs = outputs[0]
    agreement = float((outputs.argmax(axis=-1) == reference.outputs.argmax(axis=-1)).mean())
    result: dict[str, Any] = {
        "backend": model.backend,
        "accuracy": float((outputs.argmax(axis=-1) == reference.y).mean()),
        "keras_accuracy": reference.accuracy,
        "agreement": agreement,
        "max_abs_diff": float(np.abs(outputs - reference.outputs).max()),
        "samples": int(len(reference.y)),
        "floor": floor,
        "passed": agreement >= floor,
    }
    if latency:
        timing = benchmark(model, batch=1, warmup=3, runs=LATENCY_RUNS, x=reference.x[:8])
        result["latency_ms_p50"] = timing["p50_ms"]
    return result
