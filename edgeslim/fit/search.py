"""The adaptive search: sensitivity -> select -> trials, measured, until the budget and the loss hold.

Each round selects plans for the budget as the calibrated cost model predicts it (one at the budget,
and, until compressed plans of this model have been measured, one with a safety margin), runs them
as independent trials (in-process or on Ray), and feeds the real artifacts' figures back into the
cost model. A round whose best trial breaks a constraint tightens the predicted budget for that
constraint; a round whose best trial came out well under what was predicted selects again, so the
recalibrated model can spend the room on accuracy.
Loss is judged on the validation split; the test split is read once, for the winner.

The loss rule (what makes "within --max-loss" hold on data the search never saw): a trial is within
the loss when the one-sided upper confidence bound of its paired loss against the input model is at
most ``max_loss``, not its point estimate. The winner is chosen among the contenders, the trials that
meet the budget with a point estimate within the loss (one over it cannot win at any confidence), so
each of those m is judged at confidence 1 - (1 - c)/m (Bonferroni): whichever wins, the chance that a
model truly over the loss passes stays near 1 - c. Every verdict is judged again when a round adds
contenders, so the verdicts in fit.json are those of the final m.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeslim.fit import history, sensitivity
from edgeslim.fit.architecture import plan_architecture
from edgeslim.fit.budget import Budget, binding, over_budget
from edgeslim.fit.costs import CostModel, prediction_error
from edgeslim.fit.instructions import InstructionModel
from edgeslim.fit.options import DEFAULTS
from edgeslim.fit.select import select
from edgeslim.fit.space import Plan, search_space
from edgeslim.fit.stats import compare
from edgeslim.fit.trial import MEASURING_BOARD, TrialResult, TrialSettings, run_trial

MARGIN = 0.88  # the hedging plan of a round aims this far under the budget
SLACK = 0.08  # a winner this far under its limits *and* its prediction may buy accuracy with the room
CALIBRATED = 2  # measured compressed plans after which the cost model is trusted without a hedge
Notify = Callable[[str], None]


@dataclass
class SearchState:
    budget: Budget
    units: list[Any]
    cost: CostModel
    losses: list[list[float]]
    baseline_val: float
    baseline_correct: list[bool]
    per_tensor_loss: float | None
    trials: list[TrialResult] = field(default_factory=list)
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    scale: dict[str, float] = field(default_factory=dict)
    epochs: int = 0  # fine-tuning epochs of the next trials; raised when the loss binds
    base_epochs: int = 0
    retry: Plan | None = None  # the plan to train longer next, when the loss binds on the best fit
    moves: tuple[str, ...] = ()  # the architecture moves every plan carries (architecture.py)
    confidence: float = DEFAULTS.loss_confidence

    def judge(self, trial: TrialResult, predicted: dict[str, float] | None = None) -> dict[str, Any]:
        """Whether a trial meets each constraint, with the paired statistics; the loss verdict comes
        from ``rejudge`` once the number of candidates is known. A constraint with no measurement is
        "unknown", which never meets the budget."""
        over, unknown = over_budget(self.budget.limits(), trial.measured)
        verdict = {
            "trial": trial.index,
            "meets_budget": not trial.failed and not over and not unknown,
            "over": over,
            "unknown": unknown,
            "binding": binding(over, unknown),  # for the record and the report, which do not import fit
            "predicted": predicted,
        }
        return verdict | self._loss_verdict(trial, 1)

    def _loss_verdict(self, trial: TrialResult, candidates: int) -> dict[str, Any]:
        level = 1 - (1 - self.confidence) / max(1, candidates)
        stats = compare(self.baseline_correct, trial.val_correct, level) if trial.val_correct else None
        bound = stats["loss_upper_points"] if stats else math.inf
        return {
            "loss_points": stats["loss_points"] if stats else math.inf,
            "loss_bound_points": bound,  # the one-sided upper bound at `loss_confidence`
            "loss_confidence": level,
            "candidates": candidates,
            "within_loss": bound <= self.budget.max_loss,
            "validation": stats,
        }

    def rejudge(self) -> None:
        """Judge every trial's loss again at the confidence that the contenders so far call for."""
        candidates = sum(
            1 for v in self.evaluations if v["meets_budget"] and v["loss_points"] <= self.budget.max_loss
        )
        for trial, verdict in zip(self.trials, self.evaluations, strict=True):
            verdict.update(self._loss_verdict(trial, candidates))


def run_search(
    model: Any,
    model_file: bytes,
    data: Any,
    budget: Budget,
    techniques: tuple[str, ...],
    settings: TrialSettings,
    executor: Any,
    out_dir: Path,
    max_trials: int,
    notify: Notify,
    found: dict[str, Any] | None = None,
    *,
    reuse: bool = True,
    confidence: float = DEFAULTS.loss_confidence,
) -> tuple[SearchState, dict[str, Any]]:
    """The search; ``found`` receives the state and the figures as they come (``state``,
    ``baseline_trial``, ``sensitivity``, ``sensitivity_cached``), so a fit that is stopped can say
    how far it got. Every finished trial goes to the history as soon as it is in, so a rerun after an
    interrupt reuses it (as it reuses the cached sensitivity table); ``reuse=False`` ignores both caches
    (and still fills them)."""
    from edgeslim.compress.channels import ChannelAnalysis
    from edgeslim.layers.graph import ModelGraph

    graph = ModelGraph(model)
    analysis = ChannelAnalysis(graph, lambda layer: True)
    units = search_space(graph, analysis, techniques)
    from edgeslim.export.registry import TARGETS

    unquantized = TARGETS[budget.target].defaults.get("tflite", "float32")
    instructions = _instruction_model(settings, notify)
    cost = CostModel(graph, analysis, units, unquantized=unquantized, instructions=instructions)
    correct = _correct(model, data.x_val, data.y_val)
    shared_model, shared_data = executor.share(model_file), executor.share(data)

    notify(f"baseline: validation accuracy {np.mean(correct):.2%}; measuring its {budget.target} export")
    state = SearchState(budget, units, cost, [], float(np.mean(correct)), correct, None)
    state.confidence = confidence
    found = {} if found is None else found
    found["state"] = state
    base = _baseline(state, shared_model, shared_data, settings, techniques, executor, out_dir)
    found["baseline_trial"] = base
    shared = (shared_model, shared_data)
    table, cached = _sensitivity(model_file, data, units, executor, shared, state.baseline_val, notify, reuse)
    found |= {"sensitivity": table, "sensitivity_cached": cached}
    state.losses = sensitivity.losses(table, units)
    if "architecture" in techniques:

        def table_of(file: bytes, units: list, baseline: float) -> dict[str, Any]:
            pair = (executor.share(file), shared_data)
            return _sensitivity(file, data, units, executor, pair, baseline, notify, reuse)[0]

        found["architecture"] = plan_architecture(
            state, model, model_file, data, table, techniques, executor, shared, reuse, notify, table_of
        )
    state.scale = {k: 1.0 for k in budget.limits()}
    state.epochs = state.base_epochs = settings.finetune_epochs
    past_dir = history.history_dir(model_file, table["key"], settings)
    reused = _reuse_history(state, past_dir, out_dir, notify) if reuse else []
    trials_left = max_trials if not reused or _adapt(state, reused) else 0
    while trials_left > 0:
        plans = _propose(state, "quantize" in techniques)
        plans = plans[:trials_left]
        if not plans:
            notify("no new plan to try: the search has converged")
            break
        start_index = len(state.trials)
        notify(
            f"trials {start_index}..{start_index + len(plans) - 1}: " + "; ".join(_short(p) for p in plans)
        )
        calls = [
            (
                start_index + i,
                shared_model,
                shared_data,
                plan,
                trial_settings(settings, state),
                str(out_dir / "trials" / f"{start_index + i:02d}"),
            )
            for i, plan in enumerate(plans)
        ]
        predicted = [cost.predict(plan) for plan in plans]  # before the measurements calibrate it
        results = executor.map(
            run_trial, calls, on_failure=_failed_trial, each=lambda i, trial: history.store(past_dir, trial)
        )
        trials_left -= len(plans)
        for plan, trial, guess in zip(plans, results, predicted, strict=True):
            state.trials.append(trial)
            state.evaluations.append(
                state.judge(trial, guess) | {"prediction_error": prediction_error(guess, trial.measured)}
            )
            if not trial.failed:
                cost.observe(plan, trial.measured, trial.profile)
        state.rejudge()
        for trial, verdict in zip(results, state.evaluations[-len(results) :], strict=True):
            notify(_describe(trial, verdict))
        if not _adapt(state, results):
            break
    return state, {
        "sensitivity": table,
        "sensitivity_cached": cached,
        "baseline_trial": base,
        "architecture": found.get("architecture"),
    }


def _instruction_model(settings: TrialSettings, notify: Notify) -> InstructionModel | None:
    """With firmware trials, the instruction model of the core they run on, its prior measured once
    per core and kernel set (calibration.py)."""
    if not (settings.firmware and settings.target == "mcu"):
        return None
    from edgeslim.fit.calibration import calibration_profile

    model = InstructionModel()
    model.observe_profile(calibration_profile(settings.board or MEASURING_BOARD, settings.kernels, notify))
    return model


def trial_settings(settings: TrialSettings, state: SearchState) -> TrialSettings:
    """The settings the next trials run with: the fine-tuning epochs as the search has set them (doubled
    once when the loss binds, so that the retry of the same plan does train longer)."""
    return replace(settings, finetune_epochs=state.epochs)


def _reuse_history(state: SearchState, folder: Path, out_dir: Path, notify: Notify) -> list[TrialResult]:
    """Earlier fits' trials: they calibrate the cost model, and those trained as long as this fit
    trains become this fit's first candidates, judged against this budget."""
    past = history.load(folder)
    reused = []
    for trial in past:
        state.cost.observe(Plan.from_dict(trial.plan), trial.measured, trial.profile)
        if trial.epochs == state.epochs:
            copy = history.reuse(trial, len(state.trials), out_dir)
            copy.reused = True
            state.trials.append(copy)
            state.evaluations.append(state.judge(copy))
            reused.append(copy)
    state.rejudge()
    if past:
        notify(
            f"history: {len(past)} trial(s) of earlier fits calibrate the cost model; {len(reused)} reused"
        )
    return reused


def _baseline(
    state: SearchState,
    model: Any,
    data: Any,
    settings: TrialSettings,
    techniques: tuple,
    executor: Any,
    out_dir: Path,
) -> dict[str, Any]:
    """The input model exported as it is (post-training quantization): calibrates the cost model, and
    says what per-tensor int8 costs in accuracy against per channel."""
    quantize = "quantize" in techniques
    plans = [Plan((), per_channel=True, quantize=quantize)]
    if quantize:
        plans.append(Plan((), per_channel=False, quantize=True))
    calls = [
        (
            -1 - i,
            model,
            data,
            plan,
            replace(settings, finetune_epochs=0, qat=False),
            str(out_dir / "trials" / f"baseline-{i}"),
        )
        for i, plan in enumerate(plans)
    ]
    results = executor.map(run_trial, calls, on_failure=_failed_trial)
    for plan, trial in zip(plans, results, strict=True):
        if trial.failed:
            from edgeslim.errors import EdgeslimError

            raise EdgeslimError(
                f"the input model cannot be exported for {state.budget.target}: {trial.failed}"
            )
        state.cost.observe(plan, trial.measured, trial.profile)
    if len(results) == 2 and results[0].val_accuracy is not None and results[1].val_accuracy is not None:
        state.per_tensor_loss = max(0.0, results[0].val_accuracy - results[1].val_accuracy)
    return {
        "per_channel": results[0].to_dict(),
        "per_tensor": results[1].to_dict() if len(results) > 1 else None,
    }


def _sensitivity(
    model_file: bytes,
    data: Any,
    units: list,
    executor: Any,
    shared: tuple,
    baseline: float,
    notify: Notify,
    reuse: bool,
) -> tuple[dict, bool]:
    shared_model, shared_data = shared
    key = sensitivity.cache_key(model_file, data, units)
    table = sensitivity.load_cached(key) if reuse else None
    if table is not None:
        notify(f"sensitivity: reusing the cached table ({len(sensitivity.tasks(units))} entries)")
        return table, True
    entries = sensitivity.tasks(units)
    notify(f"sensitivity: {len(entries)} entries (each layer, each technique, each level, alone)")
    chunks = [entries[i :: max(1, executor.workers)] for i in range(max(1, executor.workers))]
    chunks = [c for c in chunks if c]
    results = executor.map(
        sensitivity.evaluate_chunk, [(shared_model, shared_data, units, c) for c in chunks]
    )
    accuracy = {}
    for chunk, accs in zip(chunks, results, strict=True):
        for entry, acc in zip(chunk, accs, strict=True):
            accuracy[(entry[0], entry[1])] = acc
    table = sensitivity.build_table(baseline, units, entries, [accuracy[(n, o)] for n, o in entries], key)
    sensitivity.save_cached(key, table)
    return table, False


def _propose(state: SearchState, quantize: bool) -> list[Plan]:
    tried = {t.plan_key for t in state.trials if t.epochs == state.epochs}
    if state.retry is not None:  # the best plan within budget, again with the doubled epochs
        plan, state.retry = state.retry, None
        if plan.key() not in tried:
            return [plan]
    plans: list[Plan] = []
    # The hedge covers the cost model's error on compressed plans, which the first measurements of
    # this model (this fit's or an earlier fit's, from the history) remove.
    margins = (1.0,) if state.cost.compressed_observations >= CALIBRATED else (1.0, MARGIN)
    for margin in margins:
        limits = {k: v * state.scale[k] * margin for k, v in state.budget.limits().items()}
        chosen = select(
            state.units, state.losses, state.cost, limits, quantize, state.per_tensor_loss, state.moves
        )
        if chosen.plan.key() not in tried and all(chosen.plan.key() != p.key() for p in plans):
            plans.append(chosen.plan)
    return plans


def _adapt(state: SearchState, results: list[TrialResult]) -> bool:
    """Decide the next round from this one; False when the search should stop.

    Every measurement has already recalibrated the cost model, so the next selection prices plans
    closer to what the artifacts measure. The best trial that holds the budget: if it measured well
    under both the limits and its own prediction, select again (the recalibrated model lets the plan
    spend the room on accuracy; room the selection left on purpose is not worth a trial); with the
    loss over, train the same plan longer; else stop. No trial holds the
    budget: select again, with a small safety margin on each broken constraint in case the model's
    error repeats.
    """
    verdicts = state.evaluations[-len(results) :]
    limits = state.budget.limits()
    fitting = [v for v in verdicts if v["meets_budget"]]
    if fitting:
        best = max(fitting, key=lambda v: (v["within_loss"], v["validation"]["accuracy"]))
        trial = next(t for t in state.trials if t.index == best["trial"])
        predicted = best.get("predicted") or {}  # none for an earlier fit's trial: its limits differed
        room = [
            min(1 - trial.measured[k] / v, 1 - trial.measured[k] / (predicted.get(k) or v))
            for k, v in limits.items()
            if trial.measured.get(k) is not None
        ]
        if room and min(room) > SLACK:
            return True
        if best["within_loss"] or state.epochs >= 2 * state.base_epochs:
            return False
        state.epochs *= 2  # the budget is spent and the loss binds: train the same plan longer
        state.retry = Plan.from_dict(trial.plan)
        return True
    if not any(not t.failed for t in results):
        return False
    for verdict in verdicts:
        for key in verdict["over"]:
            if key in state.scale:
                state.scale[key] *= 0.97
    return True


def _failed_trial(args: tuple, why: str) -> TrialResult:
    index, _, _, plan, _, _ = args
    return TrialResult(index=index, plan=plan.to_dict(), plan_key=plan.key(), failed=why)


def _correct(model: Any, x: np.ndarray, y: np.ndarray) -> list[bool]:
    import keras

    outputs = np.concatenate(
        [keras.ops.convert_to_numpy(model(x[i : i + 512], training=False)) for i in range(0, len(x), 512)]
    )
    return [bool(c) for c in np.argmax(outputs, axis=-1) == y]


def _short(plan: Plan) -> str:
    layers = plan.to_dict()["layers"]
    parts = [*plan.moves, *(f"{k.split(' ')[0]} {v}" for k, v in layers.items())]
    return ", ".join(parts) or "quantize only"


def _describe(trial: TrialResult, verdict: dict[str, Any]) -> str:
    if trial.failed:
        return f"  trial {trial.index}: failed: {trial.failed}"
    m = trial.measured
    parts = [f"{m['max_flash'] / 1024:.1f} KB"]
    if m.get("max_arena") is not None:
        parts.append(f"arena {m['max_arena'] / 1024:.1f} KB")
    parts.append(f"{trial.macs:,} MACs")
    status = "fits" if verdict["meets_budget"] else "over " + ", ".join(verdict["binding"])
    return (
        f"  trial {trial.index}: {', '.join(parts)}; validation {trial.val_accuracy:.2%} "
        f"(loss {verdict['loss_points']:+.2f} pt, at most {verdict['loss_bound_points']:+.2f} at "
        f"{verdict['loss_confidence']:.0%}); {status}; {trial.seconds:.0f} s"
    )
