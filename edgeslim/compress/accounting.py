"""Counting what a stage changed: per-layer and total parameters and multiplications, before and after.

All counts come from edgeslim.analysis (each layer's handler), the same numbers `inspect` shows.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from edgeslim.analysis.keras_model import analyze_keras
from edgeslim.analysis.stats import LayerStats
from edgeslim.compress.base import LayerChange
from edgeslim.layers import Replacement
from edgeslim.layers.graph import ModelGraph


class Accounting:
    """Layer statistics of the model before a stage and after it, joined into record rows."""

    def __init__(self, before: keras.Model) -> None:
        self.before_total = analyze_keras(before)
        self.before = {s.name: s for s in self.before_total.layers}
        self.after: dict[str, LayerStats] = {}

    def finish(self, after: keras.Model) -> dict[str, int]:
        stats = analyze_keras(after)
        self.after = {s.name: s for s in stats.layers}
        return {
            "params_before": self.before_total.total_params,
            "params_after": stats.total_params,
            "macs_before": self.before_total.total_macs,
            "macs_after": stats.total_macs,
            "nonzero_params_before": self.before_total.nonzero_params,
            "nonzero_params_after": stats.nonzero_params,
        }

    def row(self, name: str, action: str, new_names: list[str] | None = None, **fields: Any) -> LayerChange:
        """A row for layer ``name``; ``new_names`` are the layers that replaced it (default: same name)."""
        old = self.before[name]
        names = [name] if new_names is None else new_names
        news = [self.after[n] for n in names if n in self.after]
        return LayerChange(
            name=name,
            type=old.type,
            action=action,
            params_before=old.params,
            params_after=sum(s.params for s in news),
            macs_before=old.macs,
            macs_after=sum(s.macs for s in news),
            **fields,
        )

    def skipped(self, name: str, reason: str, **fields: Any) -> LayerChange:
        return self.row(name, "skipped", reason=reason, **fields)


def relative_error(original: np.ndarray, approx: np.ndarray) -> float:
    """||W - W'||_F / ||W||_F."""
    norm = float(np.linalg.norm(original))
    return 0.0 if norm == 0 else float(np.linalg.norm(original - approx) / norm)


def output_errors(
    graph: ModelGraph, replacements: dict[str, Replacement], dataset: Any, samples: int
) -> dict[str, float]:
    """||y' - y|| / ||y|| of each replaced layer and its replacement, on the same real inputs."""
    if not samples or not replacements or dataset is None:
        return {}
    names = [n for n in replacements if graph.nodes[n].calls == 1 and len(graph.nodes[n].inputs[0]) == 1]
    inputs = graph.layer_inputs(names, dataset.representative(samples))
    errors = {}
    for name in names:
        x = inputs[name]
        y = np.asarray(graph.nodes[name].layer(x))
        out = x
        for layer in replacements[name].layers:
            out = layer(out)
        errors[name] = relative_error(y, np.asarray(out))
    return errors
