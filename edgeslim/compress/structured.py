"""Structured pruning: remove whole units, filters and recurrent units, and rebuild a smaller model.

Channels are ranked by the L1 or L2 norm of the weights producing them (or the |gamma| of the
BatchNorm that scales them), normalised per layer so layers compare. Removing a channel shrinks its
producer and every consumer, each through its handler (edgeslim.layers): the next layer's input
rows, BatchNorm parameters, depthwise channels, the Flatten -> Dense index map, recurrent gate
blocks; channels tied by Add or a shared layer go together (channels.py). Each consumer that lost
inputs is then refit on calibration data (compensation.py), so the model before fine-tuning is
already close to the original.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from edgeslim.compress.channels import ChannelAnalysis
from edgeslim.compress.compensation import mean_shift, refit, refittable
from edgeslim.layers import DEPTHWISE, NORM, PRODUCER, Replacement, copy_layer
from edgeslim.layers.graph import ModelGraph


@dataclass
class StructuredPlan:
    removed_roots: set[int]
    notes: dict[str, str] = field(default_factory=dict)  # producer -> why it was left whole


def channel_scores(analysis: ChannelAnalysis, criterion: str) -> np.ndarray:
    """One score per channel id, normalised by the mean score of its producer's channels."""
    graph = analysis.graph
    scores = np.zeros(len(analysis.channels))
    bn_scores: dict[int, float] = {}
    if criterion == "bn":
        for name, role in analysis.roles.items():
            gamma = getattr(graph.nodes[name].handler, "gamma", None)
            values = gamma() if role == NORM and gamma is not None else None
            if values is not None:
                for pos, i in enumerate(analysis.in_ids[name]):
                    if i >= 0:
                        bn_scores.setdefault(int(i), float(values[pos]))
    for name, ids in analysis.producers.items():
        flat = graph.nodes[name].handler.output_columns()
        norms = np.sqrt((flat**2).sum(axis=0)) if criterion == "l2" else np.abs(flat).sum(axis=0)
        if criterion == "bn" and all(int(i) in bn_scores for i in ids):
            norms = np.array([bn_scores[int(i)] for i in ids])
        scores[ids] = norms / (norms.mean() + 1e-12)
    return scores


def plan_removal(
    analysis: ChannelAnalysis,
    scores: np.ndarray,
    sparsity: float,
    per_layer: dict[str, float],
    scope: str,
    round_to: int,
) -> StructuredPlan:
    """Choose the groups to remove: the lowest-scoring share, per cluster of tied producers or globally."""
    groups = analysis.groups()
    group_score = {root: float(np.mean(scores[members])) for root, members in groups.items()}
    members_of = {root: {analysis.channels[i][0] for i in members} for root, members in groups.items()}
    remaining = {
        name: int(sum(not analysis.pinned(int(i)) for i in ids)) for name, ids in analysis.producers.items()
    }
    pinned_count = {name: len(ids) - remaining[name] for name, ids in analysis.producers.items()}
    removed: set[int] = set()

    def try_remove(root: int) -> bool:
        # Keep at least one channel in every producer: a layer with zero units is not a model.
        counts: dict[str, int] = {}
        for i in groups[root]:
            producer = analysis.channels[i][0]
            counts[producer] = counts.get(producer, 0) + 1
        if any(remaining[p] + pinned_count[p] - c < 1 for p, c in counts.items()):
            return False
        for p, c in counts.items():
            remaining[p] -= c
        removed.add(root)
        return True

    if scope == "global":
        order = sorted(groups, key=lambda r: group_score[r])
        target = int(np.floor(sparsity * len(order)))
        for root in order:
            if len(removed) >= target:
                break
            try_remove(root)
        return StructuredPlan(removed)
    for cluster in _clusters(groups, members_of):
        rates = [per_layer[p] for root in cluster for p in members_of[root] if p in per_layer]
        rate = max(rates) if rates else sparsity
        keep = len(cluster) - int(np.floor(rate * len(cluster)))
        keep = min(len(cluster), max(1, int(np.ceil(keep / round_to)) * round_to))
        done = 0
        for root in sorted(cluster, key=lambda r: group_score[r]):
            if done >= len(cluster) - keep:
                break
            done += try_remove(root)
    return StructuredPlan(removed)


def _clusters(groups: dict[int, list[int]], members_of: dict[int, set[str]]) -> list[list[int]]:
    """Groups whose producers overlap form one cluster (a layer, or layers tied by Add)."""
    by_producer: dict[str, list[int]] = {}
    for root, producers in members_of.items():
        for p in producers:
            by_producer.setdefault(p, []).append(root)
    seen: set[int] = set()
    clusters = []
    for root in groups:
        if root in seen:
            continue
        stack, cluster = [root], []
        seen.add(root)
        while stack:
            r = stack.pop()
            cluster.append(r)
            for p in members_of[r]:
                for other in by_producer[p]:
                    if other not in seen:
                        seen.add(other)
                        stack.append(other)
        clusters.append(cluster)
    return clusters


def rebuild_pruned(
    analysis: ChannelAnalysis, plan: StructuredPlan, calibration: Any, compensate: str
) -> tuple[keras.Model, dict[str, dict[str, float]]]:
    """The smaller model, and per changed layer its channel counts before and after (and refit error)."""
    graph: ModelGraph = analysis.graph
    removed = plan.removed_roots
    keeps: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}  # name -> (input keep, output keep)
    for name, role in analysis.roles.items():
        if role not in (PRODUCER, DEPTHWISE, NORM):
            continue
        in_keep = analysis.keep_mask(analysis.in_ids[name], removed)
        out_keep = analysis.keep_mask(analysis.producers[name], removed) if role == PRODUCER else None
        if not in_keep.all() or (out_keep is not None and not out_keep.all()):
            keeps[name] = (in_keep, out_keep)
    repair = compensate != "none" and calibration is not None
    repaired = [
        n
        for n, (k, _) in keeps.items()
        if repair
        and analysis.roles[n] == PRODUCER
        and not k.all()
        and refittable(graph.nodes[n].handler)
        and graph.nodes[n].calls == 1
    ]
    replacements: dict[str, Replacement] = {}
    counts: dict[str, dict[str, float]] = {}
    for name, (in_keep, out_keep) in keeps.items():
        node = graph.nodes[name]
        handler = node.handler
        channel_inputs = handler.in_channels() is not None or analysis.roles[name] != PRODUCER
        edit = handler.prune(out_keep, in_keep if channel_inputs else None)
        weights = edit.weights
        changes = dict(edit.changes)
        if name in repaired and not getattr(node.layer, "use_bias", True):
            changes["use_bias"] = True  # the repair fills a bias the layer did not have
            weights = [*weights, np.zeros(int(out_keep.sum()), np.float32)]
        replacements[name] = Replacement([copy_layer(node.layer, **changes)], [weights])
        kept_out = out_keep if out_keep is not None else in_keep
        counts[name] = {
            "inputs_before": len(in_keep),
            "inputs_after": int(in_keep.sum()),
            "channels_before": len(kept_out),
            "channels_after": int(kept_out.sum()),
        }
    new_model = graph.rebuild(replacements)
    if repaired:
        errors = _repair(graph, new_model, repaired, keeps, calibration, compensate)
        for name, error in errors.items():
            counts[name]["refit_error"] = error
    return new_model, counts


def _repair(
    graph: ModelGraph,
    new_model: keras.Model,
    names: list[str],
    keeps: dict[str, tuple[np.ndarray, np.ndarray | None]],
    x: Any,
    mode: str,
) -> dict[str, float]:
    """Refit, in graph order, every layer that lost inputs (see compensation.py); returns the errors."""
    originals = graph.layer_inputs(names, x)
    new_graph = ModelGraph(new_model)
    errors = {}
    for name in names:  # graph order: each refit sees the upstream layers already repaired
        handler, new_layer = graph.nodes[name].handler, new_model.get_layer(name)
        in_keep, out_keep = keeps[name]
        assert out_keep is not None  # only producers are repaired
        sliced = [np.asarray(w) for w in new_layer.get_weights()]
        result = None
        if mode == "lstsq":
            x_new = new_graph.layer_inputs([name], x)[name]
            result = refit(handler, originals[name], x_new, sliced, out_keep)
        if result is None:
            shift = mean_shift(handler, originals[name], in_keep)
            if shift is not None:
                sliced[-1] = sliced[-1] + shift[out_keep].astype(np.float32)
                new_layer.set_weights(sliced)
        else:
            new_layer.set_weights(result[0])
            errors[name] = result[1]
    return errors
