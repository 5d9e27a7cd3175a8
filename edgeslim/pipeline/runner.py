"""train -> compress stages -> export targets -> report, in a run directory that resumes.

This is the one orchestrator: `edgeslim pipeline` and `edgeslim compress` both run it. Each step is
skipped when its key (its config section + its input's key) matches a completed marker, and a
skipped step loads nothing: models are loaded only when a later step that runs needs them, so a rerun
with nothing to do imports no TensorFlow. Every stage model is also converted to LiteRT and measured
there, so the report's accuracy-vs-size curve is measured in the runtime, stage by stage.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeslim.atomic import sha256_file, write_json, write_text
from edgeslim.errors import EdgeslimError, MissingTool
from edgeslim.modelio import KERAS_SUFFIXES
from edgeslim.pipeline.config import PipelineConfig
from edgeslim.pipeline.rundir import StepOutcome, cached, close_step, open_step, step_key, write_manifest

MODEL_OUTPUTS = ["model.keras", "metrics.json"]
REPORT_OUTPUTS = {"json": "report.json", "md": "report.md", "html": "report.html"}


@dataclass
class PipelineResult:
    run_dir: Path
    steps: list[StepOutcome] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    report: dict[str, Any] | None = None
    seconds: float = 0.0


Notify = Callable[[str, str], None]  # (step name, "start"/"cached"/"done"/"failed")


class Lazy:
    """A value made only when first asked for (a model read from disk, a dataset)."""

    def __init__(self, make: Callable[[], Any], value: Any = None) -> None:
        self._make, self._value = make, value

    def get(self) -> Any:
        if self._value is None:
            self._value = self._make()
        return self._value


@dataclass
class Context:
    config: PipelineConfig
    run_dir: Path
    data: Lazy
    result: PipelineResult
    progress: Any
    notify: Notify


def run_pipeline(
    config: PipelineConfig, run_dir: str | Path, progress: Any = True, notify: Notify | None = None
) -> PipelineResult:
    """Run the config into ``run_dir``: a new or empty folder, or an earlier run of edgeslim's (resumed),
    locked for this process while it runs."""
    from edgeslim.ownership import owned

    with owned(run_dir, "run", inputs=run_inputs(config)) as folder:
        return _run(config, folder, progress, notify)


def run_inputs(config: PipelineConfig) -> list[str]:
    """What a run reads from the user: a run folder never contains them (it would write over them)."""
    model = [config.model] if config.model.endswith(KERAS_SUFFIXES) else []
    return model + ([config.dataset["data_dir"]] if config.dataset.get("data_dir") else [])


def _run(config: PipelineConfig, run_dir: Path, progress: Any, notify: Notify | None) -> PipelineResult:
    import yaml

    start = time.perf_counter()
    write_text(run_dir / "config.yaml", yaml.safe_dump(config.raw, sort_keys=False))
    result = PipelineResult(run_dir=run_dir)
    ctx = Context(config, run_dir, Lazy(lambda: _load_data(config)), result, progress, notify or _quiet)

    baseline, key = _train_step(ctx)
    model, model_path, recipe = baseline, run_dir / "00-train" / "model.keras", None
    for index, spec in enumerate(config.stages, start=1):
        model, key, recipe, model_path = _compress_step(ctx, index, spec, model, baseline, key, recipe)
    if config.fit is not None:
        model, key, recipe, model_path = _fit_step(ctx, model_path, key)
    for target in config.export["targets"]:
        _export_step(ctx, target, model, model_path, key, recipe)
    write_manifest(run_dir, config.raw, result.steps, time.perf_counter() - start)  # what the report reads
    result.report = _report_step(ctx)
    result.seconds = time.perf_counter() - start
    write_manifest(run_dir, config.raw, result.steps, result.seconds)
    return result


def _quiet(step: str, event: str) -> None:
    return None


def _load_data(config: PipelineConfig) -> Any:
    from edgeslim.data import load_dataset
    from edgeslim.data.anomaly import dataset_for_task
    from edgeslim.train.zoo_names import ZOO_TASKS

    ds = config.dataset
    options = {k: ds[k] for k in ("anomaly_class", "image_size", "color_mode") if ds.get(k) is not None}
    data = load_dataset(ds["name"], ds["data_dir"], seed=ds["seed"], **options)
    return dataset_for_task(data, ZOO_TASKS.get(config.model))


def _train_step(ctx: Context) -> tuple[Lazy, str]:
    config = ctx.config
    step_dir = ctx.run_dir / "00-train"
    model_path = step_dir / "model.keras"
    source_hash = sha256_file(config.model) if config.model.endswith(KERAS_SUFFIXES) else config.model
    key = step_key({"dataset": config.dataset, "model": source_hash, "train": config.train}, "")
    if _reuse(ctx, step_dir, key, MODEL_OUTPUTS, "train") is not None:
        return Lazy(lambda: _load(model_path)), key
    ctx.notify("train", "start")
    began = time.perf_counter()
    model, history = _baseline_model(config, ctx.data.get(), ctx.progress)
    open_step(step_dir)
    if history is not None:
        write_json(step_dir / "history.json", history)
    outputs = _save_model_step(model, ctx.data.get(), step_dir, record=None, recipe=None)
    _finish(ctx, step_dir, key, outputs, began, "train")
    return Lazy(lambda: _load(model_path), model), key


def _load(path: Path) -> Any:
    from edgeslim.modelio import load_keras_model

    return load_keras_model(path)


def _baseline_model(config: PipelineConfig, data: Any, progress: Any) -> tuple[Any, Any]:
    """The trained model and its history (None when a trained .keras model is measured as given)."""
    from edgeslim.train.config import TrainConfig
    from edgeslim.train.fit import check_compatible, train_model
    from edgeslim.train.run import resolve_model

    model = resolve_model(config.model, data, unsafe=config.unsafe_load, seed=config.dataset["seed"])
    if config.train is None:  # a trained .keras model: measure it as it is
        check_compatible(model, data)
        return model, None
    # A loaded .keras file is our own in-memory copy: training it never touches the user's file.
    trained = train_model(model, data, TrainConfig.from_dict(config.train), progress=progress)
    return trained.model, trained.history


def _compress_step(
    ctx: Context, index: int, spec: Any, model: Lazy, baseline: Lazy, input_key: str, recipe: Any
) -> tuple[Lazy, str, Any, Path]:
    from edgeslim.compress.base import StageRecord
    from edgeslim.compress.registry import build_stage

    name = f"{index:02d}-{spec.name}"
    step_dir = ctx.run_dir / name
    key = step_key({"stage": spec.name, "params": spec.params, "finetune": spec.finetune}, input_key)
    model_path = step_dir / "model.keras"
    if _reuse(ctx, step_dir, key, MODEL_OUTPUTS + ["record.json"], name) is not None:
        record = StageRecord.from_dict(json.loads((step_dir / "record.json").read_text()))
        return Lazy(lambda: _load(model_path)), key, _recipe(record.quantization) or recipe, model_path
    ctx.notify(name, "start")
    began = time.perf_counter()
    from edgeslim.train.config import FinetuneConfig
    from edgeslim.train.finetune import finetune as finetuner

    stage = build_stage(spec.name, **spec.params)
    finetune = (
        FinetuneConfig.from_dict(spec.finetune, prefix=f"{spec.name}.finetune") if spec.finetune else None
    )
    data = ctx.data.get()
    outcome = stage.run(
        model.get(),
        data,
        finetune=finetune,
        teacher=baseline.get(),
        progress=ctx.progress,
        finetuner=finetuner,
    )
    for note in outcome.record.notes:
        ctx.notify(f"{name}: {note}", "note")
    recipe = _recipe(outcome.record.quantization) or recipe
    open_step(step_dir)
    outputs = _save_model_step(outcome.model, data, step_dir, record=outcome.record, recipe=recipe)
    _finish(ctx, step_dir, key, outputs, began, name)
    return Lazy(lambda: _load(model_path), outcome.model), key, recipe, model_path


def _fit_step(ctx: Context, input_path: Path, input_key: str) -> tuple[Lazy, str, Any, Path]:
    """The budget search in place of a hand-written chain: 01-fit/ holds its winner, measured like a stage."""
    from edgeslim.compress.base import StageRecord
    from edgeslim.modelio import load_keras_model, read_recipe

    fit = ctx.config.fit or {}
    step_dir = ctx.run_dir / "01-fit"
    model_path = step_dir / "model.keras"
    key = step_key({"fit": fit}, input_key)
    if _reuse(ctx, step_dir, key, MODEL_OUTPUTS + ["record.json"], "01-fit") is not None:
        marker = json.loads((step_dir / "step.json").read_text())
        ctx.result.failures += marker.get("failures", [])
        return Lazy(lambda: _load(model_path)), key, read_recipe(model_path), model_path
    from edgeslim.analysis.keras_model import analyze_keras
    from edgeslim.fit import FitOptions, check_techniques, fit_model, make_budget

    ctx.notify("01-fit", "start")
    began = time.perf_counter()
    open_step(step_dir)
    budget_keys = ("board", "max_flash", "max_arena", "max_macs", "max_latency_ms", "max_instructions")
    budget = make_budget(
        fit["target"], max_loss=fit["max_loss"], prefix="fit.", **{k: fit.get(k) for k in budget_keys}
    )
    data = ctx.data.get()
    outcome = fit_model(
        input_path,
        data,
        budget,
        step_dir / "search",
        FitOptions(
            **{k: fit[k] for k in FitOptions().to_dict()}
            | {"techniques": check_techniques(fit["techniques"], budget.target)}
        ),
        notify=lambda message: ctx.notify(f"01-fit: {message}", "note"),
    )
    best = outcome.report.get("best")
    if best is None:
        raise EdgeslimError(
            f"fit: every trial failed ({', '.join(outcome.binding)})", "see 01-fit/search/fit.json"
        )
    winner = load_keras_model(step_dir / "search" / best["model"])
    recipe = read_recipe(step_dir / "search" / best["model"])
    before, after = analyze_keras(_load(input_path)), analyze_keras(winner)
    record = StageRecord(
        "fit",
        dict(fit),
        totals={
            "params_before": before.total_params,
            "params_after": after.total_params,
            "macs_before": before.total_macs,
            "macs_after": after.total_macs,
        },
        extra={"fit": {k: outcome.report[k] for k in ("fits", "binding", "budget")}, "plan": best["plan"]},
        notes=[f"fit: {'fits' if outcome.fits else 'no model fits; binding: ' + ', '.join(outcome.binding)}"],
    )
    failures = (
        [] if outcome.fits else [f"fit: no model fits the budget; binding: {', '.join(outcome.binding)}"]
    )
    outputs = _save_model_step(winner, data, step_dir, record=record, recipe=recipe)
    outputs += [str(p.relative_to(step_dir)) for p in (step_dir / "search" / "fit.json",)]
    info = close_step(step_dir, key, outputs, time.perf_counter() - began, {"failures": failures})
    ctx.result.steps.append(StepOutcome("01-fit", step_dir, key, False, info["seconds"], info))
    ctx.result.failures += failures
    ctx.notify("01-fit", "failed" if failures else "done")
    return Lazy(lambda: _load(model_path), winner), key, recipe, model_path


def _recipe(values: dict[str, Any] | None) -> Any:
    from edgeslim.recipe import QuantRecipe

    return QuantRecipe.from_dict(values) if values else None


def _save_model_step(model: Any, data: Any, step_dir: Path, record: Any, recipe: Any) -> list[str]:
    """model.keras (with the recipe inside), record.json, metrics.json, and the model deployed to LiteRT
    and measured there. Returns the step's output files (relative), which its marker hashes."""
    from edgeslim.analysis.keras_model import analyze_keras
    from edgeslim.export import export_model
    from edgeslim.modelio import save_keras_model

    save_keras_model(model, step_dir / "model.keras", recipe=recipe)
    if record is not None:
        write_json(step_dir / "record.json", record.to_dict())
    stats = analyze_keras(model)
    artifacts = export_model(
        model,
        data,
        target="cpu",
        out_dir=step_dir / "deployed",
        formats=["tflite"],
        quant=recipe or "float32",
        verify=True,
        source_path=step_dir / "model.keras",
        strict=False,
    )
    deployed = artifacts[0]
    verification = deployed.sidecar["verification"]
    metrics = {
        # Verification already ran the Keras model on the whole test set as its reference.
        "test_accuracy": verification.get("keras_accuracy"),
        "test_metrics": verification.get("keras_metrics"),
        "test_samples": verification["samples"],
        "dataset": data.summary(),
        "params": stats.total_params,
        "nonzero_params": stats.nonzero_params,
        "macs": stats.total_macs,
        "macs_complete": stats.macs_complete,
        "layers": [layer.to_dict() for layer in stats.layers],
        "deployed": {**deployed.sidecar, "path": str(deployed.path.relative_to(step_dir))},
    }
    write_json(step_dir / "metrics.json", metrics)
    outputs = MODEL_OUTPUTS + [str(p.relative_to(step_dir)) for p in (deployed.path, deployed.sidecar_path)]
    return outputs + (["record.json"] if record is not None else [])


def _formats(given: Any) -> tuple[str, ...] | None:
    """``export.formats.<target>``: one name or a list of them (None: the target's own)."""
    if not given:
        return None
    return (given,) if isinstance(given, str) else tuple(given)


def _export_step(
    ctx: Context, target: str, model: Lazy, model_path: Path, input_key: str, recipe: Any
) -> None:
    from edgeslim.export import export_model
    from edgeslim.export.options import CONFIG_FIELDS, DEFAULTS, ExportOptions

    name = f"exports/{target}"
    step_dir = ctx.run_dir / "exports" / target
    export = ctx.config.export
    firmware = bool(export.get("firmware")) and target == "mcu"
    options = ExportOptions(
        formats=_formats(export.get("formats", {}).get(target)),
        strict=False,  # a failed artifact is a result the report shows, not a crash
        **{k: export[k] for k in CONFIG_FIELDS},
    ).updated(  # the kernels choose the firmware's build: the other targets' exports have none
        firmware=firmware, kernels=export["kernels"] if firmware else DEFAULTS.kernels
    )
    section = {
        "target": target,
        **options.to_dict(),
        "quant": None,  # the recipe saved in model_path applies where the target takes its mode
        "recipe": recipe.to_dict() if recipe is not None else None,
    }
    if not firmware:  # only then part of the step's key: other exports keep their cached results
        del section["firmware_samples"], section["kernels"]
    # What this machine can check is part of the result ("not checked: no compiler"): once a tool
    # appears, the step runs again and checks.
    section["tools"] = available_tools(target, firmware)
    key = step_key(section, input_key)
    marker = _reuse(ctx, step_dir, key, [], name)
    if marker is not None:
        ctx.result.failures += marker.get("failures", [])
        return
    ctx.notify(name, "start")
    began = time.perf_counter()
    open_step(step_dir)
    failures: list[str] = []
    try:
        artifacts = export_model(
            model.get(), ctx.data.get(), target, step_dir, options, source_path=model_path
        )
    except MissingTool as exc:  # not a result: no marker, so the step runs again once the tool is there
        ctx.result.failures.append(f"{target}: {exc}")
        ctx.notify(name, "failed")
        return
    except EdgeslimError as exc:  # a model that does not fit a board is a result to report, not a crash
        failures.append(f"{target}: {exc}")
        artifacts = []
    failures += [
        f"{target}: {a.path.name} failed verification"
        for a in artifacts
        if not a.sidecar.get("verification", {}).get("passed", True)
    ]
    files = [
        str(p.relative_to(step_dir)) for p in step_dir.rglob("*") if p.is_file() and p.name != "step.json"
    ]
    extra = {
        "files": sorted(files),
        "failures": failures,
        "artifacts": [str(a.path.relative_to(step_dir)) for a in artifacts],
    }
    info = close_step(step_dir, key, extra["files"], time.perf_counter() - began, extra)
    ctx.result.steps.append(StepOutcome(name, step_dir, key, False, info["seconds"], info))
    ctx.result.failures += failures
    ctx.notify(name, "failed" if failures else "done")


def available_tools(target: str, firmware: bool) -> dict[str, bool]:
    """The optional tools an export of ``target`` uses when they are present (cheap: no imports)."""
    import importlib.util
    import shutil

    tools: dict[str, bool] = {}
    if target == "mcu":
        tools["tflite_micro"] = importlib.util.find_spec("tflite_micro") is not None
        tools["c++"] = any(shutil.which(c) for c in ("c++", "g++", "clang++"))
    if target == "edgetpu":
        tools["edgetpu_compiler"] = shutil.which("edgetpu_compiler") is not None
    if firmware:
        tools["arm-none-eabi-gcc"] = shutil.which("arm-none-eabi-gcc") is not None
        tools["qemu-system-arm"] = shutil.which("qemu-system-arm") is not None
    return tools


def _report_step(ctx: Context) -> dict[str, Any]:
    """Rebuilt only when a step it reads changed (or its own files were touched)."""
    report_config = ctx.config.report
    step_dir = ctx.run_dir / "report"
    key = step_key({"report": report_config, "steps": [s.key for s in ctx.result.steps]}, "")
    outputs = [REPORT_OUTPUTS[f] for f in report_config["formats"]]
    if "json" in report_config["formats"] and _reuse(ctx, step_dir, key, outputs, "report") is not None:
        return json.loads((step_dir / "report.json").read_text())
    from edgeslim.report import build_report, write_report

    ctx.notify("report", "start")
    began = time.perf_counter()
    open_step(step_dir)
    report = build_report(ctx.run_dir)
    written = write_report(report, step_dir, formats=report_config["formats"], plots=report_config["plots"])
    files = [str(p.relative_to(step_dir)) for p in written.values()]
    _finish(ctx, step_dir, key, files, began, "report")
    return report


def _reuse(ctx: Context, step_dir: Path, key: str, outputs: list[str], name: str) -> dict[str, Any] | None:
    """The step's marker when it can be reused as it is (recorded as a cached step), else None."""
    marker = cached(step_dir, key, outputs)
    if marker is not None:
        ctx.result.steps.append(StepOutcome(name, step_dir, key, True, 0.0, marker))
        ctx.notify(name, "cached")
    return marker


def _finish(ctx: Context, step_dir: Path, key: str, outputs: list[str], began: float, name: str) -> None:
    info = close_step(step_dir, key, outputs, time.perf_counter() - began)
    ctx.result.steps.append(StepOutcome(name, step_dir, key, False, info["seconds"], info))
    ctx.notify(name, "done")
