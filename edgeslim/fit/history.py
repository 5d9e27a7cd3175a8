"""Trials of earlier fits of the same model, on the same data, for the same target and settings.

A second fit with another budget starts where the first stopped: every trial already measured
calibrates the cost model before the first selection (so the first plan lands close to the new budget),
counts as a candidate if it meets the new budget and loss, and is not trained again if a plan repeats.
Kept beside the sensitivity cache, keyed like it; each trial's model and artifact are copied in, so a
winner can come from the history.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path

from edgeslim.atomic import write_json
from edgeslim.fit.sensitivity import fit_cache
from edgeslim.fit.trial import TrialResult, TrialSettings
from edgeslim.runtime.sidecar import sidecar_path
from edgeslim.versions import code_fingerprint


def history_dir(model_file: bytes, data_key: str, settings: TrialSettings) -> Path:
    digest = hashlib.sha256(model_file)
    digest.update(data_key.encode())
    digest.update(json.dumps(asdict(settings), sort_keys=True).encode())
    digest.update(code_fingerprint().encode())  # an upgrade never reuses trials older code measured
    return fit_cache() / "trials" / digest.hexdigest()[:24]


def load(folder: Path) -> list[TrialResult]:
    """The stored trials whose files are all still there."""
    trials = []
    for entry in sorted(folder.glob("*/trial.json")):
        try:
            data = json.loads(entry.read_text())
            trial = TrialResult(**data)
        except (OSError, ValueError, TypeError):
            continue
        if (
            trial.model_path
            and Path(trial.model_path).is_file()
            and trial.artifact
            and Path(trial.artifact).is_file()
        ):
            trials.append(trial)
    return trials


def store(folder: Path, trial: TrialResult) -> None:
    """Copy a finished trial (its model, its artifact and sidecar) into the history."""
    if trial.failed or not trial.model_path or not trial.artifact:
        return
    target = folder / f"{trial.plan_key}-{trial.epochs}"
    if (target / "trial.json").is_file():
        return
    target.mkdir(parents=True, exist_ok=True)
    model, artifact = _copy_files(trial, target, target)
    stored = asdict(trial) | {"model_path": str(model), "artifact": str(artifact)}
    write_json(target / "trial.json", stored)  # last: its presence means the entry is complete


def reuse(trial: TrialResult, index: int, out: Path) -> TrialResult:
    """A stored trial as this fit's trial ``index``: its files copied into this fit's folder."""
    folder = out / "trials" / f"{index:02d}"
    (folder / "export").mkdir(parents=True, exist_ok=True)
    model, artifact = _copy_files(trial, folder, folder / "export")
    data = asdict(trial) | {
        "index": index,
        "model_path": str(model),
        "artifact": str(artifact),
        "seconds": 0.0,
    }
    return TrialResult(**data)


def _copy_files(trial: TrialResult, model_dir: Path, artifact_dir: Path) -> tuple[Path, Path]:
    """Copy a trial's model, and its artifact with the sidecar beside it; the copies' paths."""
    source = Path(trial.artifact)  # type: ignore[arg-type]
    model = model_dir / Path(trial.model_path).name  # type: ignore[arg-type]
    artifact = artifact_dir / source.name
    shutil.copyfile(trial.model_path, model)  # type: ignore[arg-type]
    shutil.copyfile(source, artifact)
    if sidecar_path(source).is_file():
        shutil.copyfile(sidecar_path(source), sidecar_path(artifact))
    return model, artifact
