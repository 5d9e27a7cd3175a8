"""A numpy-only reader for the IDX files MNIST and Fashion-MNIST ship as (gzip or raw)."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from edgeslim.data.validate import MAX_ARRAY_BYTES
from edgeslim.errors import EdgeslimError

IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Read one IDX file, checking its magic number, dimensions and byte count.

    The header is read first and its size checked against the file (and the cap) before the data is
    read: a few bytes claiming a 10^12-element array are refused without allocating it.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as stream:
            dims, header = _header(path, stream, expected_magic)
            expected = math.prod(dims)  # a Python integer: no overflow, however large the dimensions
            if expected > MAX_ARRAY_BYTES:
                raise EdgeslimError(
                    f"{path}: its header declares {dims} ({expected:,} bytes), more than the "
                    f"{MAX_ARRAY_BYTES:,} bytes edgeslim reads",
                    "the file is corrupt; re-download it",
                )
            if path.suffix != ".gz" and path.stat().st_size != header + expected:
                raise _size_error(path, path.stat().st_size, dims, header + expected)
            body = stream.read(expected + 1)  # one byte more: a longer file is as wrong as a shorter one
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise EdgeslimError(
            f"{path}: cannot read IDX file ({exc})", "re-download it; it may be truncated or not gzip"
        ) from None
    if len(body) != expected:
        raise _size_error(path, header + len(body), dims, header + expected)
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _header(path: Path, stream: BinaryIO, expected_magic: int) -> tuple[list[int], int]:
    head = stream.read(4)
    if len(head) < 4:
        raise EdgeslimError(
            f"{path}: {len(head)} bytes is too short for an IDX header", "re-download the file"
        )
    magic = int.from_bytes(head, "big")
    if magic != expected_magic:
        raise EdgeslimError(
            f"{path}: IDX magic number is 0x{magic:08x}, expected 0x{expected_magic:08x}",
            "is this the right file (images vs labels) and a real IDX file?",
        )
    ndim = magic & 0xFF
    raw = stream.read(4 * ndim)
    if len(raw) < 4 * ndim:
        raise EdgeslimError(f"{path}: truncated IDX header", "re-download the file")
    return [int.from_bytes(raw[4 * i : 4 * i + 4], "big") for i in range(ndim)], 4 + 4 * ndim


def _size_error(path: Path, size: int, dims: list[int], expected: int) -> EdgeslimError:
    return EdgeslimError(
        f"{path}: {size} bytes, but its header {dims} needs {expected}",
        "the file is truncated or corrupt; re-download it",
    )


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
