"""Structured pruning: remove whole Dense units and conv filters, and rebuild a smaller model.

Channels are ranked by the L1 or L2 norm of their filter (or the |gamma| of the BatchNorm that
scales them), normalised per layer so layers compare. Removing a channel shrinks its producer and
every consumer: the next Dense/Conv input rows, BatchNorm parameters, depthwise channels and the
Flatten -> Dense index map; channels tied by Add go together (see channels.py). Each consumer that
lost inputs is then refit on calibration data (compensation.py), so the model before fine-tuning
is already close to the original.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np

from edgeslim.compress.channels import ChannelAnalysis
from edgeslim.compress.compensation import mean_shift, refit
from edgeslim.compress.graph import ModelGraph, Replacement, copy_layer


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
            layer = graph.nodes[name].layer
            if role == "batchnorm" and layer.scale:
                gamma = np.abs(np.asarray(layer.gamma))
                for pos, i in enumerate(analysis.in_ids[name][0]):
                    if i >= 0:
                        bn_scores.setdefault(int(i), float(gamma[pos]))
    for name, ids in analysis.producers.items():
        layer = graph.nodes[name].layer
        kernel = np.asarray(layer.pointwise_kernel if hasattr(layer, "pointwise_kernel") else layer.kernel)
        flat = kernel.reshape(-1, kernel.shape[-1])
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
        counts = {}
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
    analysis: ChannelAnalysis, plan: StructuredPlan, calibration: np.ndarray | None, compensate: str
) -> tuple[keras.Model, dict[str, dict[str, float]]]:
    """The smaller model, and per changed layer its channel counts before and after (and refit error)."""
    graph: ModelGraph = analysis.graph
    removed = plan.removed_roots
    keeps: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}  # name -> (input keep, output keep)
    for name, role in analysis.roles.items():
        if role not in ("producer", "depthwise", "batchnorm"):
            continue
        in_keep = analysis.keep_mask(analysis.in_ids[name][0], removed)
        out_keep = analysis.keep_mask(analysis.producers[name], removed) if role == "producer" else None
        if not in_keep.all() or (out_keep is not None and not out_keep.all()):
            keeps[name] = (in_keep, out_keep)
    repair = compensate != "none" and calibration is not None
    repaired = [
        n for n, (k, _) in keeps.items() if repair and analysis.roles[n] == "producer" and not k.all()
    ]
    replacements: dict[str, Replacement] = {}
    counts: dict[str, dict[str, float]] = {}
    for name, (in_keep, out_keep) in keeps.items():
        layer = graph.nodes[name].layer
        role = analysis.roles[name]
        if role == "producer":
            changes, weights = _shrink_producer(layer, in_keep, out_keep, with_bias=name in repaired)
        elif role == "depthwise":
            changes, weights = _shrink_depthwise(layer, in_keep)
        else:
            changes, weights = {}, [np.asarray(w)[in_keep] for w in layer.get_weights()]
        replacements[name] = Replacement([copy_layer(layer, **changes)], [weights])
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
    x: np.ndarray,
    mode: str,
) -> dict[str, float]:
    """Refit, in graph order, every layer that lost inputs (see compensation.py); returns the errors."""
    originals = graph.layer_inputs(names, x)
    new_graph = ModelGraph(new_model)
    errors = {}
    for name in names:  # graph order: each refit sees the upstream layers already repaired
        layer, new_layer = graph.nodes[name].layer, new_model.get_layer(name)
        in_keep, out_keep = keeps[name]
        sliced = [np.asarray(w) for w in new_layer.get_weights()]
        result = None
        if mode == "lstsq":
            x_new = new_graph.layer_inputs([name], x)[name]
            result = refit(layer, originals[name], x_new, sliced, out_keep)
        if result is None:
            sliced[-1] = sliced[-1] + mean_shift(layer, originals[name], in_keep)[out_keep].astype(np.float32)
            new_layer.set_weights(sliced)
        else:
            new_layer.set_weights(result[0])
            errors[name] = result[1]
    return errors


def _shrink_producer(
    layer: keras.layers.Layer, in_keep: np.ndarray, out_keep: np.ndarray, with_bias: bool
) -> tuple[dict, list[np.ndarray]]:
    """Slice a producer's weights; ``with_bias`` adds a (zero) bias for the repair to fill."""
    weights = [np.asarray(w) for w in layer.get_weights()]
    if hasattr(layer, "pointwise_kernel"):
        m = layer.depth_multiplier
        new = [weights[0][..., in_keep, :], weights[1][..., np.repeat(in_keep, m), :][..., out_keep]]
    else:
        new = [weights[0][..., in_keep, :][..., out_keep]]
    if layer.use_bias:
        new.append(weights[-1][out_keep])
    elif with_bias:
        new.append(np.zeros(int(out_keep.sum()), np.float32))
    units = "units" if isinstance(layer, keras.layers.Dense) else "filters"
    return {units: int(out_keep.sum()), "use_bias": bool(layer.use_bias or with_bias)}, new


def _shrink_depthwise(layer: keras.layers.Layer, in_keep: np.ndarray) -> tuple[dict, list[np.ndarray]]:
    weights = [np.asarray(w) for w in layer.get_weights()]
    new = [weights[0][..., in_keep, :]]
    if layer.use_bias:
        new.append(weights[1][np.repeat(in_keep, layer.depth_multiplier)])
    return {}, new
