"""Run each artifact in its own runtime on the test set and compare it with the Keras model, per task.

The task (edgeslim.tasks) decides the metrics and the pass rule: argmax agreement with Keras for a
classifier, fidelity (1 - extra MSE / target variance) for regression and reconstruction; ``floor``
is the threshold of either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeslim.data.dataset import Arrays, select
from edgeslim.export.options import DEFAULT_FLOOR
from edgeslim.runtime import benchmark, load
from edgeslim.runtime.model import by_keys
from edgeslim.tasks import get_task

if TYPE_CHECKING:
    import keras

    from edgeslim.data import Dataset

LATENCY_RUNS = 30
KERAS_CHUNK = 256


@dataclass
class Reference:
    """The Keras model's outputs on the verification samples, computed once per export.

    ``x``: the inputs (one array, or a dict by input name); ``y``: the task's targets; ``outputs``:
    one array per model output, in the order the converters write them (a dict by sorted key).
    """

    x: Arrays
    y: Arrays
    outputs: list[np.ndarray]
    task: str = "classification"
    anomaly: np.ndarray | None = None
    output_names: list[str] = field(default_factory=list)

    @property
    def samples(self) -> int:
        return len(self.outputs[0])

    @property
    def keras_metrics(self) -> dict[str, Any]:
        return get_task(self.task).metrics(self.y, self._structured(self.outputs), self.anomaly)

    @property
    def accuracy(self) -> float | None:
        """The Keras model's accuracy (classification), None for other tasks."""
        return self.keras_metrics["accuracy"] if self.task == "classification" else None

    def targets(self) -> list[np.ndarray]:
        """One target array per output, in the outputs' order."""
        if isinstance(self.y, dict):
            return [np.asarray(self.y[k]) for k in (self.output_names or sorted(self.y))]
        return [np.asarray(self.y)]

    def _structured(self, outputs: list[np.ndarray]) -> Any:
        """Outputs shaped like the targets: one array, or a dict by output name."""
        if isinstance(self.y, dict):
            return dict(zip(self.output_names or sorted(self.y), outputs, strict=True))
        return outputs[0] if len(outputs) == 1 else outputs


def keras_reference(model: keras.Model, dataset: Dataset, samples: int | None = None) -> Reference:
    """``samples`` caps the test samples used (None: the whole test set)."""

    rows = dataset.size("test") if samples is None else min(samples, dataset.size("test"))
    x, y = dataset.take("test", slice(0, rows))
    anomaly = None if dataset.anomaly is None else dataset.anomaly[:rows]
    x = (
        {k: np.asarray(v, np.float32) for k, v in x.items()}
        if isinstance(x, dict)
        else np.asarray(x, np.float32)
    )
    # Direct calls, not model.predict: predict builds a new tf.function per export and warns on retracing.
    chunks = [
        _flatten(model(select(x, slice(i, i + KERAS_CHUNK)), training=False))
        for i in range(0, rows, KERAS_CHUNK)
    ]
    outputs = [np.concatenate([c[j] for c in chunks]).astype(np.float32) for j in range(len(chunks[0]))]
    names = sorted(y) if isinstance(y, dict) else []
    return Reference(x=x, y=y, outputs=outputs, task=dataset.task, anomaly=anomaly, output_names=names)


def verify_artifact(
    path: Path,
    reference: Reference,
    floor: float = DEFAULT_FLOOR,
    backend: str | None = None,
    latency: bool = True,
) -> dict[str, Any]:
    """The artifact's task metrics in its own runtime, its agreement with Keras, and the verdict.

    Keys for every task: ``task``, ``backend``, ``metrics`` (the artifact's), ``keras_metrics``,
    ``criterion`` and ``score`` (the pass rule's number), ``max_abs_diff``, ``samples``, ``floor``,
    ``passed``, ``latency_ms_p50``. Classification adds ``accuracy``, ``keras_accuracy`` and
    ``agreement`` (argmax); regression and reconstruction ``fidelity``, ``extra_mse`` and
    ``rel_max_diff_vs_keras`` (``accuracy`` and ``agreement`` are None there).
    """
    task = get_task(reference.task)
    model = load(path, backend=backend)
    raw = model.predict(reference.x)
    outputs = [np.asarray(o, np.float32) for o in (raw if isinstance(raw, list) else [raw])]
    if reference.output_names:  # several named outputs: in the Keras model's order, by name
        outputs = by_keys(outputs, model.output_keys, reference.output_names)
    if len(outputs) != len(reference.outputs):
        raise AssertionError(  # the converters write every output: a mismatch is a bug of ours
            f"{path.name} has {len(outputs)} outputs, the Keras model {len(reference.outputs)}"
        )
    comparison = task.compare(outputs, reference.outputs, reference.targets(), floor)
    metrics = task.metrics(reference.y, reference._structured(outputs), reference.anomaly)
    keras_metrics = reference.keras_metrics
    result: dict[str, Any] = {
        "task": task.name,
        "backend": model.backend,
        "accuracy": metrics.get("accuracy"),
        "keras_accuracy": keras_metrics.get("accuracy"),
        "agreement": comparison.details.get("agreement"),
        **{k: v for k, v in comparison.details.items() if k != "agreement"},
        "max_abs_diff": max(
            float(np.abs(a - k.reshape(a.shape)).max())
            for a, k in zip(outputs, reference.outputs, strict=True)
        ),
        "samples": int(reference.samples),
        "floor": floor,
        "criterion": comparison.criterion,
        "score": comparison.score,
        "passed": comparison.passed,
        "metrics": metrics,
        "keras_metrics": keras_metrics,
    }
    if latency:
        timing = benchmark(model, batch=1, warmup=3, runs=LATENCY_RUNS, x=select(reference.x, slice(0, 8)))
        result["latency_ms_p50"] = timing["p50_ms"]
    return result


def _flatten(out: Any) -> list[np.ndarray]:
    """Keras outputs as numpy, one per output: a dict in sorted-key order, as the converters write it."""
    import keras

    if isinstance(out, dict):
        return [keras.ops.convert_to_numpy(out[k]) for k in sorted(out)]
    if isinstance(out, list | tuple):
        return [keras.ops.convert_to_numpy(o) for o in out]
    return [keras.ops.convert_to_numpy(out)]
