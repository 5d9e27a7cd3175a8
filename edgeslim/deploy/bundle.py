"""`edgeslim deploy RUN_DIR --target rpi|coral|mcu --out BUNDLE`.

rpi/coral: the artifact, its sidecar, a requirements.txt with only the base package, a TensorFlow-free
run.py and a README; coral adds the Edge TPU-compiled file when the export produced one. mcu: the C
package the export step wrote. The bundle is assembled in a temporary folder and renamed into place,
so a failed deploy never leaves half a bundle.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from edgeslim import __version__
from edgeslim.atomic import write_json
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
    # coral: run.py prefers the Edge TPU-compiled file under this name, shipped when the export made it.
    edgetpu_name = f"{chosen.stem}_edgetpu.tflite" if target == "coral" else ""
    compiled = _compiled_edgetpu_file(chosen, info) if target == "coral" else None
    if compiled is not None:
        shutil.copy2(compiled, staging / edgetpu_name)
        write_json(staging / f"{edgetpu_name}.json", _compiled_sidecar(compiled, chosen, info, edgetpu_name))
    (staging / "requirements.txt").write_text(f"edgeslim=={__version__}\n")
    values = {
        "__MODEL_FILE__": chosen.name,
        "__EDGETPU_FILE__": edgetpu_name,
        "__EDGETPU_STATUS__": _edgetpu_status(chosen.name, edgetpu_name, compiled is not None),
        "__INPUT_SHAPE__": str((info.get("inputs") or [{}])[0].get("shape", "?")),
        "__CLASSES__": ", ".join(info.get("class_names", [])) or "see the sidecar",
    }
    (staging / "run.py").write_text(_fill((TEMPLATES / "run.py").read_text(), values))
    (staging / "README.md").write_text(_fill((TEMPLATES / f"README.{target}.md").read_text(), values))


def _fill(template: str, values: dict[str, str]) -> str:
    for placeholder, value in values.items():
        template = template.replace(placeholder, value)
    return template


def _compiled_edgetpu_file(chosen: Path, info: dict[str, Any]) -> Path | None:
    """The ``*_edgetpu.tflite`` edgetpu_compiler wrote beside ``chosen``, when its sidecar records one."""
    compiler = (info.get("edgetpu") or {}).get("compiler") or {}
    recorded = compiler.get("compiled_path")
    if not recorded:
        return None  # the export ran without edgetpu_compiler on PATH, or the compiler failed
    compiled = chosen.parent / Path(recorded).name  # beside the artifact, wherever the run folder moved
    if not compiled.is_file():
        raise EdgeslimError(
            f"{compiled}: missing, but the sidecar of {chosen.name} records it as the Edge TPU-compiled file",
            "rerun the edgetpu export with edgetpu_compiler on PATH (delete exports/edgetpu/step.json first)",
        )
    return compiled


def _compiled_sidecar(compiled: Path, source: Path, info: dict[str, Any], name: str) -> dict[str, Any]:
    """The source's sidecar (same inputs, outputs, preprocessing, classes) describing the compiled bytes."""
    sidecar = {key: value for key, value in info.items() if key != "verification"}  # that ran the CPU file
    data = compiled.read_bytes()
    sidecar.update(file=name, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())  # vouches for it
    sidecar.pop("gzip_bytes", None)
    sidecar["compiled_from"] = {"file": source.name, "sha256": info.get("sha256")}
    return sidecar


def _edgetpu_status(model_file: str, edgetpu_file: str, shipped: bool) -> str:
    if not edgetpu_file:
        return ""
    if shipped:
        return textwrap.fill(
            f"`{edgetpu_file}` is the model as `edgetpu_compiler` compiled it for the TPU (its sidecar "
            f"beside it); `{model_file}` is the same model uncompiled, the CPU fallback.",
            width=104,
        )
    prose = textwrap.fill(
        f"This bundle has no `{edgetpu_file}`: the export ran without `edgetpu_compiler` on PATH. Compile "
        "it on an x86-64 Linux machine with Coral's compiler and copy the result here; `run.py` uses it "
        "when present:",
        width=104,
    )
    return f"{prose}\n\n```bash\nedgetpu_compiler {model_file}        # writes {edgetpu_file}\n```"


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
