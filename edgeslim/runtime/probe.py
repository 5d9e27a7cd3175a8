"""Load a model file once in a child process, so that a native crash costs a child, not the caller.

LiteRT and onnxruntime verify most of what they load, but TFLite Micro segfaults on some bit-flipped
files, and no verifier covers every option value. A file that is not vouched for by a matching
sidecar is loaded and run once here first; a crash or error becomes a RuntimeModelError.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from edgeslim.runtime.errors import RuntimeModelError

PROBE_TIMEOUT_S = 120
_MARK = "edgeslim-probe-error: "
_PASSED: set[tuple[str, int, int, str]] = set()  # files that passed in this process: probe once


def probe(path: Path, backend: str, digest: str) -> None:
    """Load and run ``path`` once in a child process; raise RuntimeModelError if it fails or crashes."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, digest)
    if key in _PASSED:
        return
    package_root = str(Path(__file__).resolve().parents[2])  # the child must import this same edgeslim
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-m", "edgeslim.runtime.probe", str(path), backend]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        raise RuntimeModelError(
            f"{path}: loading it with {backend} did not finish in {PROBE_TIMEOUT_S} s", "re-export the model"
        ) from None
    if done.returncode < 0:
        name = (
            signal.Signals(-done.returncode).name if -done.returncode in signal.valid_signals() else "signal"
        )
        raise RuntimeModelError(
            f"{path}: the {backend} runtime crashed ({name}) loading this file: it is corrupt or unsupported",
            "re-export the model",
        )
    if done.returncode != 0:
        # Native loaders chatter on stderr too; the child marks its own one-line verdict.
        found = [line for line in done.stderr.splitlines() if line.startswith(_MARK)]
        message = (
            found[-1][len(_MARK) :] if found else f"{path}: {backend} failed (exit code {done.returncode})"
        )
        raise RuntimeModelError(message, "re-export the model")
    _PASSED.add(key)


def _main(path: str, backend: str) -> int:
    import numpy as np

    from edgeslim.runtime.loader import load

    try:
        model = load(path, backend=backend, probe=False)
        feeds = [np.zeros([1, *(d or 1 for d in spec.shape[1:])], spec.user_dtype) for spec in model.inputs]
        model.predict(feeds if len(feeds) > 1 else feeds[0])
    except RuntimeModelError as exc:
        print(f"{_MARK}{exc.message}", file=sys.stderr)
        return 3
    except Exception as exc:  # noqa: BLE001 - any failure of the native loader means the same to the caller
        print(
            f"{_MARK}{path}: {backend} cannot run this file ({type(exc).__name__}: {str(exc)[:200]})",
            file=sys.stderr,
        )
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1], sys.argv[2]))
