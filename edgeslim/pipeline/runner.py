"""train -> compress stages -> export targets -> report, in a run directory that resumes.

Each step is skipped when its key (its config section + its input's key) matches a completed marker.
Every stage model is also converted to LiteRT and measured there, so the report's accuracy-vs-size
curve is measured in the runtime, stage by stage.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeslim.atomic import sha256_file, write_json, write_text
from edgeslim.errors import EdgeslimError
from edgeslim.pipeline.config import PipelineConfig
from edgeslim.pipeline.rundir import StepOutcome, cached, close_step, open_step, step_key, write_manifest

MODEL_OUTPUTS = ["model.keras", "metrics.json"]


@dataclass
class PipelineResult:
    run_dir: Path
    steps: list[StepOutcome] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    report: dict[str, Any] | None = None
    seconds: float = 0.0


Notify = Callable[[str, str], None]  # (step name, "start"/"cached"/"done"/"failed")


def run_pipeline(
    config: PipelineConfig, run_dir: str | Path, progress: bool = True, notify: Notify | None = None
) -> PipelineResult:
    import yaml

    from edgeslim.data import load_dataset

    start = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", yaml.safe_dump(config.raw, sort_keys=False))
    notify = notify or (lambda name, event: None)
    result = PipelineResult(run_dir=run_dir)
    ds = config.dataset
    data = load_dataset(ds["name"], ds["data_dir"], seed=ds["seed"])

    baseline, key = _train_step(config, data, run_dir, result, progress, notify)
    model, recipe, model_path = baseline, None, run_dir / "00-train" / "model.keras"
    for index, spec in enumerate(config.stages, start=1):
        model, key, stage_recipe, model_path = _compress_step(
            index, spec, model, baseline, data, run_dir, key, result, progress, notify, recipe
        )
        recipe = stage_recipe or recipe
    for target in config.export["targets"]:
        _export_step(target, model, model_path, data, config, run_dir, key, recipe, result, notify)
    result.report = _report_step(config, run_dir, result, notify)
    result.seconds = time.perf_counter() - start
    write_manifest(run_dir, config.raw, result.steps, result.seconds)
    return result


def _train_step(config, data, run_dir, result, progress, notify):
    from edgeslim.modelio import load_keras_model

    step_dir = run_dir / "00-train"
    source_hash = sha256_file(config.model) if config.model.endswith(".keras") else config.model
    key = step_key({"dataset": config.dataset, "model": source_hash, "train": config.train}, "")
    if _reuse(step_dir, key, MODEL_OUTPUTS, "train", result, notify) is not None:
        return load_keras_model(step_dir / "model.keras"), key
    notify("train", "start")
    began = time.perf_counter()
    model, history = _baseline_model(config, data, progress)
    open_step(step_dir)
    if history is not None:
        write_json(step_dir / "history.json", history)
    outputs = _save_model_step(model, data, step_dir, record=None, recipe=None)
    _finish(step_dir, key, outputs, began, "train", result, notify)
    return model, key


def _baseline_model(config, data, progress):
    """The trained model and its history (None when a trained .keras model is measured as given)."""
    from edgeslim.train.config import TrainConfig
    from edgeslim.train.fit import check_compatible, train_model
    from edgeslim.train.run import resolve_model

    model = resolve_model(
        config.model,
        data.input_shape,
        data.num_classes,
        unsafe=config.unsafe_load,
        seed=config.dataset["seed"],
    )
    if config.train is None:  # a trained .keras model: measure it as it is
        check_compatible(model, data)
        return model, None
    # A loaded .keras file is our own in-memory copy: training it never touches the user's file.
    trained = train_model(model, data, TrainConfig.from_dict(config.train), progress=progress)
    return trained.model, trained.history


def _compress_step(index, spec, model, baseline, data, run_dir, input_key, result, progress, notify, recipe):
    from edgeslim.compress import build_stage
    from edgeslim.compress.base import StageRecord
    from edgeslim.modelio import load_keras_model
    from edgeslim.train.finetune import FinetuneConfig

    name = f"{index:02d}-{spec.name}"
    step_dir = run_dir / name
    key = step_key({"stage": spec.name, "params": spec.params, "finetune": spec.finetune}, input_key)
    model_path = step_dir / "model.keras"
    if _reuse(step_dir, key, MODEL_OUTPUTS + ["record.json"], name, result, notify) is not None:
        record = StageRecord.from_dict(json.loads((step_dir / "record.json").read_text()))
        return load_keras_model(model_path), key, record.quantization, model_path
    notify(name, "start")
    began = time.perf_counter()
    stage = build_stage(spec.name, **spec.params)
    finetune = (
        FinetuneConfig.from_dict(spec.finetune, prefix=f"{spec.name}.finetune") if spec.finetune else None
    )
    outcome = stage.run(model, data, finetune=finetune, teacher=baseline, progress=progress)
    stage_recipe = outcome.record.quantization
    open_step(step_dir)
    outputs = _save_model_step(
        outcome.model, data, step_dir, record=outcome.record, recipe=stage_recipe or recipe
    )
    _finish(step_dir, key, outputs, began, name, result, notify)
    return outcome.model, key, stage_recipe, model_path


def _save_model_step(model, data, step_dir, record, recipe) -> list[str]:
    """model.keras, record.json, metrics.json, and the model deployed to LiteRT and measured there.

    Returns the step's output files (relative), which its marker hashes.
    """
    from edgeslim.analysis.keras_model import analyze_keras
    from edgeslim.export import export_model
    from edgeslim.modelio import save_keras_model

    save_keras_model(model, step_dir / "model.keras")
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
        "test_accuracy": verification["keras_accuracy"],
        "test_samples": verification["samples"],
        "dataset": data.summary(),
        "params": stats.total_params,
        "nonzero_params": stats.nonzero_params,
        "macs": stats.total_macs,
        "layers": [layer.to_dict() for layer in stats.layers],
        "deployed": {**deployed.sidecar, "path": str(deployed.path.relative_to(step_dir))},
    }
    write_json(step_dir / "metrics.json", metrics)
    outputs = MODEL_OUTPUTS + [str(p.relative_to(step_dir)) for p in (deployed.path, deployed.sidecar_path)]
    return outputs + (["record.json"] if record is not None else [])


def _export_step(target, model, model_path, data, config, run_dir, input_key, recipe, result, notify) -> None:
    from edgeslim.export import export_model

    name = f"exports/{target}"
    step_dir = run_dir / "exports" / target
    export = config.export
    section = {
        "target": target,
        "board": export["board"],
        "floor": export["agreement_floor"],
        "calib": export["calib_samples"],
        "formats": export.get("formats", {}).get(target),
        "recipe": recipe,
    }
    key = step_key(section, input_key)
    marker = _reuse(step_dir, key, [], name, result, notify)
    if marker is not None:
        result.failures += marker.get("failures", [])
        return
    notify(name, "start")
    began = time.perf_counter()
    open_step(step_dir)
    failures: list[str] = []
    try:
        artifacts = export_model(
            model,
            data,
            target=target,
            out_dir=step_dir,
            formats=section["formats"],
            quant=_target_quant(target, recipe),
            board=export["board"],
            calib_samples=export["calib_samples"],
            agreement_floor=export["agreement_floor"],
            source_path=model_path,
            strict=False,
        )
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
    result.steps.append(StepOutcome(name, step_dir, key, False, info["seconds"], info))
    result.failures += failures
    notify(name, "failed" if failures else "done")


def _target_quant(target: str, recipe: dict[str, Any] | None) -> Any:
    """The quantize stage's recipe where the target can take it; targets that need int8 keep their own."""
    if recipe is None:
        return None
    if target in ("mcu", "edgetpu") and recipe.get("mode") != "int8":
        return None
    if target == "gpu":
        return None  # the GPU target picks float16/float32 formats itself
    return recipe


def _report_step(config, run_dir, result, notify) -> dict[str, Any]:
    from edgeslim.report import build_report, write_report

    notify("report", "start")
    report = build_report(run_dir)
    write_report(report, run_dir / "report", formats=config.report["formats"], plots=config.report["plots"])
    notify("report", "done")
    return report


def _reuse(step_dir, key, outputs, name, result, notify) -> dict[str, Any] | None:
    """The step's marker when it can be reused as it is (recorded as a cached step), else None."""
    marker = cached(step_dir, key, outputs)
    if marker is not None:
        result.steps.append(StepOutcome(name, step_dir, key, True, 0.0, marker))
        notify(name, "cached")
    return marker


def _finish(step_dir, key, outputs, began, name, result, notify) -> None:
    info = close_step(step_dir, key, outputs, time.perf_counter() - began)
    result.steps.append(StepOutcome(name, step_dir, key, False, info["seconds"], info))
    notify(name, "done")
