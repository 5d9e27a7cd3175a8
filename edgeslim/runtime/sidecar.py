"""The JSON sidecar next to an artifact (``model.tflite.json``): read it and check it against the file.

A sidecar is trusted only as far as it agrees with the artifact. Before a model is used:

- its fields have the types the runtime reads (a damaged sidecar is one clear error, not a traceback);
- its sha256, when recorded, is the file's;
- its inputs and outputs agree with what the artifact itself declares: count, dtype, shape (an
  unknown dimension on either side matches any size) and, where the artifact records quantization,
  scale and zero point; every quantization scale is finite and positive;
- its preprocessing scale is finite and non-zero, its offset finite;
- its class names, for a one-output classifier, are as many as the output's units.

Without a sidecar the runtime uses the artifact's own metadata (shapes, dtypes, quantization), with no
class names and no preprocessing: deleting a stale sidecar is a real way out, and the hints say so.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeslim.runtime.errors import RuntimeModelError
from edgeslim.runtime.spec import TensorSpec
from edgeslim.tasks import TASK_NAMES

STALE_HINT = (
    "re-export the model, or delete the sidecar to run the file on its own metadata "
    "(no class names, no preprocessing)"
)


def sidecar_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".json")


def read_sidecar(path: Path, data: bytes) -> dict[str, Any] | None:
    """The sidecar of ``path``, if any; RuntimeModelError if it is unreadable, malformed or describes
    other bytes."""
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        sidecar = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise RuntimeModelError(
            f"{side}: the sidecar is not readable JSON ({type(exc).__name__})", STALE_HINT
        ) from None
    if not isinstance(sidecar, dict):
        raise RuntimeModelError(f"{side}: the sidecar must hold a JSON object", STALE_HINT)
    _check_fields(sidecar, side)
    expected = sidecar.get("sha256")
    if expected is not None and expected != hashlib.sha256(data).hexdigest():
        # A bit flip in the weights is invisible to any format check; the recorded hash is not.
        raise RuntimeModelError(
            f"{path}: the file does not match its sidecar {side.name} (sha256 differs): it is corrupt, "
            "truncated or was modified after export",
            "re-export the model, or delete the stale sidecar to load the file on its own",
        )
    return sidecar


def merge_specs(
    specs: list[TensorSpec], recorded: list[dict[str, Any]] | None, path: Path, which: str
) -> list[TensorSpec]:
    """The artifact's specs, checked against the sidecar's record of them; the sidecar's scale and zero
    point fill in only where the artifact records none."""
    if not recorded:
        return specs
    side = sidecar_path(path)
    if len(recorded) != len(specs):
        raise RuntimeModelError(
            f"{side}: the sidecar lists {len(recorded)} {which}, the artifact {path.name} has {len(specs)}",
            STALE_HINT,
        )
    merged = []
    for i, (spec, rec) in enumerate(zip(specs, recorded, strict=True)):
        field = f"{which}[{i}]"
        if rec.get("dtype") not in (None, spec.dtype):
            raise _disagree(side, f"{field}.dtype", rec["dtype"], path, spec.dtype)
        shape = rec.get("shape")
        if shape is not None and not _same_shape(shape, spec.shape):
            raise _disagree(side, f"{field}.shape", list(shape), path, list(spec.shape))
        scale, zero = rec.get("scale"), rec.get("zero_point")
        if spec.scale is not None:  # the artifact's own quantization wins; the sidecar must agree
            if scale is not None and not math.isclose(scale, spec.scale, rel_tol=1e-6):
                raise _disagree(side, f"{field}.scale", scale, path, spec.scale)
            if zero is not None and zero != spec.zero_point:
                raise _disagree(side, f"{field}.zero_point", zero, path, spec.zero_point)
        elif scale is not None and zero is not None:
            spec = TensorSpec(spec.name, spec.shape, spec.dtype, float(scale), int(zero))
        merged.append(spec)
    return merged


def check_classes(sidecar: dict[str, Any] | None, outputs: list[TensorSpec], path: Path) -> None:
    """A one-output classifier's class names are as many as its output units."""
    names = (sidecar or {}).get("class_names")
    task = (sidecar or {}).get("task") or ((sidecar or {}).get("verification") or {}).get("task")
    if not names or task not in (None, "classification") or len(outputs) != 1:
        return
    units = outputs[0].shape[-1] if outputs[0].shape else None
    if units is not None and units != len(names):
        raise _disagree(sidecar_path(path), "class_names", f"{len(names)} names", path, f"{units} outputs")


def _disagree(side: Path, field: str, says: Any, path: Path, actual: Any) -> RuntimeModelError:
    return RuntimeModelError(
        f"{side}: {field} is {says}, but the artifact {path.name} says {actual}", STALE_HINT
    )


def _same_shape(recorded: Sequence[int | None], actual: Sequence[int | None]) -> bool:
    return len(recorded) == len(actual) and all(
        r is None or a is None or r == a for r, a in zip(recorded, actual, strict=True)
    )


# --- the fields' types: what the runtime reads, so a damaged value is refused here, not used later ---
def _check_fields(sidecar: dict[str, Any], side: Path) -> None:
    _check(side, "sha256", sidecar.get("sha256"), str)
    for which in ("inputs", "outputs"):
        specs = sidecar.get(which)
        _check(side, which, specs, list)
        for i, spec in enumerate(specs or []):
            _check_spec(side, f"{which}[{i}]", spec)
    names = sidecar.get("class_names")
    _check(side, "class_names", names, list)
    for i, name in enumerate(names or []):
        _check(side, f"class_names[{i}]", name, str, required=True)
    prep = sidecar.get("preprocessing")
    _check(side, "preprocessing", prep, dict)
    if prep is not None:
        _check_number(side, "preprocessing.scale", prep.get("scale"), nonzero=True, required=True)
        _check_number(side, "preprocessing.offset", prep.get("offset"), required=True)
        _check_dtype(side, "preprocessing.raw_dtype", prep.get("raw_dtype"))
    verification = sidecar.get("verification")
    _check(side, "verification", verification, dict)
    for field, task in (
        ("task", sidecar.get("task")),
        ("verification.task", (verification or {}).get("task")),
    ):
        if task is not None and task not in TASK_NAMES:
            raise _wrong(side, field, task, f"one of {list(TASK_NAMES)}")
    mcu = sidecar.get("mcu")
    _check(side, "mcu", mcu, dict)
    for field in ("arena_size", "arena_host_bytes"):
        value = (mcu or {}).get(field)
        _check(side, f"mcu.{field}", value, int)
        if value is not None and value < 0:
            raise _wrong(side, f"mcu.{field}", value, "a byte count >= 0")
    _check_number(side, "mcu.arena_margin", (mcu or {}).get("arena_margin"))


def _check_spec(side: Path, field: str, spec: Any) -> None:
    _check(side, field, spec, dict, required=True)
    shape = spec.get("shape")
    _check(side, f"{field}.shape", shape, list)
    for j, dim in enumerate(shape or []):
        if dim is not None and (not _is_int(dim) or dim < 0):
            raise _wrong(side, f"{field}.shape[{j}]", dim, "a size >= 0 or null")
    _check_dtype(side, f"{field}.dtype", spec.get("dtype"))
    scale = spec.get("scale")
    _check_number(side, f"{field}.scale", scale)
    if scale is not None and scale <= 0:  # a zero scale makes the codec divide by zero
        raise _wrong(side, f"{field}.scale", scale, "a finite quantization scale > 0")
    _check(side, f"{field}.zero_point", spec.get("zero_point"), int)


def _check(side: Path, field: str, value: Any, kind: type, required: bool = False) -> None:
    if value is None and not required:
        return
    ok = _is_int(value) if kind is int else isinstance(value, kind)
    if not ok:
        raise _wrong(
            side, field, value, {int: "an integer", str: "a string", list: "a list", dict: "an object"}[kind]
        )


def _check_number(side: Path, field: str, value: Any, nonzero: bool = False, required: bool = False) -> None:
    if value is None and not required:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _wrong(side, field, value, "a finite number")
    if nonzero and value == 0:
        raise _wrong(side, field, value, "a finite number other than 0")


def _check_dtype(side: Path, field: str, value: Any) -> None:
    if value is None:
        return
    try:
        if not isinstance(value, str):
            raise TypeError(value)
        np.dtype(value)
    except TypeError:
        raise _wrong(side, field, value, "a numpy dtype name such as int8 or float32") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _wrong(side: Path, field: str, value: Any, expected: str) -> RuntimeModelError:
    shown = json.dumps(value)[:60] if not isinstance(value, float) else repr(value)
    return RuntimeModelError(f"{side}: {field} is {shown}, expected {expected}", STALE_HINT)
