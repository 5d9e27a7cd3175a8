"""``export_model``: convert, check, write, verify and describe every artifact a target asks for."""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeslim.atomic import sha256_file, write_bytes
from edgeslim.errors import EdgeslimError
from edgeslim.export.artifact import SIDECAR_VERSION, Artifact, file_facts
from edgeslim.export.keras_graph import input_specs
from edgeslim.export.options import ExportOptions
from edgeslim.export.registry import FORMATS, TARGETS
from edgeslim.export.target import ArtifactPlan, ExportContext, Target
from edgeslim.export.verify import keras_reference, verify_artifact
from edgeslim.recipe import QuantRecipe, parse_quant
from edgeslim.runtime import load
from edgeslim.versions import tool_versions

if TYPE_CHECKING:
    import keras

    from edgeslim.data import Dataset


class ExportVerificationError(EdgeslimError):
    """Some artifacts fell below the agreement floor. They are written (sidecar ``passed: false``);
    ``artifacts`` holds every artifact of the export, passed or not. A result, not a user mistake:
    the CLI exits 1 (as `edgeslim pipeline` does for a failed artifact), not 2."""

    exit_code = 1

    def __init__(self, message: str, hint: str, artifacts: list[Artifact]) -> None:
        super().__init__(message, hint)
        self.artifacts = artifacts


def export_model(
    model: keras.Model | str | Path,
    dataset: Dataset,
    target: str = "cpu",
    out_dir: str | Path = "exports",
    options: ExportOptions | None = None,
    *,
    name: str = "model",
    source_path: str | Path | None = None,
    unsafe_load: bool = False,
    **settings: Any,
) -> list[Artifact]:
    """Export ``model`` for ``target`` into ``out_dir`` and verify each file in its own runtime.

    How: ``options`` (an :class:`ExportOptions`, its defaults when None), with any of its settings given
    as keywords on top (``export_model(m, data, "mcu", calib_samples=32)``); each setting's meaning and
    default is documented there. In short: ``quant`` names a mode (changing only the mode of the recipe
    a quantize stage saved in the model) or a whole recipe; what the export changed of the saved recipe
    is listed in the sidecar's ``recipe_overrides``. An artifact whose agreement with Keras falls below
    ``agreement_floor`` is still written, with ``verification.passed: false`` in its sidecar; with
    ``strict`` (the default) the export then raises :class:`ExportVerificationError`, otherwise it returns
    and the caller checks ``artifact.passed``. ``firmware`` (target mcu) also builds the C package into
    firmware for the board's Cortex-M, runs it on QEMU's emulated board and takes the arena, flash and
    RAM for the board fit from it (see ``edgeslim.export.firmware``), built with ``kernels`` (CMSIS-NN by
    default, as products ship; "reference" for TFLite Micro's reference kernels).

    ``source_path``: the model's file when ``model`` is an object loaded from it (hashed into the
    sidecar, its saved recipe read); ``name`` the artifacts' file stem.
    """
    opts = (options or ExportOptions()).updated(**settings)
    if target not in TARGETS:
        raise EdgeslimError(f"unknown target {target!r}", f"choose one of {sorted(TARGETS)}")
    chosen: Target = TARGETS[target]
    if opts.firmware and target != "mcu":
        raise EdgeslimError(
            f"firmware applies to target mcu, not {target}", "drop --firmware or use --target mcu"
        )
    source = _source(model, source_path)
    saved = _saved_recipe(model, source_path)
    if isinstance(model, str | Path):
        from edgeslim.modelio import load_keras_model

        model = load_keras_model(model, unsafe=unsafe_load)
    _check_dataset(model, dataset)
    format_names = list(opts.formats) if opts.formats is not None else None
    base, mode_given, overridden = _resolve_recipe(opts, saved, chosen)
    plans = chosen.plan(format_names, base, mode_given, FORMATS)

    context = ExportContext(out_dir=Path(out_dir), dataset=dataset, options=opts)
    if opts.verify:
        context.reference = keras_reference(model, dataset, opts.verify_samples)
    common = {
        "target": chosen.name,
        "model_name": model.name,
        **source,
        "preprocessing": dataset.preprocessing.to_dict(),
        "class_names": list(dataset.class_names),
        "dataset": dataset.name,
        "tool_versions": tool_versions(),
        "recipe_overrides": overridden,  # what of the model's saved recipe this export changed
    }
    artifacts = [_export_one(model, plan, chosen, context, common, name) for plan in plans]
    failed = [a for a in artifacts if not a.passed]
    if failed and opts.strict:
        details = "; ".join(
            f"{a.path.name}: {v['criterion']} {v['score']:.2%}"
            for a in failed
            for v in [a.sidecar["verification"]]
        )
        raise ExportVerificationError(
            f"{len(failed)} artifact(s) fell below the {opts.agreement_floor:.0%} agreement floor "
            f"({details})",
            "they are written with verification.passed=false; try more calibration samples, per-channel "
            "quantization or a float mode, or lower --agreement-floor",
            artifacts,
        )
    return artifacts


def _export_one(
    model: keras.Model,
    plan: ArtifactPlan,
    target: Target,
    context: ExportContext,
    common: dict[str, Any],
    name: str,
) -> Artifact:
    recipe = plan.recipe
    calibration = context.dataset.representative(recipe.calib_samples) if recipe.needs_calibration else None
    started = time.perf_counter()
    data, details = plan.format.convert(model, recipe, calibration, target.static_batch)
    convert_s = time.perf_counter() - started
    extras = target.before_write(data, plan, context)  # may refuse (a board the model does not fit)

    path = context.out_dir / f"{name}_{recipe.mode}{plan.format.suffix}"
    write_bytes(path, data)
    sidecar: dict[str, Any] = {
        "sidecar_version": SIDECAR_VERSION,
        "file": path.name,
        "format": plan.format.name,
        "quantization": recipe.mode,
        "quant_recipe": recipe.to_dict(),
        **common,
        **file_facts(data),
        "batch": target.static_batch,
        "format_details": details,
        "convert_seconds": round(convert_s, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **extras,
    }
    artifact = Artifact(path=path, sidecar=sidecar)
    artifact.write_sidecar()  # its sha256 vouches for the file, so the runtime skips the child-process probe
    opened = load(path)
    sidecar["inputs"] = [spec.to_dict() for spec in opened.inputs]
    sidecar["outputs"] = [spec.to_dict() for spec in opened.outputs]
    del opened
    artifact.write_sidecar()
    if context.reference is not None:
        sidecar["verification"] = verify_artifact(path, context.reference, context.options.agreement_floor)
    target.after_verify(artifact, context)
    artifact.write_sidecar()
    return artifact


def _saved_recipe(model: Any, source_path: str | Path | None) -> QuantRecipe | None:
    from edgeslim.modelio import read_recipe

    path = source_path if source_path is not None else (model if isinstance(model, str | Path) else None)
    return read_recipe(path) if path is not None and Path(path).is_file() else None


def _resolve_recipe(
    options: ExportOptions, saved: QuantRecipe | None, target: Target
) -> tuple[QuantRecipe, bool, list[str]]:
    """(the recipe, whether its mode was chosen rather than left to the target, what of the model's saved
    recipe was overridden).

    A mode name (``--quant int8``) changes the saved recipe's mode only: its per-channel scheme, I/O type
    and samples stay, unless given too; a recipe dict or QuantRecipe replaces it whole. A saved recipe's
    mode applies only where every format the target writes takes it (an mcu export of a float16 model
    still writes int8); its other settings (per channel, I/O type, samples) always do.
    """
    quant, calibration = options.quant, options.calibration
    recipe_settings = ("calib_samples", "io_dtype", "per_channel")
    given = {k: getattr(options, k) for k in recipe_settings if getattr(options, k) is not None}
    if quant is not None and not (isinstance(quant, str) and saved is not None):
        recipe = parse_quant(
            quant, calibration=calibration, **{k: v for k, v in given.items() if k != "per_channel"}
        )
        assert recipe is not None
        recipe = replace(recipe, per_channel=given["per_channel"]) if "per_channel" in given else recipe
        return recipe, True, _overridden(saved, recipe)
    if saved is not None:
        mode = {"mode": saved.with_mode(quant).mode} if quant is not None else {}
        recipe = replace(saved, calibration=calibration, **given, **mode)
        names = list(options.formats or target.defaults)
        chosen = quant is not None or all(recipe.mode in target.allowed.get(n, ()) for n in names)
        return recipe, chosen, _overridden(saved, recipe)
    return QuantRecipe("int8", calibration=calibration, **given), False, []


def _overridden(saved: QuantRecipe | None, recipe: QuantRecipe) -> list[str]:
    """``field: saved -> used`` for each setting of the model's saved recipe the export changes."""
    if saved is None:
        return []
    fields = ("mode", "per_channel", "io_dtype", "calib_samples")
    return [
        f"{name}: {getattr(saved, name)} -> {getattr(recipe, name)}"
        for name in fields
        if getattr(saved, name) != getattr(recipe, name)
    ]


def _source(model: Any, source_path: str | Path | None) -> dict[str, Any]:
    """The source model's sha256: of its file when there is one, else of its config and weights."""
    path = source_path if source_path is not None else (model if isinstance(model, str | Path) else None)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise EdgeslimError(f"{path}: no such model file", "check the path")
        return {"source_path": str(path), "source_sha256": sha256_file(path), "source_hash_of": "file"}
    digest = hashlib.sha256(json.dumps(model.get_config(), sort_keys=True, default=str).encode())
    for weight in model.get_weights():
        digest.update(weight.tobytes())
    return {"source_path": None, "source_sha256": digest.hexdigest(), "source_hash_of": "config+weights"}


def _check_dataset(model: keras.Model, dataset: Dataset) -> None:
    """The dataset's inputs and targets fit the model (named inputs by name), per the dataset's task."""
    specs = input_specs(model)
    expected = dataset.input_shapes if dataset.multi_input else {"input": dataset.input_shape}
    got = specs if dataset.multi_input else {"input": next(iter(specs.values()))}
    if len(specs) != len(expected) or got != expected:
        raise EdgeslimError(
            f"dataset {dataset.name} has samples of shape {_shapes(expected)}, "
            f"model {model.name!r} takes {_shapes(specs)}",
            "export with the dataset the model was trained on (named inputs: x_<split>_<input name>)",
        )
    outputs = [tuple(t.shape[1:]) for t in model.outputs]
    if dataset.task == "classification":
        n_out = outputs[0][-1] if outputs[0] else None
        if len(outputs) == 1 and n_out is not None and int(n_out) != dataset.num_classes:
            raise EdgeslimError(
                f"model {model.name!r} has {n_out} outputs, "
                f"but dataset {dataset.name} has {dataset.num_classes} classes",
                "export with the dataset the model was trained on",
            )
        return
    targets = list(dataset.target_shapes.values())
    sizes = [math.prod(int(d or 0) for d in shape) for shape in outputs]
    if len(targets) != len(outputs) or sizes != [max(1, math.prod(t)) for t in targets]:
        raise EdgeslimError(
            f"model {model.name!r} outputs {outputs}, but the {dataset.task} targets of dataset "
            f"{dataset.name} have shapes {targets}",
            "export with the dataset the model was trained on",
        )


def _shapes(specs: dict[str, tuple[int, ...]]) -> str:
    if len(specs) == 1:
        return str(next(iter(specs.values())))
    return ", ".join(f"{k} {v}" for k, v in specs.items())
