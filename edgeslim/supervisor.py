"""A native crash is never silent: the `edgeslim` command runs in a child process, watched by this one.

TensorFlow, the converters and the interpreters are C++: a fault in them kills the process with a
signal, and nothing of Python's runs after it, so the process itself cannot say what happened (and its
library output goes to the log file, not the terminal). The parent here imports nothing heavy, starts
the command as a child with the same terminal, forwards SIGTERM and SIGHUP to it (a SIGKILL of the
parent kills the child too), and when the child dies of a signal prints one line: the command, the
signal, the step it was in and where its log is.
The child notes its step and log in a small status file (``note``) as it goes.

The exit code of a child killed by a signal is the shell's: 128 + the signal's number.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from typing import Any

STATUS_ENV = "EDGESLIM_STATUS_FILE"  # set in the child: where it notes its step and log
FORWARDED = (signal.SIGTERM, signal.SIGHUP)
WHAT = {
    signal.SIGSEGV: "a segmentation fault",
    signal.SIGABRT: "an abort (a failed check or heap corruption)",
    signal.SIGBUS: "a bus error",
    signal.SIGILL: "an illegal instruction",
    signal.SIGFPE: "an arithmetic fault",
    signal.SIGKILL: "SIGKILL (the system may have run out of memory)",
}


def note(**fields: Any) -> None:
    """Record the running command's step (``step=``) or log (``log=``) for the watching parent."""
    path = os.environ.get(STATUS_ENV)
    if not path:
        return
    status = read_status(path)
    status.update({k: str(v) for k, v in fields.items()})
    # The parent's temp folder gone: nothing to tell it any more.
    with contextlib.suppress(OSError), open(path, "w", encoding="utf-8") as f:
        json.dump(status, f)


def read_status(path: str) -> dict[str, str]:
    try:
        with open(path, encoding="utf-8") as f:
            status = json.load(f)
    except (OSError, ValueError):
        return {}
    return status if isinstance(status, dict) else {}


def entrypoint() -> None:
    """The `edgeslim` console script: the command in a watched child, or here when already a child."""
    args = sys.argv[1:]
    if os.environ.get(STATUS_ENV) is not None or not args or "--help" in args:
        from edgeslim.cli import entrypoint as run_here

        run_here()
        return
    sys.exit(supervise(args))


def supervise(args: list[str]) -> int:
    fd, status_path = tempfile.mkstemp(prefix="edgeslim-status-", suffix=".json")
    os.close(fd)
    env = {**os.environ, STATUS_ENV: status_path}
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "edgeslim", *args], env=env, preexec_fn=_die_with_parent
        )
        # Ctrl-C reaches the child from the terminal itself; here it must not end the watch. A Python
        # handler (not SIG_IGN, which a child would inherit) keeps it from raising.
        signal.signal(signal.SIGINT, lambda signum, frame: None)
        for signum in FORWARDED:
            signal.signal(signum, lambda signum, frame: child.send_signal(signum))
        code = child.wait()
        if code >= 0:
            return code
        signum = -code
        if signum not in (signal.SIGINT, *FORWARDED):
            _report(args, signal.Signals(signum), read_status(status_path))
        return 128 + signum
    finally:
        os.unlink(status_path)


def _die_with_parent() -> None:
    """In the child, before it runs: a SIGKILL of the parent (``kill -9 edgeslim``) kills it too, as it
    would have killed the command without a watcher (Linux; elsewhere the child outlives it)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _report(args: list[str], signum: signal.Signals, status: dict[str, str]) -> None:
    command = next((a for a in args if not a.startswith("-")), "")
    step = f" during {status['step']}" if status.get("step") else ""
    log = f"; its log: {status['log']}" if status.get("log") else ""
    what = WHAT.get(signum, "a signal")
    sys.stderr.write(
        f"error: edgeslim {command} died of {signum.name} ({what}){step}: a crash inside native code "
        f"(TensorFlow, a converter or a runtime), not something you did{log}; please report it with the "
        "log\n"
    )
    sys.stderr.flush()
