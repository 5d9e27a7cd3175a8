"""A native crash is never silent: the command that died, of what signal, in which step, and its log.

The `edgeslim` command runs in a child watched by a light parent (edgeslim.supervisor). The crash here
is a real signal delivered to the real child while it fine-tunes, which is what a fault in TensorFlow's
C++ does to the process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from edgeslim.supervisor import STATUS_ENV


def _child_of(parent: int, deadline: float) -> int:
    while time.monotonic() < deadline:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == parent:
                return int(stat.parent.name)
        time.sleep(0.05)
    raise AssertionError("the watched child never started")


def _status(child: int, deadline: float, key: str, prefix: str = "") -> dict[str, str]:
    """The child's status file, once it has noted ``key`` (starting with ``prefix``)."""
    environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
    [path] = [e.split(b"=", 1)[1].decode() for e in environ if e.startswith(STATUS_ENV.encode() + b"=")]
    while time.monotonic() < deadline:
        try:
            status = json.loads(Path(path).read_text() or "{}")
        except (OSError, ValueError):
            status = {}
        if status.get(key, "\0").startswith(prefix):
            return status
        time.sleep(0.1)
    raise AssertionError(f"the child never noted its {key}")


def test_a_native_crash_names_the_command_the_step_the_signal_and_the_log(digits_model_path, tmp_path):
    out = tmp_path / "run"
    args = ["compress", str(digits_model_path), "--stage", "prune:mode=structured,sparsity=0.5", "--out"]
    parent = subprocess.Popen(
        [sys.executable, "-m", "edgeslim", *args, str(out)], stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    child = _child_of(parent.pid, deadline)
    status = _status(child, deadline, "step", "01-prune")  # past loading the model (step "train")
    os.kill(child, signal.SIGSEGV)
    _, stderr = parent.communicate(timeout=60)
    assert parent.returncode == 128 + signal.SIGSEGV
    [line] = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert "edgeslim compress died of SIGSEGV (a segmentation fault)" in line
    assert f"during {status['step']}" in line
    log = Path(line.split("its log: ")[1].split(";")[0])
    assert log == Path(status["log"]) and log.is_file() and log.is_relative_to(out)
    assert "Segmentation fault" in log.read_text(errors="replace")  # Python's traceback, in the log
