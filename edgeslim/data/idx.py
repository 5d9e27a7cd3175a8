"""A numpy-only reader for the IDX files MNIST and Fashion-MNIST ship as (gzip or raw)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from edgeslim.errors import EdgeslimError

IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Read one IDX file, checking its magic number, dimensions and byte count."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise EdgeslimError(
            f"{path}: cannot read IDX file ({exc})", "re-download it; it may be truncated or not gzip"
        ) from None
    if len(raw) < 4:
        raise EdgeslimError(
            f"{path}: {len(raw)} bytes is too short for an IDX header", "re-download the file"
        )
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        raise EdgeslimError(
            f"{path}: IDX magic number is 0x{magic:08x}, expected 0x{expected_magic:08x}",
            "is this the right file (images vs labels) and a real IDX file?",
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise EdgeslimError(f"{path}: truncated IDX header", "re-download the file")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise EdgeslimError(
            f"{path}: {len(raw)} bytes, but its header {dims} needs {expected}",
            "the file is truncated or corrupt; re-download it",
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def find_idx_pair(data_dir: Path, prefix: str) -> tuple[Path, Path] | None:
    """Find ``<prefix>-images-idx3-ubyte[.gz]`` and its labels file; None when absent."""
    found = []
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        candidates = [data_dir / f"{prefix}-{kind}{ext}" for ext in (".gz", "")]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            return None
        found.append(hit)
    return found[0], found[1]
