"""One writer per folder: an ``fcntl`` lock held while a command writes a run, a fit, an export or a bundle.

Two commands writing one folder would each describe files the other replaced. The lock lives in
``FOLDER/.edgeslim.lock`` and dies with its process (the kernel drops it), so a killed command never
leaves a stale lock. Within one process the lock is re-entrant: the CLI takes it before moving its log
into the folder, and the Python API it calls takes it again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from edgeslim.errors import EdgeslimError

LOCK_NAME = ".edgeslim.lock"
_held: dict[Path, list[int]] = {}  # folder -> [fd, depth]


@contextlib.contextmanager
def locked(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the folder's lock for the block, or raise (exit 2) naming the PID that holds it."""
    key = Path(folder).resolve()
    if key in _held:
        _held[key][1] += 1
        try:
            yield Path(folder)
        finally:
            _held[key][1] -= 1
        return
    fd = os.open(key / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise EdgeslimError(
            f"{folder}: another edgeslim command (PID {holder}) is writing this folder",
            "wait for it to finish, or choose another --out",
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[key] = [fd, 1]
    try:
        yield Path(folder)
    finally:
        _held[key][1] -= 1
        if _held[key][1] == 0:
            del _held[key]
            os.close(fd)  # closing the descriptor releases the lock
