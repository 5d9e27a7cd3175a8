"""``evaluate`` (the task's metrics in the artifact's own runtime) and ``benchmark`` (latency, warmed up)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeslim.runtime.errors import RuntimeModelError
from edgeslim.runtime.model import RuntimeModel, by_keys
from edgeslim.tasks import get_task

EVAL_CHUNK = 256


def evaluate(
    model: RuntimeModel | str | Path,
    x: Any,
    y: Any,
    limit: int | None = None,
    task: str | None = None,
    anomaly: np.ndarray | None = None,
) -> dict[str, Any]:
    """The task's metrics of ``model`` on ``(x, y)`` in its own runtime.

    ``x``: one array, or a dict by input name; ``y``: class indices or one-hot rows (classification),
    float targets (regression), the input itself (reconstruction), or a dict by output name.
    ``task``: by default the one the artifact was verified for (its sidecar), else classification.
    ``anomaly``: one flag per sample (reconstruction), which adds the anomaly ``auc``.
    Keys: ``task``, ``samples``, ``backend``, ``seconds``, ``metrics`` and the metrics themselves at
    the top level (``accuracy`` and ``correct``; or ``mse``, ``mae`` and ``auc``).
    """
    model = _as_model(model)
    chosen = get_task(task or ((model.sidecar or {}).get("verification") or {}).get("task"))
    rows = _rows(x)
    if _rows(y) != rows:
        raise RuntimeModelError(f"evaluate: {rows} samples but {_rows(y)} targets", "pass matching arrays")
    if limit is not None:
        rows = min(rows, limit)
        x, y = _select(x, slice(0, rows)), _select(y, slice(0, rows))
        anomaly = None if anomaly is None else np.asarray(anomaly)[:rows]
    start = time.perf_counter()
    chunks = [
        _outputs(model.predict(_select(x, slice(i, i + EVAL_CHUNK)))) for i in range(0, rows, EVAL_CHUNK)
    ]
    seconds = time.perf_counter() - start
    outputs = [np.concatenate([c[j] for c in chunks]) for j in range(len(chunks[0]))]
    structured: Any = outputs[0]
    if isinstance(y, dict):  # targets by output key: outputs matched by name where the file names them
        structured = dict(zip(sorted(y), by_keys(outputs, model.output_keys, sorted(y)), strict=True))
    metrics = chosen.metrics(y, structured, anomaly)
    flat = {k: v for k, v in metrics.items() if k != "per_output"}
    return {"task": chosen.name, **flat, "backend": model.backend, "seconds": seconds, "metrics": metrics}


def benchmark(
    model: RuntimeModel | str | Path,
    batch: int = 1,
    threads: int | None = None,
    warmup: int = 10,
    runs: int = 100,
    x: np.ndarray | None = None,
) -> dict[str, Any]:
    """Latency percentiles (ms) and throughput of ``predict`` on ``batch`` rows, after ``warmup`` calls.

    ``x``: sample rows to cycle through (random data in the input's shape otherwise). A model loaded
    with other ``threads`` is reopened with these.
    """
    if batch < 1 or runs < 1 or warmup < 0:
        raise RuntimeModelError(f"benchmark: batch and runs must be >= 1 (got {batch}, {runs})")
    model = _as_model(model)
    if threads is not None and threads != model.threads and model.backend != "tflm":
        from edgeslim.runtime.loader import load

        model = load(model.path, backend=_kind(model.backend), threads=threads)
    feed = _feed(model, batch, x)
    for _ in range(warmup):
        model.predict(feed)
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter_ns()
        model.predict(feed)
        times[i] = time.perf_counter_ns() - start
    ms = times / 1e6
    return {
        "backend": model.backend,
        "batch": batch,
        "threads": model.threads,
        "warmup": warmup,
        "runs": runs,
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "throughput_per_s": float(batch * 1000.0 / np.percentile(ms, 50)),
    }


def _as_model(model: RuntimeModel | str | Path) -> RuntimeModel:
    if isinstance(model, RuntimeModel):
        return model
    from edgeslim.runtime.loader import load

    return load(model)


def _kind(backend: str) -> str:
    return backend.split("+")[0]


def _outputs(out: np.ndarray | list[np.ndarray]) -> list[np.ndarray]:
    return out if isinstance(out, list) else [out]


def _rows(arrays: Any) -> int:
    return len(next(iter(arrays.values()))) if isinstance(arrays, dict) else len(np.asarray(arrays))


def _select(arrays: Any, idx: slice) -> Any:
    return (
        {k: np.asarray(v)[idx] for k, v in arrays.items()}
        if isinstance(arrays, dict)
        else np.asarray(arrays)[idx]
    )


def _feed(model: RuntimeModel, batch: int, x: np.ndarray | None) -> Any:
    feeds = []
    for i, spec in enumerate(model.inputs):
        shape = (batch, *(d or 1 for d in spec.shape[1:]))
        if x is not None and len(model.inputs) == 1:
            rows = np.asarray(x)[np.arange(batch) % len(x)]
            feeds.append(rows.astype(spec.user_dtype))
        elif spec.user_dtype.startswith("float"):
            feeds.append(np.random.default_rng(i).random(shape, dtype=np.float32))
        else:
            feeds.append(np.zeros(shape, spec.user_dtype))
    return feeds[0] if len(feeds) == 1 else feeds
