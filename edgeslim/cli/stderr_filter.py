"""Drop TensorFlow's native start-up chatter from the terminal.

TensorFlow's C++ code logs through absl before TF_CPP_MIN_LOG_LEVEL can take effect ("All log messages
before absl::InitializeLog() ...", oneDNN and CUDA-probe notices). Every command that trains or converts
would start with those lines, so the CLI routes fd 2 through a pipe and drops exactly those patterns;
every other line (warnings and errors that matter included) passes through unchanged.
Set EDGESLIM_RAW_STDERR=1 to see everything.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator

NOISE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|[IW]0000 00:00:\d+\.\d+ +\d+ \S+\] "
    rb"|E0000 00:00:\d+\.\d+ +\d+ cuda_\w+\.cc:\d+\] failed call to cuInit"
    rb"|To enable the following instructions: .* rebuild TensorFlow)"
)


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    if os.environ.get("EDGESLIM_RAW_STDERR") or not _is_real_fd2():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    pump = threading.Thread(target=_pump, args=(read_fd, saved), daemon=True)
    pump.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end, so the pump sees EOF
        pump.join(timeout=5)
        os.close(saved)


def _pump(read_fd: int, out_fd: int) -> None:
    with os.fdopen(read_fd, "rb", buffering=0) as stream:
        pending = b""
        while chunk := stream.read(65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            kept = b"".join(line + b"\n" for line in lines if not NOISE.match(line))
            if kept:
                os.write(out_fd, kept)
        if pending and not NOISE.match(pending):
            os.write(out_fd, pending)


def _is_real_fd2() -> bool:
    try:
        return sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False  # replaced by a capture object (pytest's capsys, say)
