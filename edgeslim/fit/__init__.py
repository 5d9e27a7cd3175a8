"""`edgeslim fit`: the best model for a board and a tolerated loss, found automatically.

From per-layer sensitivity (sensitivity.py) and a cost model read off the layer handlers (costs.py),
a greedy selection (select.py) picks per-layer pruning, low-rank and depthwise-separable levels that
meet the budget with the least predicted loss; trials (trial.py) compress, fine-tune by distillation,
quantize and export each plan, and the search (search.py) adapts to what the real artifacts measure.
Independent tasks run in-process or on Ray (executor.py: ``--workers N`` starts a private local Ray,
``--ray-address`` joins a cluster within bounded waits). The result: ``DIR/fit.json`` (schema
``edgeslim.fit/1``), the winning model and its artifacts, and a report.

``fit.json`` is always there once the search has started, written atomically: complete when the fit
returns (``fits`` true: exit 0; ``fits`` false: exit 1, with the closest candidate in ``best`` when any
trial was measured, and what binds in ``binding``, e.g. ``every trial failed``); partial when it is
stopped: ``"interrupted": true`` after Ctrl-C or SIGTERM (the CLI exits 130), or ``"error"`` saying
what stopped it, with what was done so far and ``best`` null. A fit.json of an earlier run in ``DIR``
is removed when the search starts, so it never stands for this one. An interrupt stops Ray (a private
local Ray with all its processes) before fit.json is written; what was computed is kept outside
``DIR`` (the sensitivity table once complete, and every finished trial, see history.py), so the same
command run again resumes: it reuses the table and the trials instead of computing them again.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeslim.atomic import write_json
from edgeslim.errors import ConfigError, EdgeslimError
from edgeslim.fit.budget import CONSTRAINTS, TECHNIQUES, Budget, binding, make_budget, over_budget, parse_size
from edgeslim.fit.options import DEFAULTS, FitOptions
from edgeslim.fit.stats import compare

if TYPE_CHECKING:
    from edgeslim.fit.trial import TrialSettings

SCHEMA = "edgeslim.fit/1"

__all__ = ["SCHEMA", "Budget", "FitOptions", "FitResult", "fit_model", "make_budget", "parse_size"]


@dataclass
class FitResult:
    out_dir: Path
    fits: bool
    report: dict[str, Any]  # what fit.json holds
    binding: list[str]  # the constraints (or "loss") that the closest candidate breaks

    @property
    def exit_code(self) -> int:
        return 0 if self.fits else 1


def check_techniques(techniques: Any, target: str) -> tuple[str, ...]:
    """The techniques to search, in order. None: every technique the target's runtime takes (int8
    quantization only where export's registry says the target runs int8 files)."""
    from edgeslim.export.registry import TARGETS as EXPORT_TARGETS

    modes = EXPORT_TARGETS[target].allowed.get("tflite", ())
    if techniques is None:
        return tuple(t for t in TECHNIQUES if t != "quantize" or "int8" in modes)
    items = [t.strip() for t in techniques.split(",")] if isinstance(techniques, str) else list(techniques)
    unknown = [t for t in items if t not in TECHNIQUES]
    if unknown or not items:
        raise ConfigError(
            f"--techniques: unknown technique {unknown[0] if unknown else '(none)'!r}",
            f"choose from {list(TECHNIQUES)}",
        )
    if "quantize" not in items and "int8" in modes and not set(modes) - {"int8"}:
        raise ConfigError(f"--techniques: target {target} runs int8 models only, so it needs quantize")
    if "quantize" in items and "int8" not in modes:
        raise ConfigError(
            f"--techniques: target {target} runs {', '.join(modes)} models, not int8",
            "drop quantize from --techniques",
        )
    return tuple(t for t in TECHNIQUES if t in items)


def fit_model(
    model_path: str | Path,
    dataset: Any,
    budget: Budget,
    out_dir: str | Path,
    options: FitOptions = DEFAULTS,
    *,
    unsafe_load: bool = False,
    notify: Any = None,
) -> FitResult:
    """Search for the most accurate compressed model that meets ``budget``; see the module docstring.
    ``options``: how the search runs (fit/options.py holds every default)."""
    from edgeslim.fit.executor import check_executor, make_executor
    from edgeslim.fit.search import run_search
    from edgeslim.fit.trial import TrialSettings
    from edgeslim.modelio import load_keras_model
    from edgeslim.train.fit import check_compatible

    began = time.perf_counter()
    options.validate()
    techniques = check_techniques(options.techniques, budget.target)
    firmware, workers, ray_address = options.firmware, options.workers, options.ray_address
    if firmware and budget.target != "mcu":
        raise ConfigError("--firmware: applies to target mcu only", "add --target mcu")
    if budget.max_instructions is not None and not firmware:
        raise ConfigError("--max-instructions: instructions are measured on the firmware", "add --firmware")
    check_executor(workers, ray_address)
    notify = notify or (lambda message: None)
    model_path, out = Path(model_path), Path(out_dir)
    model = load_keras_model(model_path, unsafe=unsafe_load)
    check_compatible(model, dataset)
    check_supported(model, dataset)
    model_file = model_path.read_bytes()
    settings = TrialSettings(
        budget.target,
        budget.board,
        finetune_epochs=options.finetune_epochs,
        seed=options.seed,
        firmware=firmware,
        kernels=options.kernels,
    )
    executor = make_executor(workers, ray_address)
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "model": {
            "path": str(model_path),
            "sha256": hashlib.sha256(model_file).hexdigest(),
            "name": model.name,
        },
        "dataset": dataset.summary(),
        "budget": budget.to_dict(),
        "constraints": {k: CONSTRAINTS[k] for k in budget.limits()},
        "techniques": list(techniques),
        "loss_rule": {
            "confidence": options.loss_confidence,
            "judged_on": "validation",
            "rule": "one-sided upper bound of the paired loss <= max_loss, at confidence 1 - (1 - c)/m "
            "for the m contenders (within budget, point estimate within max_loss)",
        },
        "options": options.to_dict(),
        "executor": {"kind": executor.name, "workers": executor.workers, "address": ray_address},
        "settings": asdict(settings),
    }
    found: dict[str, Any] = {}
    try:
        (out / "fit.json").unlink(missing_ok=True)
        try:
            search = (
                model,
                model_file,
                dataset,
                budget,
                techniques,
                settings,
                executor,
                out,
                options.max_trials,
            )
            state, _ = run_search(
                *search, notify, found, reuse=options.reuse_cache, confidence=options.loss_confidence
            )
        finally:
            executor.close()
        winner, binds = _choose(state)
        report |= _progress(found) | {"best": None, "fits": False, "binding": binds}
        if winner is not None:
            report["best"] = best = _finish(winner, state, model, dataset, budget, out, settings, notify)
            report["fits"], report["binding"] = _measured_fit(best, binds)
        report["seconds"] = time.perf_counter() - began
        write_json(out / "fit.json", report)
    except KeyboardInterrupt:
        _write_partial(out, report, found, began, {"interrupted": True})
        notify("interrupted: the finished trials and the sensitivity table are kept; run again to resume")
        raise
    except BaseException as exc:  # noqa: BLE001 - recorded in fit.json, then raised unchanged
        why = exc.message if isinstance(exc, EdgeslimError) else f"{type(exc).__name__}: {exc}"
        _write_partial(out, report, found, began, {"error": why[:500]})
        raise
    from edgeslim.report.fit import write_fit_report

    write_fit_report(report, out / "report")
    return FitResult(out, report["fits"], report, report["binding"])  # as re-measured on the winner


def _progress(found: dict[str, Any], partial: bool = False) -> dict[str, Any]:
    """What the search has found so far, as fit.json keeps it."""
    state = found.get("state")
    pairs = list(zip(state.trials, state.evaluations, strict=not partial)) if state is not None else []
    return {
        "baseline": {
            "val_accuracy": state.baseline_val if state is not None else None,
            "measured": found.get("baseline_trial"),
        },
        "sensitivity": found.get("sensitivity"),
        "sensitivity_cached": found.get("sensitivity_cached", False),
        "architecture": found.get("architecture"),
        "trials": [t.to_dict() | {"evaluation": v} for t, v in pairs],
    }


def _write_partial(
    out: Path, report: dict[str, Any], found: dict[str, Any], began: float, why: dict[str, Any]
) -> None:
    """fit.json of a fit that was stopped: what it had done, no winner."""
    partial = report | _progress(found, partial=True) | {"best": None, "fits": False, "binding": []}
    write_json(out / "fit.json", partial | why | {"seconds": time.perf_counter() - began})


def _choose(state: Any) -> tuple[Any, list[str]]:
    """The winner: among the trials within budget and loss, the smallest whose validation accuracy is
    not significantly below the most accurate one's (McNemar, p >= 0.05 on the same samples), so noise
    on a few hundred samples never buys bytes; else the closest trial, and what binds."""
    pairs = list(zip(state.trials, state.evaluations, strict=True))
    good = [(t, v) for t, v in pairs if v["meets_budget"] and v["within_loss"]]
    if good:
        top = max(good, key=lambda p: p[0].val_accuracy)
        equal = [
            p for p in good if p is top or compare(top[0].val_correct, p[0].val_correct)["mcnemar_p"] >= 0.05
        ]
        return min(equal, key=lambda p: (p[0].measured["max_flash"], -p[0].val_accuracy)), []
    fitting = [(t, v) for t, v in pairs if v["meets_budget"]]
    if fitting:
        return min(fitting, key=lambda p: p[1]["loss_bound_points"]), ["loss"]
    measured = [(t, v) for t, v in pairs if not t.failed]
    if not measured:
        return None, ["every trial failed" if pairs else "no trial ran"]
    closest = min(measured, key=lambda p: sum(p[1]["over"].values()))
    return closest, closest[1]["binding"]


def check_supported(model: Any, dataset: Any) -> None:
    """Fit judges a loss in accuracy points by argmax: a classifier with one input and one output.
    Anything else is refused before any work, rather than scored as if it were one."""
    if dataset.task != "classification":
        raise ConfigError(
            f"fit: the model is a {dataset.task} model; fit searches classifiers only for now (its loss "
            "is accuracy points)",
            "compress it with an explicit chain: edgeslim compress MODEL --stage ... (its report measures "
            "the task's own metric)",
        )
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ConfigError(
            f"fit: the model has {len(model.inputs)} inputs and {len(model.outputs)} outputs; fit searches "
            "models with one of each for now",
            "compress it with an explicit chain: edgeslim compress MODEL --stage ...",
        )


def _measured_fit(best: dict[str, Any], in_trial: list[str]) -> tuple[bool, list[str]]:
    """Fits only as a measured fact: the winner met the loss and every constraint in its trial, and its
    final export exists and meets every constraint again, each measured (unknown is not met)."""
    verdict = best["evaluation"]
    if best.get("artifact") is None:
        return False, in_trial or ["the export for the board: " + str(best.get("export_error"))]
    final = binding(best["final_over"], best["final_unknown"])
    fits = verdict["meets_budget"] and verdict["within_loss"] and not final
    return fits, [] if fits else sorted(set(in_trial) | set(final)) or ["loss"]


def _finish(
    winner: Any,
    state: Any,
    model: Any,
    dataset: Any,
    budget: Budget,
    out: Path,
    settings: TrialSettings,
    notify: Any,
) -> dict[str, Any]:
    """Export the winner for the target and the user's board, and read the test split, once."""
    from edgeslim.export import export_model
    from edgeslim.fit.search import _correct
    from edgeslim.fit.trial import sidecar_measurements
    from edgeslim.runtime import load

    trial, verdict = winner
    summary = {
        "trial": trial.index,
        "plan": trial.plan,
        "stages": trial.stages,
        "evaluation": verdict,
        "measured": trial.measured,
    }
    model_path = out / "model.keras"
    shutil.copyfile(trial.model_path, model_path)
    summary["model"] = str(model_path.relative_to(out))
    notify(f"winner: trial {trial.index}; exporting for {budget.target} and measuring the test split once")
    try:
        artifacts = export_model(
            model_path,
            dataset,
            target=budget.target,
            out_dir=out / "exports" / budget.target,
            formats=["tflite"],
            board=budget.board,
            strict=False,
            firmware=settings.firmware,
            kernels=settings.kernels,
        )
    except EdgeslimError as exc:  # the board refuses it: the closest candidate, reported as such
        return summary | {"artifact": None, "export_error": exc.message}
    artifact = artifacts[0]
    outputs = load(artifact.path).predict(dataset.x_test)
    outputs = outputs[0] if isinstance(outputs, list) else outputs
    candidate = [bool(c) for c in np.argmax(outputs, axis=-1) == dataset.y_test]
    reference = _correct(model, dataset.x_test, dataset.y_test)
    test = compare(reference, candidate, state.confidence)
    final = sidecar_measurements(artifact.sidecar, trial.measured["max_macs"], budget.board)
    over, unknown = over_budget(budget.limits(), final)
    return summary | {
        "final_measured": final,  # the winner's own export, checked against the budget again
        "final_over": over,
        "final_unknown": unknown,
        "artifact": str(artifact.path.relative_to(out)),
        "sidecar": str(artifact.sidecar_path.relative_to(out)),
        "bytes": artifact.sidecar["bytes"],
        "mcu": artifact.sidecar.get("mcu"),
        "test_accuracy": test["accuracy"],
        "test": test,
        "test_vs_validation": test_against_validation(verdict, test, budget.max_loss),
        "input_test_accuracy": float(np.mean(reference)),
    }


def test_against_validation(verdict: dict[str, Any], test: dict[str, Any], max_loss: float) -> dict[str, Any]:
    """Whether the test split, read once, says what validation said: the loss rule held on validation
    but the test loss is over ``max_loss``, or the two 95 % intervals of the loss do not overlap."""
    validation = verdict.get("validation")
    if validation is None:
        return {"agree": None, "why": "no validation figures"}
    v_low, v_high = validation["loss_ci95_points"]
    t_low, t_high = test["loss_ci95_points"]
    if verdict["within_loss"] and test["loss_points"] > max_loss:
        why = (
            f"validation put the loss at most {verdict['loss_bound_points']:+.2f} pt, but the test split "
            f"measures {test['loss_points']:+.2f} pt, over --max-loss {max_loss:g}"
        )
        return {"agree": False, "why": why}
    if t_low > v_high or v_low > t_high:
        why = (
            f"the loss on validation {validation['loss_points']:+.2f} pt [{v_low:+.2f}, {v_high:+.2f}] "
            f"and on test {test['loss_points']:+.2f} pt [{t_low:+.2f}, {t_high:+.2f}] (95 %) do not overlap"
        )
        return {"agree": False, "why": why}
    return {"agree": True, "why": None}
