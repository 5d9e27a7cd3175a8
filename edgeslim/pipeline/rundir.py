"""The run directory: one folder per step, each closed by a ``step.json`` marker written last.

A step's cache key hashes its config section and its input's key, so changing step k changes the keys
of k and everything after it. A step killed midway has no marker (or an old key) and is run again;
every file is written atomically, so a half-written artifact is never used. A marker is trusted only
when every name it records resolves inside its step folder: one that points elsewhere is corrupt, and
its step is redone without reading or deleting anything outside.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeslim.atomic import sha256_file, write_json
from edgeslim.ownership import member
from edgeslim.versions import code_fingerprint, tool_versions

MARKER = "step.json"


def step_key(section: Any, input_key: str) -> str:
    """The step's settings, its input's key, and the code and tools that compute it (an upgrade redoes
    the step rather than reuse what older code wrote)."""
    text = json.dumps(section, sort_keys=True, default=str) + "|" + input_key + "|" + code_fingerprint()
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached(step_dir: Path, key: str, outputs: list[str]) -> dict[str, Any] | None:
    """The marker of a completed step with this key whose outputs are intact, else None."""
    marker = step_dir / MARKER
    if not marker.is_file():
        return None
    try:
        info = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(info, dict) or info.get("key") != key:
        return None
    hashes = info.get("sha256", {})
    if not isinstance(hashes, dict):
        return None
    for name in set(outputs) | set(hashes):  # every file the step recorded must still be intact
        path = member(step_dir, name)
        if path is None or not path.is_file() or hashes.get(name) != sha256_file(path):
            return None
    for listed in ("files", "artifacts"):  # what deploy and the report read must lie inside too
        names = info.get(listed, [])
        if not isinstance(names, list) or any(member(step_dir, name) is None for name in names):
            return None
    return info


def open_step(step_dir: Path) -> None:
    """Before a step runs again: drop its marker and the files that marker recorded.

    Files an earlier run wrote under other names (model_int8.tflite after the quantize mode changed
    to float16, say) would otherwise stay and be listed in the manifest as if they were current.
    Only recorded files go, so nothing a user put in the folder is ever deleted.
    """
    marker = step_dir / MARKER
    if marker.is_file() or marker.is_symlink():
        try:
            recorded = json.loads(marker.read_text()).get("sha256", {})
        except (OSError, ValueError, AttributeError):
            recorded = {}
        marker.unlink()  # first: a run killed from here on leaves no marker, so the step is redone
        for name in recorded if isinstance(recorded, dict) else {}:
            path = member(step_dir, name)  # a tampered name pointing outside deletes nothing
            if path is not None and path.is_file():
                path.unlink()
    step_dir.mkdir(parents=True, exist_ok=True)


def close_step(
    step_dir: Path, key: str, outputs: list[str], seconds: float, extra: dict[str, Any] | None = None
) -> dict:
    info = {
        "key": key,
        "seconds": seconds,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "sha256": {name: sha256_file(step_dir / name) for name in outputs},
        **(extra or {}),
    }
    write_json(step_dir / MARKER, info)
    return info


@dataclass
class StepOutcome:
    name: str
    directory: Path
    key: str
    cached: bool
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)


def write_manifest(
    run_dir: Path, config: dict[str, Any], steps: list[StepOutcome], total_seconds: float
) -> Path:
    artifacts = []
    for step in steps:
        known = step.info.get("sha256", {})  # the step's marker hashed these already
        for path in sorted(step.directory.rglob("*")):
            if path.is_symlink() or path.name == MARKER or path.name.startswith(".tmp"):
                continue  # a link could point anywhere: the manifest hashes only the run's own files
            if path.is_file():
                rel = str(path.relative_to(step.directory))
                artifacts.append(
                    {
                        "path": str(path.relative_to(run_dir)),
                        "sha256": known.get(rel) or sha256_file(path),
                        "bytes": path.stat().st_size,
                        "step": step.name,
                    }
                )
    manifest = {
        "schema": 1,
        "config": config,
        "tool_versions": tool_versions(),
        "steps": [
            {
                "name": s.name,
                "dir": str(s.directory.relative_to(run_dir)),
                "key": s.key,
                "cached": s.cached,
                "seconds": s.seconds,
            }
            for s in steps
        ],
        "total_seconds": total_seconds,
        "artifacts": artifacts,
    }
    return write_json(run_dir / "manifest.json", manifest)
