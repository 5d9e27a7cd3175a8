"""What a model is for, and so how it is scored and how an exported artifact is checked against Keras.

numpy only: ``edgeslim.runtime`` uses it on a device without TensorFlow, and so does ``edgeslim eval``.

| task | metrics | headline | artifact vs Keras (verification) |
|---|---|---|---|
| classification | accuracy | accuracy, higher is better | argmax agreement >= floor |
| regression | mse, mae, rel_max_diff | mse, lower is better | fidelity >= floor |
| reconstruction | mse, mae (+ auc with anomaly labels) | mse (auc when labelled) | fidelity >= floor |

Several outputs: each output is scored on its own (``per_output``, keyed by output name) and the
top-level metrics are their means, so one number still heads every report column.

Why fidelity for regression and reconstruction, and not the largest element difference or the MSE
ratio: int8 rounding always moves some element by a step or two, so a max-difference rule fails or
passes on one worst pixel, whatever the model's quality; and the ratio of the artifact's MSE to
Keras' explodes for an accurate model (an int8 regressor whose extra error was 0.03 % of the targets'
variance had twice Keras' tiny MSE). Fidelity asks whether the artifact loses a noticeable share of
what the model explains: ``fidelity = 1 - max(0, MSE_artifact - MSE_keras) / Var(targets)``, the
extra error as a share of the targets' variance. It reuses the export's ``agreement_floor`` (default
0.98: at most 2 % of the variance added as error), so no new setting is needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeslim.errors import EdgeslimError

Arrays = np.ndarray | Sequence[np.ndarray] | Mapping[str, np.ndarray]

TASK_NAMES = ("classification", "regression", "reconstruction")
DEFAULT_TASK = "classification"


@dataclass(frozen=True)
class Comparison:
    """An artifact's outputs against the Keras model's on the same samples, and the pass rule's verdict."""

    criterion: str  # the name of the number the rule reads: "agreement" or "fidelity"
    score: float
    passed: bool
    details: dict[str, float]


class Task:
    """A task: its metrics, its headline metric, and how an artifact must agree with Keras."""

    name = ""
    headline = ""
    higher_is_better = True
    criterion = ""  # the verification's pass-rule number: "agreement" or "fidelity" (module docstring)

    def metrics(self, y_true: Arrays, outputs: Arrays, anomaly: np.ndarray | None = None) -> dict[str, Any]:
        """The task's metrics of ``outputs`` against ``y_true``; several outputs are averaged."""
        pairs = _pairs(y_true, outputs)
        per_output = {name: self._metrics(y, out, anomaly) for name, (y, out) in pairs.items()}
        if len(per_output) == 1:
            return next(iter(per_output.values()))
        rows = list(per_output.values())
        merged: dict[str, Any] = {}
        for key in sorted(set.intersection(*(set(m) for m in rows)) - {"samples", "correct", "anomalies"}):
            values = [m[key] for m in rows]
            merged[key] = None if any(v is None for v in values) else float(np.mean(values))
        merged["samples"] = rows[0]["samples"]
        merged["per_output"] = per_output
        return merged

    def headline_of(self, metrics: Mapping[str, Any]) -> tuple[str, float | None]:
        """The metric to show first: (name, value); reconstruction prefers AUC when it was computed."""
        value = metrics.get(self.headline)
        return self.headline, None if value is None else float(value)

    def compare(self, artifact: Arrays, keras_outputs: Arrays, y_true: Arrays, floor: float) -> Comparison:
        """Whether ``artifact``'s outputs keep at least ``floor`` of the Keras model's (see the rules)."""
        raise NotImplementedError

    def _metrics(self, y: np.ndarray, out: np.ndarray, anomaly: np.ndarray | None) -> dict[str, Any]:
        raise NotImplementedError


class Classification(Task):
    name = "classification"
    headline = "accuracy"
    higher_is_better = True
    criterion = "agreement"

    def _metrics(self, y: np.ndarray, out: np.ndarray, anomaly: np.ndarray | None) -> dict[str, Any]:
        labels = class_labels(y)
        _check_rows(labels, out)
        _check_classes(labels, np.asarray(out))
        correct = int((np.asarray(out).argmax(axis=-1) == labels).sum())
        return {"accuracy": correct / len(labels), "correct": correct, "samples": int(len(labels))}

    def compare(self, artifact: Arrays, keras_outputs: Arrays, y_true: Arrays, floor: float) -> Comparison:
        # The same decision as Keras on at least `floor` of the samples (each output, the worst one counts).
        agreements = [
            float((np.asarray(a).argmax(axis=-1) == np.asarray(k).argmax(axis=-1)).mean())
            for a, k in zip(_flat(artifact), _flat(keras_outputs), strict=True)
        ]
        agreement = min(agreements)
        return Comparison("agreement", agreement, agreement >= floor, {"agreement": agreement})


class Regression(Task):
    name = "regression"
    headline = "mse"
    higher_is_better = False
    criterion = "fidelity"

    def _metrics(self, y: np.ndarray, out: np.ndarray, anomaly: np.ndarray | None) -> dict[str, Any]:
        y, out = _aligned(y, out)
        diff = out - y
        return {
            "mse": float(np.mean(diff**2)),
            "mae": float(np.mean(np.abs(diff))),
            "rel_max_diff": relative_max_difference(out, y),
            "samples": int(len(y)),
        }

    def compare(self, artifact: Arrays, keras_outputs: Arrays, y_true: Arrays, floor: float) -> Comparison:
        scores, extra, rel_max = [], [], []
        for a, k, y in zip(_flat(artifact), _flat(keras_outputs), _flat(y_true), strict=True):
            k, a = _aligned(k, a)
            k, y = _aligned(k, y)
            added = float(np.mean((a - y) ** 2)) - float(np.mean((k - y) ** 2))
            scores.append(fidelity(added, float(np.var(y))))
            extra.append(added)
            rel_max.append(relative_max_difference(a, k))
        score = min(scores)
        details = {"fidelity": score, "extra_mse": max(extra), "rel_max_diff_vs_keras": max(rel_max)}
        return Comparison("fidelity", score, score >= floor, details)


class Reconstruction(Regression):
    """An autoencoder: the target is the input; the per-sample error is the anomaly score."""

    name = "reconstruction"

    def _metrics(self, y: np.ndarray, out: np.ndarray, anomaly: np.ndarray | None) -> dict[str, Any]:
        y, out = _aligned(y, out)
        scores = reconstruction_errors(y, out)
        result: dict[str, Any] = {
            "mse": float(scores.mean()),
            "mae": float(np.mean(np.abs(out - y))),
            "samples": int(len(y)),
        }
        if anomaly is not None:
            flags = np.asarray(anomaly).astype(bool).reshape(-1)
            if len(flags) != len(scores):
                raise EdgeslimError(
                    f"{len(flags)} anomaly labels for {len(scores)} samples", "pass one label per sample"
                )
            result["auc"] = roc_auc(flags, scores)
            result["anomalies"] = int(flags.sum())
        return result

    def headline_of(self, metrics: Mapping[str, Any]) -> tuple[str, float | None]:
        if metrics.get("auc") is not None:
            return "auc", float(metrics["auc"])
        return super().headline_of(metrics)


TASKS: dict[str, Task] = {t.name: t for t in (Classification(), Regression(), Reconstruction())}


def get_task(name: str | None) -> Task:
    """The task by name; None means classification (records written before tasks existed)."""
    key = DEFAULT_TASK if name is None else name
    if key not in TASKS:
        raise EdgeslimError(f"unknown task {name!r}", f"choose one of {list(TASK_NAMES)}")
    return TASKS[key]


def reconstruction_errors(x: np.ndarray, reconstructed: np.ndarray) -> np.ndarray:
    """Mean squared error per sample: the anomaly score (MLPerf Tiny's anomaly detection uses it too)."""
    diff = (_as_float(reconstructed) - _as_float(x)).reshape(len(x), -1)
    return np.mean(diff**2, axis=1)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve, rank-based (Mann-Whitney U), ties as half; None without both classes.

    AUC = P(score of a random positive > score of a random negative): the ranks of the positives,
    summed, minus their least possible sum, over the number of positive-negative pairs.
    """
    labels = np.asarray(labels).astype(bool).reshape(-1)
    scores = np.asarray(scores, np.float64).reshape(-1)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(scores)
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def fidelity(extra_mse: float, target_variance: float) -> float:
    """1 - extra error / the targets' variance, in [0, 1]; an artifact that errs less than Keras keeps 1."""
    if extra_mse <= 0:
        return 1.0
    if target_variance <= 0:
        return 0.0
    return float(max(0.0, 1.0 - extra_mse / target_variance))


def relative_max_difference(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| over max |b|: the worst element's difference, relative to the output's range."""
    b, a = _aligned(b, a)
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    worst = float(np.max(np.abs(a - b))) if a.size else 0.0
    return worst / scale if scale > 0 else worst


def class_labels(y: np.ndarray) -> np.ndarray:
    """Class indices from indices or one-hot rows."""
    y = np.asarray(y)
    return y.argmax(axis=-1) if y.ndim == 2 and y.shape[1] > 1 else y.reshape(-1)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (what scipy.stats.rankdata calls 'average')."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), np.float64)
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + 1 + end) / 2.0
    return ranks


def _pairs(y_true: Arrays, outputs: Arrays) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Targets and outputs matched per output: by name for dicts, by position otherwise."""
    if isinstance(y_true, Mapping) and isinstance(outputs, Mapping):
        missing = sorted(set(y_true) - set(outputs))
        if missing:
            raise EdgeslimError(f"no outputs for targets {missing}", f"the model outputs {sorted(outputs)}")
        return {name: (np.asarray(y_true[name]), np.asarray(outputs[name])) for name in sorted(y_true)}
    ys, outs = _flat(y_true), _flat(outputs)
    if len(ys) != len(outs):
        raise EdgeslimError(
            f"{len(ys)} target arrays for {len(outs)} model outputs", "give one target per output"
        )
    names = sorted(y_true) if isinstance(y_true, Mapping) else [f"output_{i}" for i in range(len(ys))]
    return {name: (y, out) for name, y, out in zip(names, ys, outs, strict=True)}


def _flat(arrays: Arrays) -> list[np.ndarray]:
    """One array per output: a dict in sorted-key order (how Keras and the converters flatten it)."""
    if isinstance(arrays, Mapping):
        return [np.asarray(arrays[k]) for k in sorted(arrays)]
    if isinstance(arrays, list | tuple):
        return [np.asarray(a) for a in arrays]
    return [np.asarray(arrays)]


def _as_float(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _check_rows(labels: np.ndarray, out: np.ndarray) -> None:
    if len(labels) != len(out):
        raise EdgeslimError(f"{len(out)} outputs but {len(labels)} labels", "pass matching arrays")


def _check_classes(labels: np.ndarray, out: np.ndarray) -> None:
    """Labels are class ids the outputs score: a label past the last output would count as a silent miss."""
    units = out.shape[-1] if out.ndim > 1 else None
    if units is None or labels.size == 0:
        return
    bad = np.flatnonzero((labels < 0) | (labels >= units) | (labels != np.round(labels)))
    if bad.size:
        i = int(bad[0])
        raise EdgeslimError(
            f"label {labels[i]} (sample {i}) is not one of the model's {units} classes 0..{units - 1}",
            "evaluate on data labelled with the model's classes (the dataset it was trained on)",
        )


def _aligned(y: Any, out: Any) -> tuple[np.ndarray, np.ndarray]:
    """Targets and outputs as float arrays of one shape ((N,) and (N, 1) are the same values)."""
    y, out = _as_float(y), _as_float(out)
    if y.shape != out.shape:
        if y.size != out.size or len(y) != len(out):
            raise EdgeslimError(
                f"outputs of shape {out.shape} cannot be scored against targets of shape {y.shape}",
                "give targets shaped like the model's output",
            )
        out = out.reshape(y.shape)
    return y, out
