"""Quiet by default: library chatter goes to a log file; the terminal shows edgeslim's own lines.

TensorFlow, the LiteRT converter, tf2onnx and the interpreters write to file descriptors 1 and 2
from C++ as well as from Python, before any logging setting can take effect, and so do the child
processes edgeslim starts. So the CLI points fds 1 and 2 at a pipe whose pump writes every line to a
log file (and, with ``--verbose``, to the terminal too), while edgeslim's console and its ``--json``
output write to the saved terminal descriptors. A command that has a run folder moves the log there
(``RUN/logs/edgeslim.log``, which its lock keeps to one writer); the others keep their own file in the
user's cache folder, ``<command>-<time>-<pid>.log``, so two commands never share a log.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from edgeslim.supervisor import note

LOG_NAME = "edgeslim.log"
KEEP_LOGS = 20  # per command, in the cache folder: the newest ones


def default_log_dir() -> Path:
    if os.environ.get("EDGESLIM_LOG_DIR"):
        return Path(os.environ["EDGESLIM_LOG_DIR"])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "edgeslim" / "logs"


class _Capture:
    """The running capture: the pump thread, the log file, and the saved terminal streams."""

    def __init__(self, log_path: Path, verbose: bool) -> None:
        self.verbose = verbose
        self.lock = threading.Lock()
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log: IO[bytes] = open(log_path, "wb")  # noqa: SIM115 - closed in close()
        started = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.log.write(f"==== edgeslim {' '.join(sys.argv[1:])} ({started})\n".encode())
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved_out, self.saved_err = os.dup(1), os.dup(2)
        self.stdout = os.fdopen(os.dup(self.saved_out), "w", buffering=1, encoding="utf-8")
        self.stderr = os.fdopen(os.dup(self.saved_err), "w", buffering=1, encoding="utf-8")
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 1)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self.pump = threading.Thread(target=self._pump, args=(read_fd,), daemon=True)
        self.pump.start()
        self._crash_record()

    def _crash_record(self) -> None:
        # A native crash kills the pump with the process: Python's tracebacks go straight to the log
        # file, and the watching parent (edgeslim.supervisor) learns where the log is.
        faulthandler.enable(file=self.log)
        note(log=self.log_path)

    def _pump(self, read_fd: int) -> None:
        with os.fdopen(read_fd, "rb", buffering=0) as stream:
            while chunk := stream.read(65536):
                with self.lock:
                    self.log.write(chunk)
                    self.log.flush()
                if self.verbose:
                    os.write(self.saved_err, chunk)

    def move_to(self, folder: Path) -> Path:
        """Continue the log in ``folder/edgeslim.log``, keeping what was written so far."""
        target = folder / LOG_NAME
        if target.resolve() == self.log_path.resolve():
            return target
        folder.mkdir(parents=True, exist_ok=True)
        with self.lock:
            self.log.flush()
            earlier = self.log_path.read_bytes()
            new = open(target, "ab")  # noqa: SIM115 - closed in close(); a run folder keeps every run's log
            new.write(earlier)
            self.log.close()
            self.log_path.unlink(missing_ok=True)
            self.log, self.log_path = new, target
            self._crash_record()
        return target

    def close(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self.saved_out, 1)
        os.dup2(self.saved_err, 2)  # closes the pipe's last write ends, so the pump sees EOF
        self.pump.join(timeout=10)
        for stream in (self.stdout, self.stderr):
            stream.close()
        os.close(self.saved_out)
        os.close(self.saved_err)
        with self.lock:
            faulthandler.disable()
            self.log.close()


_active: _Capture | None = None


@contextlib.contextmanager
def captured_output(command: str, verbose: bool = False) -> Iterator[None]:
    """Route fds 1 and 2 into ``<log dir>/<command>.log`` while the command runs.

    Does nothing where the process has no real fds 1 and 2 (pytest's capsys, an embedding program).
    """
    global _active
    if _active is not None or not (_real_fd(sys.stdout, 1) and _real_fd(sys.stderr, 2)):
        yield
        return
    from edgeslim.cli.app import console

    name = command or "edgeslim"
    _prune_logs(default_log_dir(), name)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    _active = _Capture(default_log_dir() / f"{name}-{stamp}-{os.getpid()}.log", verbose)
    console.file = _active.stderr
    try:
        yield
    finally:
        console.file = None  # back to sys.stderr
        capture, _active = _active, None
        capture.close()


def _prune_logs(folder: Path, command: str) -> None:
    """Keep the newest logs of a command; another process may be pruning the same ones. Only names
    edgeslim gives its logs (``<command>-<date>-<time>-<pid>.log``) are touched: EDGESLIM_LOG_DIR may
    point at a folder that holds other files."""
    ours = re.compile(re.escape(command) + r"-\d{8}-\d{6}-\d+\.log")
    logs = sorted((p for p in folder.glob(f"{command}-*.log") if ours.fullmatch(p.name)), reverse=True)
    for old in logs[KEEP_LOGS:]:
        old.unlink(missing_ok=True)


def move_log(folder: str | os.PathLike[str]) -> Path | None:
    """Move the running command's log into ``folder`` (a run directory's ``logs/``)."""
    return _active.move_to(Path(folder)) if _active is not None else None


def log_path() -> Path | None:
    return _active.log_path if _active is not None else None


def terminal_stdout() -> IO[str]:
    """Where a command's own output (--json, tables) goes: the real stdout, not the log."""
    return _active.stdout if _active is not None else sys.stdout


def _real_fd(stream: object, fd: int) -> bool:
    try:
        return stream.fileno() == fd  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False
