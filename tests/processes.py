"""Helpers for tests that start real processes (the CLI, Ray clusters, fits): the CLI as a user runs
it and its one-line refusals, free ports, who is still running."""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_mentioning(marker: str) -> dict[int, str]:
    """The live processes (zombies aside) whose command line mentions ``marker``: pid -> command line."""
    found = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue  # gone meanwhile
        if marker in line:
            found[int(entry.name)] = line[:200]
    return found


ERROR_FREE = ("Traceback", "internal error")


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edgeslim", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


def assert_refused(done: subprocess.CompletedProcess, *words: str) -> None:
    """Exit 2, one `error:` line naming what is wrong, no traceback."""
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert not any(marker in done.stderr for marker in ERROR_FREE), done.stderr
    for word in words:
        assert word in errors[0], errors[0]


def wait_until_unlocked(folder: Path, seconds: float = 30.0) -> None:
    """Until no process holds ``folder``'s edgeslim lock (a killed command's threads take a moment)."""
    fd = os.open(folder / ".edgeslim.lock", os.O_RDWR)
    try:
        deadline = time.monotonic() + seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{folder} is still locked after {seconds:.0f} s") from None
                time.sleep(0.1)
    finally:
        os.close(fd)
