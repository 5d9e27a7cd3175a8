"""``export_model``: convert, check, write, verify and describe every artifact a target asks for."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeslim.atomic import sha256_file, write_bytes
from edgeslim.errors import EdgeslimError
from edgeslim.export.artifact import SIDECAR_VERSION, Artifact, file_facts, tool_versions
from edgeslim.export.keras_graph import single_input_shape
from edgeslim.export.quant import QuantRecipe, parse_quant
from edgeslim.export.registry import FORMATS, TARGETS
from edgeslim.export.target import ExportContext, Plan, Target
from edgeslim.export.verify import DEFAULT_FLOOR, keras_reference, verify_artifact
from edgeslim.runtime import load

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
    formats: list[str] | str | None = None,
    quant: str | dict[str, Any] | QuantRecipe | None = None,
    board: str | None = None,
    calib_samples: int = 200,
    io_dtype: str = "int8",
    agreement_floor: float = DEFAULT_FLOOR,
    verify: bool = True,
    source_path: str | Path | None = None,
    *,
    verify_samples: int | None = None,
    calibration: str = "minmax",
    name: str = "model",
    strict: bool = True,
    unsafe_load: bool = False,
) -> list[Artifact]:
    """Export ``model`` for ``target`` into ``out_dir`` and verify each file in its own runtime.

    ``quant``: a mode (float32, float16, dynamic, int8, int16x8) or a recipe dict from the quantize
    stage; ``None`` takes the target's default per format. ``verify_samples`` caps the test samples
    used for verification (None: the whole test set). An artifact whose argmax agreement with Keras
    falls below ``agreement_floor`` is still written, with ``verification.passed: false`` in its
    sidecar; with ``strict`` (the default) the export then raises :class:`ExportVerificationError`,
    otherwise it returns and the caller checks ``artifact.passed``.
    """
    if target not in TARGETS:
        raise EdgeslimError(f"unknown target {target!r}", f"choose one of {sorted(TARGETS)}")
    if not 0.0 <= agreement_floor <= 1.0:
        raise EdgeslimError(f"agreement_floor must be between 0 and 1, got {agreement_floor}")
    chosen: Target = TARGETS[target]
    source = _source(model, source_path)
    if isinstance(model, str | Path):
        from edgeslim.modelio import load_keras_model

        model = load_keras_model(model, unsafe=unsafe_load)
    _check_dataset(model, dataset)
    recipe = parse_quant(quant, calib_samples=calib_samples, io_dtype=io_dtype, calibration=calibration)
    mode_given = recipe is not None
    base = recipe or QuantRecipe("int8", True, calib_samples, io_dtype, calibration)
    format_names = [formats] if isinstance(formats, str) else formats
    plans = chosen.plan(format_names, base, mode_given, FORMATS)

    out = Path(out_dir)
    context = ExportContext(out_dir=out, dataset=dataset, board=board, floor=agreement_floor)
    if verify:
        context.reference = keras_reference(model, dataset, verify_samples)
    common = {
        "target": chosen.name,
        "model_name": model.name,
        **source,
        "preprocessing": dataset.preprocessing.to_dict(),
        "class_names": list(dataset.class_names),
        "dataset": dataset.name,
        "tool_versions": tool_versions(),
    }
    artifacts = [_export_one(model, plan, chosen, context, common, name) for plan in plans]
    failed = [a for a in artifacts if not a.passed]
    if failed and strict:
        details = "; ".join(
            f"{a.path.name}: agreement {a.sidecar['verification']['agreement']:.2%}" for a in failed
        )
        raise ExportVerificationError(
            f"{len(failed)} artifact(s) fell below the {agreement_floor:.0%} agreement floor ({details})",
            "they are written with verification.passed=false; try more calibration samples, per-channel "
            "quantization or a float mode, or lower --agreement-floor",
            artifacts,
        )
    return artifacts


def _export_one(
    model: keras.Model, plan: Plan, target: Target, context: ExportContext, common: dict[str, Any], name: str
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
        sidecar["verification"] = verify_artifact(path, context.reference, context.floor)
    target.after_verify(artifact, context)
    artifact.write_sidecar()
    return artifact


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
    shape = single_input_shape(model)
    if tuple(dataset.input_shape) != shape:
        raise EdgeslimError(
            f"dataset {dataset.name} has samples of shape {dataset.input_shape}, "
            f"model {model.name!r} takes {shape}",
            "export with the dataset the model was trained on",
        )
    n_out = model.outputs[0].shape[-1]
    if n_out is not None and int(n_out) != dataset.num_classes:
        raise EdgeslimError(
            f"model {model.name!r} has {n_out} outputs, "
            f"but dataset {dataset.name} has {dataset.num_classes} classes",
            "export with the dataset the model was trained on",
        )
