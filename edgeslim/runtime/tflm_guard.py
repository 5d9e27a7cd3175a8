"""Trying an arena size in a child process first, so that a TFLite Micro crash costs a child, not the caller.

TFLite Micro does not always fail cleanly when the tensor arena is too small: depending on where the
allocation runs out, it returns an error (a RuntimeError in Python) or dies with SIGSEGV. Seen with
tflite-micro 0.dev20261023: a dense int8 autoencoder at 16 KiB ("Failed to allocate tail memory"),
and the fused LSTM kernel, whose Prepare asserts on a tensor it could not allocate
(``lstm_eval.cc: internal_tensors_[kLstmOutputStateTensor] != nullptr was not true``). Arena
bisection tries exactly such sizes. So every new (model, size) is run once by a helper process that
answers "ok" or "fail" and is restarted when it crashes; sizes are monotone (a size that runs means
every larger one does), so few questions reach it.
"""

from __future__ import annotations

import atexit
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

from edgeslim.runtime.tflite_file import read_tflite

ANSWER_TIMEOUT_S = 120
# digest -> (largest size known to fail, smallest size known to run); None where unknown
_KNOWN: dict[str, tuple[int | None, int | None]] = {}

_CHILD = """
import sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime
data = open(sys.argv[1], "rb").read()
n_inputs = int(sys.argv[2])
for line in sys.stdin:
    try:
        interp = runtime.Interpreter.from_bytes(data, arena_size=int(line))
        for i in range(n_inputs):
            d = interp.get_input_details(i)
            interp.set_input(np.zeros(d["shape"], d["dtype"]), i)
        interp.invoke()
        answer = "ok"
    except (RuntimeError, ValueError):
        answer = "fail"
    print(answer, flush=True)
"""


class _Helper:
    """One child process per model, asked one arena size per line; restarted after a crash."""

    def __init__(self, data: bytes) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="edgeslim-tflm-")
        self.path = Path(self._dir.name) / "model.tflite"
        self.path.write_bytes(data)
        self.n_inputs = len(read_tflite(data, "tflm model").inputs)
        self.process: subprocess.Popen[str] | None = None

    def runs(self, arena_size: int) -> bool:
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(self.path), str(self.n_inputs)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # TFLite Micro prints every failed allocation
                text=True,
            )
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(f"{arena_size}\n")
            self.process.stdin.flush()
            answer = self.process.stdout.readline().strip()
        except (BrokenPipeError, OSError):
            answer = ""
        if answer not in ("ok", "fail"):  # it crashed on this size: a size that does not run
            self.stop()
        return answer == "ok"

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()


_HELPERS: dict[str, _Helper] = {}
# Helpers alive at once: a bisection asks one model many sizes, then moves on to the next model. A fit
# exports a model per trial and a test session hundreds: each helper kept to the end held an interpreter
# and its imports (24 idle children in one test worker).
MAX_HELPERS = 2


def arena_is_safe(data: bytes, arena_size: int) -> bool:
    """False when TFLite Micro would fail, or crash, running ``data`` in ``arena_size`` bytes."""
    digest = hashlib.sha256(data).hexdigest()
    fails, runs = _KNOWN.get(digest, (None, None))
    if runs is not None and arena_size >= runs:
        return True
    if fails is not None and arena_size <= fails:
        return False
    helper = _HELPERS.pop(digest, None) or _Helper(data)
    _HELPERS[digest] = helper  # the most recent last
    while len(_HELPERS) > MAX_HELPERS:
        _HELPERS.pop(next(iter(_HELPERS))).close()
    ok = helper.runs(arena_size)
    if ok:
        runs = arena_size if runs is None else min(runs, arena_size)
    else:
        fails = arena_size if fails is None else max(fails, arena_size)
    _KNOWN[digest] = (fails, runs)
    return ok


@atexit.register
def _close_helpers() -> None:
    for helper in _HELPERS.values():
        helper.close()
