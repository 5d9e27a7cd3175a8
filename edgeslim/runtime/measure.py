"""``evaluate`` (accuracy in the artifact's own runtime) and ``benchmark`` (latency after warm-up)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeslim.runtime.errors import RuntimeModelError
from edgeslim.runtime.model import RuntimeModel

EVAL_CHUNK = 256


def evaluate(
    model: RuntimeModel | str | Path, x: np.ndarray, y: np.ndarray, limit: int | None = None
) -> dict[str, Any]:
    """Top-1 accuracy of ``model`` on ``(x, y)``; ``y`` holds class indices or one-hot rows."""
    model = _as_model(model)
    x, y = np.asarray(x), np.asarray(y)
    if y.ndim == 2:
        y = y.argmax(axis=1)
    if len(x) != len(y):
        raise RuntimeModelError(f"evaluate: {len(x)} samples but {len(y)} labels", "pass matching arrays")
    if limit is not None:
        x, y = x[:limit], y[:limit]
    start = time.perf_counter()
    predicted = np.concatenate(
        [_first(model.predict(x[i : i + EVAL_CHUNK])).argmax(axis=-1) for i in range(0, len(x), EVAL_CHUNK)]
    )
    seconds = time.perf_counter() - start
    correct = int((predicted == y).sum())
    return {
        "accuracy": correct / len(y),
        "samples": int(len(y)),
        "correct": correct,
        "backend": model.backend,
        "seconds": seconds,
    }


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


def _first(out: np.ndarray | list[np.ndarray]) -> np.ndarray:
    return out[0] if isinstance(out, list) else out


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
