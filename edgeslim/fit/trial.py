"""A trial: apply a plan, fine-tune with distillation, quantize (QAT), export for the target, measure.

Every figure comes from the exported artifact: its bytes, its TFLite Micro arena (mcu), its batch-1
latency in the target's runtime on this host, and its accuracy on the *validation* split in that
runtime (the test split is read once, for the winner, by the search). A trial is a plain function of
picklable inputs, so it runs in-process or as a Ray task alike.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeslim.fit.options import DEFAULTS
from edgeslim.fit.space import Plan

TRIAL_QAT_EPOCHS = 2
MEASURING_BOARD = "stm32l4r5"  # without a board: the largest shipped profile (a Cortex-M4)


@dataclass
class TrialSettings:
    target: str
    board: str | None = None
    finetune_epochs: int = DEFAULTS.finetune_epochs
    # A compressed model has further to go than one fine-tuning step of a hand-written chain: on the
    # digits, 16 epochs at 5e-3 recovered 95 % where 5e-4 (the chain's default) reached 84 %.
    learning_rate: float = 5e-3
    qat_learning_rate: float = 5e-4
    seed: int = 0
    firmware: bool = False
    kernels: str = DEFAULTS.kernels  # the firmware's TFLite Micro kernels
    calib_samples: int = 200
    qat: bool = True  # the baseline measurement exports the input model as it is (post-training)


@dataclass
class TrialResult:
    index: int
    plan: dict[str, Any]
    plan_key: str
    epochs: int = 0
    stages: list[dict[str, Any]] = field(default_factory=list)
    measured: dict[str, float | None] = field(default_factory=dict)  # per budget constraint
    params: int = 0
    macs: int = 0
    val_accuracy: float | None = None
    val_correct: list[bool] = field(default_factory=list)  # per validation sample, for McNemar
    artifact: str | None = None
    model_path: str | None = None
    seconds: float = 0.0
    failed: str | None = None  # why the trial produced no artifact
    reused: bool = False  # measured by an earlier fit of the same model (fit/history.py)
    profile: dict[str, Any] | None = None  # the firmware's instructions per operator (mcu.firmware.profile)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("val_correct")
        return data


def apply_plan(
    model: Any, data: Any, plan: Plan, compensate: str = "lstsq"
) -> tuple[Any, list[dict[str, Any]], list[Any]]:
    """The plan's structural stages applied without fine-tuning: (model, stage configs, records).

    ``compensate``: how pruning repairs the next layers (the trials refit them; the sensitivity table
    does not, see sensitivity.py).
    """
    from edgeslim.compress.registry import build_stage

    records = []
    configs = []
    for entry in plan.stages():
        name, params = next(iter(entry.items()))
        if name == "quantize":
            continue
        if name == "lowrank":
            params = dict(params, per_layer=lowrank_ranks(model, plan))
        if name == "prune":
            params = dict(params, compensate=compensate)
        result = build_stage(name, **params).apply(model, data)
        model = result.model
        configs.append({name: params})
        records.append(result.record)
    return model, configs, records


def lowrank_ranks(model: Any, plan: Plan) -> dict[str, int]:
    """Each planned layer's rank: its rank fraction of the (already pruned) layer's full rank."""
    from edgeslim.layers.graph import ModelGraph

    graph = ModelGraph(model)
    ranks = {}
    for name, fraction in plan.to_dict()["lowrank"].items():
        node = graph.nodes[name]
        first = node.handler.factorizations(node.call_shapes()[0])[0]
        ranks[name] = max(1, round(fraction * first.full_rank))
    return ranks


def run_trial(
    index: int, model_file: bytes, data: Any, plan: Plan, settings: TrialSettings, out_dir: str
) -> TrialResult:
    """Compress, fine-tune, quantize, export and measure one plan; never raises for a plan that fails."""
    from edgeslim.errors import EdgeslimError

    start = time.perf_counter()
    result = TrialResult(
        index=index, plan=plan.to_dict(), plan_key=plan.key(), epochs=settings.finetune_epochs
    )
    folder = Path(out_dir)
    try:
        _run(model_file, data, plan, settings, folder, result)
    except EdgeslimError as exc:  # e.g. a model too big for the board: a result, not a crash
        result.failed = exc.message
    result.seconds = time.perf_counter() - start
    return result


def _run(
    model_file: bytes, data: Any, plan: Plan, settings: TrialSettings, folder: Path, result: TrialResult
) -> None:
    import keras

    from edgeslim.analysis.keras_model import analyze_keras
    from edgeslim.compress.quantize import QuantizeStage
    from edgeslim.export import export_model
    from edgeslim.modelio import save_keras_model
    from edgeslim.train.config import FinetuneConfig
    from edgeslim.train.finetune import finetune

    teacher = load_model_bytes(model_file, folder)
    keras.utils.set_random_seed(settings.seed)
    model, configs, _ = apply_plan(teacher, data, plan)
    config = FinetuneConfig(epochs=settings.finetune_epochs)
    config.train = replace(config.train, seed=settings.seed, learning_rate=settings.learning_rate)
    if configs and settings.finetune_epochs:
        finetune(model, data, config, teacher=teacher, progress=False)
        from edgeslim.compress.base import plain_copy

        model = plain_copy(model)
    recipe = None
    if plan.quantize:
        stage = QuantizeStage(
            mode="int8", per_channel=plan.per_channel, qat=settings.qat, qat_epochs=TRIAL_QAT_EPOCHS
        )
        qat_config = replace(config, epochs=TRIAL_QAT_EPOCHS)
        qat_config.train = replace(config.train, learning_rate=settings.qat_learning_rate)
        quantized = stage.run(model, data, qat_config, teacher=teacher, finetuner=finetune)
        model, recipe = quantized.model, stage.recipe()
        configs.append({"quantize": {"mode": "int8", "per_channel": plan.per_channel, "qat": settings.qat}})
    result.stages = configs
    stats = analyze_keras(model)
    result.params, result.macs = stats.total_params, stats.total_macs
    model_path = save_keras_model(model, folder / "model.keras", recipe=recipe)
    result.model_path = str(model_path)
    validation = replace(data, x_test=data.x_val, y_test=data.y_val)  # selection never sees the test split
    firmware = settings.firmware and settings.target == "mcu"
    [artifact] = export_model(
        model,
        validation,
        target=settings.target,
        out_dir=folder / "export",
        formats=["tflite"],
        board=measuring_board(settings.board, folder),
        source_path=model_path,
        strict=False,
        calib_samples=settings.calib_samples if recipe is None else None,
        firmware=firmware,
        kernels=settings.kernels if firmware else DEFAULTS.kernels,
    )
    measure_artifact(artifact, validation, result, settings.board)  # board counts: mcu sidecars only


def measuring_board(board: str | None, folder: Path) -> str:
    """The board profile a trial's export measures on. The budget is the search's to judge, so a plan
    that would not fit is measured too: on the target board's core (CMSIS-NN's code, scratch and
    instructions differ per core) with the memory of that core's roomy emulated board, written as a
    profile into the trial's ``folder``. Without a board, or for one no emulator runs: MEASURING_BOARD."""
    if board is None:
        return MEASURING_BOARD
    from edgeslim.errors import EdgeslimError
    from edgeslim.export.firmware import resolve_machine, roomy_machine

    try:
        machine = roomy_machine(resolve_machine(board).cpu)
    except EdgeslimError:  # no emulated counterpart (an ESP32): export's host figures only
        return MEASURING_BOARD
    profile = {
        "name": f"measure-{machine.name}",
        "description": f"{machine.board_name}, measuring a {board} plan",
        "cpu": machine.cpu,
        "ram_bytes": machine.ram_bytes,
        "flash_bytes": machine.flash_bytes,
        "ram_reserved_bytes": 0,
        "flash_reserved_bytes": 0,
        "emulator": machine.name,
    }
    path = folder / "measuring-board.json"
    path.write_text(json.dumps(profile), encoding="utf-8")
    return str(path)


def sidecar_measurements(sidecar: dict[str, Any], macs: float, board: str | None = None) -> dict[str, Any]:
    """Each budget constraint as the artifact's sidecar measured it (None where it was not measured):
    one definition for the trials and for the winner's final export. With ``board`` (mcu), what
    export's board rule counts against the board's whole flash and RAM, from the same figures."""
    verification = sidecar.get("verification") or {}
    mcu = sidecar.get("mcu") or {}
    firmware = mcu.get("firmware") or {}
    measured = {
        "max_flash": float(sidecar["bytes"]),
        "max_arena": float(firmware.get("arena_used_bytes") or mcu["arena_bytes"]) if mcu else None,
        "max_macs": float(macs),
        "max_latency_ms": verification.get("latency_ms_p50"),
        "max_instructions": firmware.get("instructions_per_inference"),
        # not a constraint: the host bisection's arena, which the cost model is calibrated on
        "arena_host": float(mcu["arena_host_bytes"]) if mcu.get("arena_host_bytes") else None,
    }
    if board is not None and mcu:
        measured |= board_counts(board, mcu)
    if sidecar.get("edgetpu"):
        edgetpu = sidecar["edgetpu"]
        measured["edgetpu_unmapped"] = float(edgetpu["total_ops"] - edgetpu["mapped_ops"])
    return measured


def board_counts(board: str, mcu: dict[str, Any]) -> dict[str, float]:
    """Flash and RAM as export's board rule counts them for ``board``: the figures it compares with
    what is available, plus the reserve it sets aside, so that each is at most the board's whole flash
    or RAM exactly when export accepts the artifact."""
    from edgeslim.export.boards import load_board
    from edgeslim.export.mcu import board_fit

    profile = load_board(board)
    fit = board_fit(
        profile, mcu["fit"]["flash_bytes"], mcu["fit"]["ram_needed"], mcu["arena_source"] == "firmware"
    )
    return {
        "board_flash": float(fit["flash_bytes"] + profile.flash_bytes - fit["flash_available"]),
        "board_ram": float(fit["ram_needed"] + profile.ram_bytes - fit["ram_available"]),
    }


def measure_artifact(artifact: Any, validation: Any, result: TrialResult, board: str | None = None) -> None:
    """Bytes, arena, latency, instructions and validation accuracy of the exported file."""
    from edgeslim.runtime import load

    result.artifact = str(artifact.path)
    result.measured = sidecar_measurements(artifact.sidecar, result.macs, board)
    result.profile = ((artifact.sidecar.get("mcu") or {}).get("firmware") or {}).get("profile")
    predictions = load(artifact.path).predict(validation.x_test)
    predictions = predictions[0] if isinstance(predictions, list) else predictions
    correct = np.argmax(predictions, axis=-1) == validation.y_test
    result.val_correct = [bool(c) for c in correct]
    result.val_accuracy = float(np.mean(correct))


def load_model_bytes(model_file: bytes, folder: Path) -> Any:
    """A model from the bytes of its .keras file (how the search ships it to workers)."""
    from edgeslim.modelio import load_keras_model

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "input.keras"
    path.write_bytes(model_file)
    try:
        return load_keras_model(path)
    finally:
        path.unlink(missing_ok=True)
