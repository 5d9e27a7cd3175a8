"""An exported file and its JSON sidecar (``<file>.json``): everything a runtime needs to feed it raw data."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeslim.atomic import write_json
from edgeslim.runtime.sidecar import sidecar_path

SIDECAR_VERSION = 1


@dataclass
class Artifact:
    """``path``: the exported file. ``sidecar``: its metadata, as written to ``<path>.json``."""

    path: Path
    sidecar: dict[str, Any] = field(default_factory=dict)

    @property
    def sidecar_path(self) -> Path:
        return sidecar_path(self.path)

    @property
    def passed(self) -> bool:
        """False when verification ran and the artifact fell below the agreement floor."""
        return bool((self.sidecar.get("verification") or {}).get("passed", True))

    def write_sidecar(self) -> Path:
        return write_json(self.sidecar_path, self.sidecar)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "sidecar_path": str(self.sidecar_path), **self.sidecar}


def file_facts(data: bytes) -> dict[str, Any]:
    """Size, gzip size (what pruning buys on the wire) and the sha256 the runtime checks on load."""
    return {
        "bytes": len(data),
        "gzip_bytes": len(gzip.compress(data, compresslevel=9, mtime=0)),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
