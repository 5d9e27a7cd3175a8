"""What a cached result was computed with, so that an upgrade never reuses what older code computed.

Pipeline step keys, fit's sensitivity tables and trial history all mix in ``code_fingerprint()``:
edgeslim's version, a digest of its own source files (a development checkout changes without a new
version number), and the versions of the tools that compute and measure (TensorFlow, Keras, LiteRT,
TFLite Micro, the ONNX stack). Without TensorFlow: the versions come from the installed metadata.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import platform
from pathlib import Path

TOOLS = (
    "edgeslim",
    "tensorflow",
    "keras",
    "tf2onnx",
    "onnx",
    "onnxruntime",
    "ai-edge-litert",
    "tflite-micro",
)


def tool_versions() -> dict[str, str]:
    """Python's version and each installed tool's."""
    versions = {"python": platform.python_version()}
    for name in TOOLS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


@functools.lru_cache(maxsize=1)
def _source_digest() -> str:
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for path in sorted(root.rglob("*.py")) + sorted(root.rglob("*.cc")) + sorted(root.rglob("*.c")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def code_fingerprint() -> str:
    """A short digest of edgeslim's version and code and the tools' versions."""
    from edgeslim import __version__

    tools = sorted(tool_versions().items())
    text = f"{__version__}|{_source_digest()}|{tools}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]
