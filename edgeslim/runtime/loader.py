"""``load(path)``: pick the backend by file type, check the file, and open it without risking a crash."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from edgeslim.runtime.errors import RuntimeModelError
from edgeslim.runtime.model import RuntimeModel
from edgeslim.runtime.onnx_file import read_onnx
from edgeslim.runtime.probe import probe as probe_in_child
from edgeslim.runtime.sidecar import read_sidecar
from edgeslim.runtime.tflite_file import read_tflite

# backend -> the file types it runs. The first backend listed for a suffix is its default.
BACKENDS: dict[str, tuple[str, ...]] = {
    "litert": (".tflite",),
    "onnxruntime": (".onnx",),
    "tflm": (".tflite",),
}
ALIASES = {
    "ort": "onnxruntime",
    "onnx": "onnxruntime",
    "tflite": "litert",
    "micro": "tflm",
    "tflite-micro": "tflm",
}
SUFFIXES = {".tflite": "litert", ".onnx": "onnxruntime"}


def load(
    path: str | Path, backend: str | None = None, threads: int | None = None, *, probe: bool | None = None
) -> RuntimeModel:
    """Open an exported model in its runtime.

    ``backend``: ``litert`` or ``tflm`` for ``.tflite``, ``onnxruntime`` for ``.onnx``; by default the
    file type decides. ``threads``: CPU threads for LiteRT and ONNX Runtime. ``probe``: load the file
    once in a child process first, so that a corrupt file that would crash the native loader raises
    :class:`RuntimeModelError` instead. By default (``None``) a file is probed unless its sidecar's
    sha256 vouches for it.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise RuntimeModelError(
            f"{path}: unknown model file type {suffix or '(none)'!r}",
            "expected a .tflite file (LiteRT, TFLite Micro) or an .onnx file (ONNX Runtime)",
        )
    name = _backend(backend, suffix, path)
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise RuntimeModelError(f"threads must be a positive integer, got {threads!r}", "pass e.g. threads=4")
    if not path.is_file():
        raise RuntimeModelError(
            f"{path}: no such model file", "check the path, or export one with `edgeslim export`"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RuntimeModelError(
            f"{path}: cannot read the file ({exc.strerror})", "check its permissions"
        ) from None
    info: Any = read_onnx(data, str(path)) if suffix == ".onnx" else read_tflite(data, str(path))
    sidecar = read_sidecar(path, data)
    digest = hashlib.sha256(data).hexdigest()
    vouched = sidecar is not None and sidecar.get("sha256") == digest
    if probe or (probe is None and not vouched):
        probe_in_child(path, name, digest)
    return _adapter(name)(path, data, info, sidecar, threads)


def _backend(backend: str | None, suffix: str, path: Path) -> str:
    if backend is None:
        return SUFFIXES[suffix]
    name = ALIASES.get(backend.lower(), backend.lower())
    if name not in BACKENDS:
        raise RuntimeModelError(f"unknown backend {backend!r}", f"choose one of {sorted(BACKENDS)}")
    if suffix not in BACKENDS[name]:
        raise RuntimeModelError(
            f"{path}: backend {name!r} cannot run {suffix} files",
            f"{name} runs {', '.join(BACKENDS[name])} files",
        )
    return name


def _adapter(name: str) -> Any:
    # Imported on demand: a device without tflite-micro still loads .tflite and .onnx files.
    if name == "litert":
        from edgeslim.runtime.litert import LiteRTModel

        return LiteRTModel
    if name == "onnxruntime":
        from edgeslim.runtime.onnxrt import OnnxRuntimeModel

        return OnnxRuntimeModel
    from edgeslim.runtime.tflm import TFLMModel

    return TFLMModel
