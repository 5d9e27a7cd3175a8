"""The JSON sidecar next to an artifact (``model.tflite.json``): read it and check it matches the file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from edgeslim.runtime.errors import RuntimeModelError


def sidecar_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".json")


def read_sidecar(path: Path, data: bytes) -> dict[str, Any] | None:
    """The sidecar of ``path``, if any; RuntimeModelError if it is unreadable or describes other bytes."""
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        sidecar = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RuntimeModelError(
            f"{side}: the sidecar is not readable JSON ({type(exc).__name__})",
            "re-export the model, or delete the sidecar to load the file on its own",
        ) from None
    if not isinstance(sidecar, dict):
        raise RuntimeModelError(f"{side}: the sidecar must hold a JSON object", "re-export the model")
    expected = sidecar.get("sha256")
    if expected is not None and expected != hashlib.sha256(data).hexdigest():
        # A bit flip in the weights is invisible to any format check; the recorded hash is not.
        raise RuntimeModelError(
            f"{path}: the file does not match its sidecar {side.name} (sha256 differs): it is corrupt, "
            "truncated or was modified after export",
            "re-export the model, or delete the stale sidecar to load the file on its own",
        )
    return sidecar
