"""Choosing per-layer levels that meet the budget with the least predicted loss.

The predicted loss of a plan is the sum of its options' losses in the sensitivity table; its costs
come from the cost model. A greedy descent (the shape of AIMET's greedy selection, over several
constraints at once): from the uncompressed model, take the move with the least predicted loss per
unit of budget violation removed, until every constraint holds; then give back what is not needed:
relax any unit to a lower-loss option while the budget still holds. Deterministic: ties break by
unit order, so the same inputs give the same plan on any machine or executor.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeslim.fit.costs import CostModel
from edgeslim.fit.space import Plan, Unit

MAX_STEPS = 400


@dataclass
class Selection:
    plan: Plan
    predicted: dict[str, float]
    predicted_loss: float
    feasible: bool


def violation(predicted: dict[str, float], limits: dict[str, float]) -> float:
    return sum(max(0.0, predicted[k] / v - 1.0) for k, v in limits.items() if k in predicted)


def select(
    units: list[Unit],
    losses: list[list[float]],
    cost: CostModel,
    limits: dict[str, float],
    quantize: bool = True,
    per_tensor_loss: float | None = None,
    moves: tuple[str, ...] = (),
) -> Selection:
    """The plan meeting ``limits`` (predicted) with the least predicted loss, or the least violating one.

    ``per_tensor_loss``: the measured loss of int8 per tensor against per channel (None: keep per channel).
    ``moves``: the architecture moves every plan carries (``units`` are then the moved network's).
    """
    picks = [0] * len(units)
    per_channel = True

    def plan_of(p: list[int], pc: bool) -> Plan:
        return Plan.make(units, p, per_channel=pc, quantize=quantize, moves=moves)

    def score(p: list[int], pc: bool) -> tuple[float, float]:
        loss = sum(losses[i][j] for i, j in enumerate(p)) + (
            0.0 if pc or per_tensor_loss is None else per_tensor_loss
        )
        return violation(cost.predict(plan_of(p, pc)), limits), loss

    current_v, current_l = score(picks, per_channel)
    for _ in range(MAX_STEPS):
        if current_v <= 0:
            break
        best: tuple[float, list[int], bool, float, float] | None = None
        steps: list[tuple[list[int], bool]] = [
            ([*picks[:i], j, *picks[i + 1 :]], per_channel)
            for i, unit in enumerate(units)
            for j in range(len(unit.options))
            if j != picks[i]
        ]
        if per_channel and quantize and per_tensor_loss is not None:
            steps.append((picks, False))
        for new, pc in steps:
            v, loss = score(new, pc)
            gained = current_v - v
            if gained <= 1e-12:
                continue
            ratio = (max(loss - current_l, 0.0) + 1e-6) / gained
            if best is None or ratio < best[0]:
                best = (ratio, new, pc, v, loss)
        if best is None:
            break  # nothing reduces the violation further: the budget cannot be met by these techniques
        _, picks, per_channel, current_v, current_l = best
    if current_v <= 0:
        picks, per_channel, current_l = _relax(units, losses, picks, per_channel, score)
        current_v = 0.0
    plan = plan_of(picks, per_channel)
    return Selection(plan, cost.predict(plan), current_l, current_v <= 0)


def _relax(units: list[Unit], losses: list[list[float]], picks: list[int], per_channel: bool, score) -> tuple:  # noqa: ANN001
    """Give back compression the budget does not need: lower-loss options while it still holds."""
    _, current_l = score(picks, per_channel)
    improved = True
    while improved:
        improved = False
        candidates = [
            ([*picks[:i], j, *picks[i + 1 :]], per_channel)
            for i, unit in enumerate(units)
            for j in range(len(unit.options))
            if j != picks[i] and losses[i][j] < losses[i][picks[i]]
        ]
        if not per_channel:
            candidates.append((picks, True))
        best = None
        for new, pc in candidates:
            v, loss = score(new, pc)
            if v <= 0 and loss < current_l - 1e-12 and (best is None or loss < best[2]):
                best = (new, pc, loss)
        if best is not None:
            picks, per_channel, current_l = best
            improved = True
    return picks, per_channel, current_l
