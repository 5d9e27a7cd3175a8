"""The architecture step of a fit: which moves (compress/moves) to make before the per-layer search.

Moves are considered when the per-layer levels alone cannot meet the budget, as the cost model
prices it: a stride or a pooling early, a smaller kernel, global pooling for a flattened classifier,
a layer dropped, a smaller input. Each candidate move (or compound: a downsampling that only fits once
the valid convolutions after it keep their size) is

- priced before anything is trained: the moved model is built (no training) and the cost model
  prices it with the best per-layer plan the selection finds on it;
- measured like a level: applied to the input model, distilled from it for a few epochs on part of
  the training split, scored on the validation split (``move_losses``; cached like the sensitivity
  table, and spread over the executor's workers).

``choose_moves`` then adds moves greedily, each time the one that buys the most violation per point of
predicted loss (the move's measured loss plus the per-layer plan's), until the budget is predicted to
hold; the per-layer search continues on the moved network, whose plans carry the moves.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeslim.atomic import write_json
from edgeslim.fit.sensitivity import accuracy, fit_cache
from edgeslim.versions import code_fingerprint

MOVE_EPOCHS = 2  # distillation per move, to score it: a move without any is a new network's first step
MOVE_SAMPLES = 2048  # training samples for that distillation
# A moved network is still as wide as the input model: at the trials' 5e-3 (tuned for compressed
# networks) mnistnet3 with a cut kernel diverged to chance in one epoch; at 1e-3 it reached 95 %.
MOVE_LEARNING_RATE = 1e-3
MAX_MOVES = 4  # moves per plan: each one a network the per-layer search has to learn again
DOWNSAMPLING = ("stride", "pool", "input")


@dataclass
class Choice:
    moves: tuple[str, ...]
    selection: Any  # select.Selection of the per-layer plan on the moved network
    loss: float  # the moves' measured loss plus the plan's predicted loss


def move_candidates(model: Any) -> list[tuple[str, ...]]:
    """Every move that applies alone, and each downsampling that applies once every valid convolution
    after it is made ``same`` (MNISTnet3's 7x7 stride: 28 -> 11, then 5x5 and two 3x3 valid convolutions
    would leave nothing)."""
    from edgeslim.compress.moves import FAMILIES, Move, apply_moves, candidates
    from edgeslim.compress.moves.base import CONV_KINDS
    from edgeslim.errors import ConfigError
    from edgeslim.layers.graph import ModelGraph

    alone = candidates(model)
    out = [(m.label(),) for m in alone if m.family != "padding"]
    graph = ModelGraph(model)
    order = list(graph.nodes)
    found = {m.label() for m in alone}
    for family in DOWNSAMPLING:
        for move in FAMILIES[family].candidates(graph):  # its own rules hold; the sizes after it may not
            if move.label() in found:
                continue
            start = order.index(move.layer) + 1 if move.layer else 0
            padded = [
                Move("padding", n)
                for n in order[start:]
                if type(graph.nodes[n].layer).__name__ in CONV_KINDS
                and getattr(graph.nodes[n].layer, "padding", "") == "valid"
                and max(graph.nodes[n].layer.kernel_size) > 1
            ]
            if not padded:
                continue
            try:
                apply_moves(model, [*padded, move])
            except ConfigError:
                continue
            out.append((*(p.label() for p in padded), move.label()))
    return out


def move_losses(
    model_file: bytes,
    data: Any,
    candidates: list[tuple[str, ...]],
    baseline: float,
    executor: Any,
    shared: tuple,
    reuse: bool,
    notify: Callable[[str], None],
) -> dict[tuple[str, ...], float]:
    """Each candidate's validation loss (fraction) after a short distillation from the input model."""
    key = _cache_key(model_file, data, candidates)
    path = fit_cache() / "moves" / f"{key}.json"
    if reuse and path.is_file():
        cached = json.loads(path.read_text(encoding="utf-8"))
        notify(f"architecture: reusing the measured losses of {len(candidates)} move(s)")
        return {tuple(k.split("+")): v for k, v in cached["losses"].items()}
    notify(
        f"architecture: {len(candidates)} move(s), each distilled {MOVE_EPOCHS} epochs from the input "
        f"model on {MOVE_SAMPLES} training samples"
    )
    shared_model, shared_data = shared
    workers = max(1, executor.workers)
    chunks = [c for c in (candidates[i::workers] for i in range(workers)) if c]
    results = executor.map(evaluate_moves, [(shared_model, shared_data, c) for c in chunks])
    losses = {}
    for chunk, accs in zip(chunks, results, strict=True):
        for moves, acc in zip(chunk, accs, strict=True):
            losses[moves] = max(0.0, baseline - acc)
    write_json(path, {"key": key, "losses": {"+".join(k): v for k, v in losses.items()}})
    return losses


def evaluate_moves(model_file: bytes, data: Any, chunk: list[tuple[str, ...]]) -> list[float]:
    """Validation accuracy of each move set applied to the input model and briefly distilled from it."""
    import tempfile

    import keras

    from edgeslim.compress.moves import Move, apply_moves
    from edgeslim.fit.trial import load_model_bytes
    from edgeslim.train.config import FinetuneConfig
    from edgeslim.train.finetune import finetune

    with tempfile.TemporaryDirectory(prefix="edgeslim-moves-") as tmp:
        teacher = load_model_bytes(model_file, Path(tmp))
    subset = replace(data, x_train=data.x_train[:MOVE_SAMPLES], y_train=data.y_train[:MOVE_SAMPLES])
    config = FinetuneConfig(epochs=MOVE_EPOCHS)
    config.train = replace(config.train, learning_rate=MOVE_LEARNING_RATE, seed=0)
    out = []
    for moves in chunk:
        keras.utils.set_random_seed(0)
        moved = apply_moves(teacher, [Move.parse(m) for m in moves])
        finetune(moved, subset, config, teacher=teacher, progress=False)
        out.append(accuracy(moved, data.x_val, data.y_val))
    return out


def distilled_file(model_file: bytes, data: Any, moves: tuple[str, ...]) -> tuple[bytes, float]:
    """The input model with ``moves`` applied and distilled from it as a move is scored, as the bytes
    of a .keras file, and its validation accuracy: the network whose own per-layer sensitivity the
    search then measures."""
    import tempfile

    import keras

    from edgeslim.compress.base import plain_copy
    from edgeslim.compress.moves import Move, apply_moves
    from edgeslim.fit.trial import load_model_bytes
    from edgeslim.modelio import save_keras_model
    from edgeslim.train.config import FinetuneConfig
    from edgeslim.train.finetune import finetune

    with tempfile.TemporaryDirectory(prefix="edgeslim-moved-") as tmp:
        teacher = load_model_bytes(model_file, Path(tmp))
        subset = replace(data, x_train=data.x_train[:MOVE_SAMPLES], y_train=data.y_train[:MOVE_SAMPLES])
        config = FinetuneConfig(epochs=MOVE_EPOCHS)
        config.train = replace(config.train, learning_rate=MOVE_LEARNING_RATE, seed=0)
        keras.utils.set_random_seed(0)
        moved = apply_moves(teacher, [Move.parse(m) for m in moves])
        finetune(moved, subset, config, teacher=teacher, progress=False)
        path = save_keras_model(plain_copy(moved), Path(tmp) / "moved.keras")
        return Path(path).read_bytes(), accuracy(moved, data.x_val, data.y_val)


def choose_moves(
    candidates: list[tuple[str, ...]],
    losses: dict[tuple[str, ...], float],
    plan_on: Callable[[tuple[str, ...]], Any],
    limits: dict[str, float],
) -> Choice:
    """Moves added one at a time while the budget is predicted broken: each time the candidate whose
    network's best per-layer plan (``plan_on``: a select.Selection for a set of moves) removes the
    most violation per point of predicted loss. Stops when the budget holds or nothing helps."""
    from edgeslim.fit.select import violation

    def total(moves: tuple[str, ...], selection: Any) -> float:
        parts = [losses.get(c, math.inf) for c in candidates if set(c) <= set(moves) and c]
        return sum(p for p in parts if math.isfinite(p)) + selection.predicted_loss

    current = Choice((), plan_on(()), 0.0)
    current.loss = total((), current.selection)
    for _ in range(MAX_MOVES):  # candidates added, a compound counting once
        if current.selection.feasible:
            break
        now = violation(current.selection.predicted, limits)
        best: tuple[float, Choice] | None = None
        for candidate in candidates:
            if set(candidate) <= set(current.moves) or not math.isfinite(losses.get(candidate, math.inf)):
                continue
            moves = _ordered((*current.moves, *candidate))
            selection = plan_on(moves)
            gained = now - violation(selection.predicted, limits)
            if not np.isfinite(gained) or gained <= 1e-12:
                continue
            loss = total(moves, selection)
            ratio = (max(loss - current.loss, 0.0) + 1e-6) / gained
            if best is None or ratio < best[0]:
                best = (ratio, Choice(moves, selection, loss))
        if best is None:
            break
        current = best[1]
    return current


# Moves apply in this order: padding first (it makes room for a downsampling), the global pooling last
# (it reads the final feature map, whatever the moves before did to it).
ORDER = ("padding", "kernel", "drop", "input", "stride", "pool", "global_pool")


def _ordered(moves: tuple[str, ...]) -> tuple[str, ...]:
    unique = list(dict.fromkeys(moves))
    rank = {family: i for i, family in enumerate(ORDER)}
    return tuple(sorted(unique, key=lambda m: (rank.get(m.split(":")[0], len(ORDER)), unique.index(m))))


def _cache_key(model_file: bytes, data: Any, candidates: list[tuple[str, ...]]) -> str:
    digest = hashlib.sha256(model_file)
    for part in (data.x_train[:MOVE_SAMPLES], data.y_train[:MOVE_SAMPLES], data.x_val, data.y_val):
        digest.update(np.ascontiguousarray(part).tobytes())
    digest.update(json.dumps([candidates, MOVE_EPOCHS, MOVE_SAMPLES, code_fingerprint()]).encode())
    return digest.hexdigest()[:24]


def plan_architecture(
    state: Any,
    model: Any,
    model_file: bytes,
    data: Any,
    table: dict[str, Any],
    techniques: tuple[str, ...],
    executor: Any,
    shared: tuple,
    reuse: bool,
    notify: Callable[[str], None],
    table_of: Callable[[bytes, list, float], dict[str, Any]],
) -> dict[str, Any] | None:
    """The moves for this fit, set on ``state`` (its moves, and the moved network's units and
    losses); None when the per-layer levels alone are predicted to meet the budget. Returns the record
    for fit.json: every candidate with its measured loss, and the moves chosen.

    The moves are chosen on the input model's sensitivity table (each option's loss by layer and
    level); the moved network's own table (``table_of``: a model file, its units, its accuracy) is then
    measured on it, distilled as a move is, for the per-layer search: a level that cost little on the
    input model's 512-unit Dense (rank 1/32: 16) leaves a rank-1 bottleneck in a pruned, moved one."""
    from edgeslim.fit import sensitivity
    from edgeslim.fit.select import select
    from edgeslim.fit.space import search_space

    limits = state.budget.limits()
    quantize = "quantize" in techniques
    layer_techniques = tuple(t for t in techniques if t not in ("architecture", "quantize"))

    def network(moves: tuple[str, ...]) -> tuple[list, list]:
        """The moved network's units and their losses, from the input model's sensitivity table."""
        if not moves:
            return state.units, state.losses
        moved = state.cost.network(moves)
        units = search_space(moved.graph, moved.analysis, layer_techniques)
        return units, sensitivity.losses(table, units)

    selections: dict[tuple[str, ...], Any] = {}

    def plan_on(moves: tuple[str, ...]) -> Any:
        if moves not in selections:
            from edgeslim.errors import ConfigError

            try:
                units, losses = network(moves)
            except ConfigError:  # moves that do not apply together
                selections[moves] = None
                return _nothing(limits)
            selections[moves] = select(
                units, losses, state.cost, limits, quantize, state.per_tensor_loss, moves
            )
        return selections[moves] or _nothing(limits)

    if plan_on(()).feasible:
        return None
    candidates = move_candidates(model)
    if not candidates:
        notify("architecture: the budget is out of the levels' reach and no move applies to this model")
        return {"candidates": {}, "moves": []}
    losses = move_losses(model_file, data, candidates, state.baseline_val, executor, shared, reuse, notify)
    choice = choose_moves(candidates, losses, plan_on, limits)
    record: dict[str, Any] = {
        "candidates": {"+".join(c): losses.get(c) for c in candidates},
        "moves": list(choice.moves),
        "predicted": choice.selection.predicted,
        "predicted_loss": choice.loss,
    }
    if not choice.moves:
        notify("architecture: no move brings the budget closer")
        return record
    notify(
        f"architecture: {', '.join(choice.moves)}; predicted "
        + ", ".join(f"{k} {choice.selection.predicted[k]:,.0f}" for k in limits)
        + "; measuring the moved network's own sensitivity"
    )
    state.moves = choice.moves
    state.units, _ = network(choice.moves)
    moved_file, moved_accuracy = distilled_file(model_file, data, choice.moves)
    moved_table = table_of(moved_file, state.units, moved_accuracy)
    state.losses = sensitivity.losses(moved_table, state.units)
    return record | {"moved_val_accuracy": moved_accuracy, "moved_sensitivity": moved_table}


def _nothing(limits: dict[str, float]) -> Any:
    from edgeslim.fit.select import Selection
    from edgeslim.fit.space import Plan

    return Selection(Plan(()), dict.fromkeys(limits, math.inf), math.inf, False)
