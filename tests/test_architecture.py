"""Imports point one way, down the data flow: a lower package never imports a higher one (fine-tuning
and progress are passed in), and nothing a device runs imports TensorFlow or Keras.

Read from the source (every import statement, inside functions too), so a lazy import cannot hide.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "edgeslim"
# package -> the edgeslim packages it must never import (in any module, at any depth)
FORBIDDEN = {
    "runtime": {
        "train",
        "compress",
        "export",
        "pipeline",
        "cli",
        "fit",
        "report",
        "layers",
        "analysis",
        "data",
    },
    "data": {"train", "compress", "export", "pipeline", "cli", "fit", "report", "layers", "analysis"},
    "layers": {"train", "compress", "export", "pipeline", "cli", "fit", "report", "analysis"},
    "analysis": {"train", "compress", "export", "pipeline", "cli", "fit", "report"},
    "train": {"compress", "export", "pipeline", "cli", "fit", "report"},
    "compress": {"export", "pipeline", "cli", "fit", "report"},
    "export": {"compress", "train", "pipeline", "cli", "fit", "report"},
    "fit": {"pipeline", "cli"},
    "report": {"train", "compress", "export", "pipeline", "cli", "fit"},
    "pipeline": {"cli"},
    "deploy": {"train", "compress", "pipeline", "cli", "fit"},
}
# compress may read the fine-tuning *config* type (a plain dataclass), never train's code.
ALLOWED = {("compress", "edgeslim.train.config")}
TF_FREE = (
    "runtime",
    "data",
    "tasks.py",
    "errors.py",
    "recipe.py",
    "progress.py",
    "limits.py",
    "settings.py",
    "ownership.py",
    "runlock.py",
    "tflm_kernels.py",
)
# mnist without --data-dir downloads through keras.datasets when the toolchain is installed (an
# ImportError there says to pass --data-dir): the one optional, guarded use.
OPTIONAL_TF = {("data/mnist.py", "keras")}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def modules(package: str) -> list[Path]:
    target = PACKAGE / package
    return sorted(target.rglob("*.py")) if target.is_dir() else [target]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_back_edges(package):
    offenders = []
    for path in modules(package):
        for name in imports_of(path):
            parts = name.split(".")
            if parts[0] != "edgeslim" or len(parts) < 2:
                continue
            if parts[1] in FORBIDDEN[package] and not any(
                package == p and name.startswith(allowed) for p, allowed in ALLOWED
            ):
                offenders.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not offenders, offenders


@pytest.mark.parametrize("package", TF_FREE)
def test_what_a_device_runs_never_imports_tensorflow(package):
    offenders = [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in modules(package)
        for name in imports_of(path)
        if name.split(".")[0] in ("tensorflow", "keras", "tf_keras", "tf2onnx")
        and (str(path.relative_to(PACKAGE)), name) not in OPTIONAL_TF
    ]
    assert not offenders, offenders
