"""`edgeslim deploy RUN_DIR --target rpi|coral|mcu --out BUNDLE`.

rpi/coral: the artifact, its sidecar, a requirements.txt with only the base package, a TensorFlow-free
run.py and a README. mcu: the C package the export step wrote. The bundle is assembled in a temporary
folder and renamed into place, so a failed deploy never leaves half a bundle.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from edgeslim import __version__
from edgeslim.errors import EdgeslimError

TEMPLATES = Path(__file__).with_name("templates")
# Which export step feeds which bundle, and which artifact to prefer there.
BUNDLE_TARGETS = {
    "rpi": ("cpu", (".tflite", ".onnx")),
    "coral": ("edgetpu", (".tflite",)),
    "mcu": ("mcu", ()),
}


def make_bundle(run_dir: str | Path, target: str, out: str | Path, artifact: str | None = None) -> Path:
    run_dir, out = Path(run_dir), Path(out)
    if target not in BUNDLE_TARGETS:
        raise EdgeslimError(f"unknown deploy target {target!r}", f"choose one of {sorted(BUNDLE_TARGETS)}")
    export_name, suffixes = BUNDLE_TARGETS[target]
    export_dir = run_dir / "exports" / export_name
    if not (export_dir / "step.json").is_file():
        raise EdgeslimError(
            f"{export_dir}: no completed '{export_name}' export in this run",
            f"add '{export_name}' to export.targets in the config and rerun `edgeslim pipeline`",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if target == "mcu":
            _mcu_bundle(export_dir, staging)
        else:
            _python_bundle(export_dir, suffixes, staging, target, artifact)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out


def _python_bundle(
    export_dir: Path, suffixes: tuple[str, ...], staging: Path, target: str, artifact: str | None
) -> None:
    chosen = _choose_artifact(export_dir, suffixes, artifact)
    sidecar = chosen.with_name(chosen.name + ".json")
    shutil.copy2(chosen, staging / chosen.name)
    if sidecar.is_file():
        shutil.copy2(sidecar, staging / sidecar.name)
    info = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    (staging / "requirements.txt").write_text(f"edgeslim=={__version__}\n")
    run_py = (TEMPLATES / "run.py").read_text().replace("__MODEL_FILE__", chosen.name)
    (staging / "run.py").write_text(run_py)
    readme = (TEMPLATES / f"README.{target}.md").read_text()
    readme = readme.replace("__MODEL_FILE__", chosen.name)
    readme = readme.replace("__INPUT_SHAPE__", str((info.get("inputs") or [{}])[0].get("shape", "?")))
    readme = readme.replace("__CLASSES__", ", ".join(info.get("class_names", [])) or "see the sidecar")
    (staging / "README.md").write_text(readme)


def _choose_artifact(export_dir: Path, suffixes: tuple[str, ...], artifact: str | None) -> Path:
    marker = json.loads((export_dir / "step.json").read_text())
    candidates = [export_dir / rel for rel in marker.get("artifacts", [])]
    if artifact is not None:
        match = [c for c in candidates if c.name == artifact]
        if not match:
            raise EdgeslimError(
                f"no artifact {artifact!r} in {export_dir}", f"choose one of {[c.name for c in candidates]}"
            )
        return match[0]
    for suffix in suffixes:
        passed = [c for c in candidates if c.suffix == suffix and _passed(c)]
        if passed:
            return sorted(passed, key=lambda c: c.stat().st_size)[0]  # smallest verified file
    raise EdgeslimError(
        f"{export_dir}: no verified {'/'.join(suffixes)} artifact to deploy",
        "look at the report's failures, fix them and rerun the pipeline",
    )


def _passed(path: Path) -> bool:
    sidecar = path.with_name(path.name + ".json")
    if not sidecar.is_file():
        return False
    verification = json.loads(sidecar.read_text()).get("verification") or {}
    return bool(verification.get("passed", False))


def _mcu_bundle(export_dir: Path, staging: Path) -> None:
    packages = sorted(p.parent for p in export_dir.rglob("model_data.cc"))
    if not packages:
        raise EdgeslimError(
            f"{export_dir}: the mcu export wrote no C package", "rerun the pipeline's mcu export"
        )
    for item in packages[0].iterdir():
        (shutil.copytree if item.is_dir() else shutil.copy2)(item, staging / item.name)
