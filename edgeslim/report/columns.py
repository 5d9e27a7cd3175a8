"""The report's metric columns, which follow the run's task.

classification: accuracy (and agreement for artifacts); regression: MSE and MAE (fidelity for
artifacts); reconstruction: MSE and anomaly AUC (fidelity for artifacts). Rows read the ``metrics``
dict the verification wrote (``deployed.metrics`` for a stage, ``metrics`` for an artifact) and fall
back to ``accuracy`` for runs written before tasks existed.
"""

from __future__ import annotations

from typing import Any

from edgeslim.report.format import acc, delta

TASK_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    # (metric key, column header); the first is the headline the plots and deltas use
    "classification": (("accuracy", "accuracy"),),
    "regression": (("mse", "MSE"), ("mae", "MAE")),
    "reconstruction": (("auc", "anomaly AUC"), ("mse", "MSE")),
}
LOWER_IS_BETTER = {"mse", "mae"}


def task_of(report: dict[str, Any]) -> str:
    task = report.get("task") or (report.get("dataset") or {}).get("task") or "classification"
    return task if task in TASK_COLUMNS else "classification"


def metric_headers(task: str) -> list[str]:
    return [header for _, header in TASK_COLUMNS[task]]


def metrics_of(row: dict[str, Any]) -> dict[str, Any]:
    """A stage's deployed or an artifact row's metrics; ``accuracy`` alone for old records."""
    metrics = dict(row.get("metrics") or {})
    if "accuracy" not in metrics and row.get("accuracy") is not None:
        metrics["accuracy"] = row["accuracy"]
    return metrics


def headline(task: str, row: dict[str, Any]) -> tuple[str, float | None]:
    """The first of the task's metrics that the row has: (key, value)."""
    metrics = metrics_of(row)
    for key, _ in TASK_COLUMNS[task]:
        if metrics.get(key) is not None:
            return key, float(metrics[key])
    return TASK_COLUMNS[task][0][0], None


def metric_cells(task: str, row: dict[str, Any]) -> list[str]:
    metrics = metrics_of(row)
    return [fmt(key, metrics.get(key)) for key, _ in TASK_COLUMNS[task]]


def fmt(key: str, value: Any) -> str:
    if value is None:
        return ""
    if key == "accuracy":
        return acc(value)
    if key == "auc":
        return f"{value:.3f}"
    return f"{value:.4g}"


def delta_cell(task: str, row: dict[str, Any], baseline: dict[str, Any] | None, given: float | None) -> str:
    """The change of the headline metric against the baseline: points for accuracy, else a difference."""
    if task == "classification":
        return delta(given)
    key, value = headline(task, row)
    base = headline(task, baseline)[1] if baseline else None
    if value is None or base is None:
        return ""
    return f"{value - base:+.4g}"


def agreement_cell(task: str, row: dict[str, Any]) -> str:
    """Classification: argmax agreement with Keras; regression and reconstruction: fidelity."""
    if task == "classification":
        return acc(row.get("agreement"))
    value = row.get("fidelity")
    if value is None:
        value = (row.get("verification") or {}).get("fidelity")
    return "" if value is None else f"{value:.4f}"
