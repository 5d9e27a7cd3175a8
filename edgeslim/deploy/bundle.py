"""`edgeslim deploy RUN_DIR --target rpi|coral|mcu --out BUNDLE`.

rpi/coral: the artifact, its sidecar, a requirements.txt with only the base package, a TensorFlow-free
run.py and a README; coral adds the Edge TPU-compiled file when the export produced one. mcu: the C
package the export step wrote.

Nothing of the user's is touched: ``--out`` must be new, empty or an earlier bundle of edgeslim's (and
then only with ``force``, which removes just the files that bundle's marker lists), and it may not lie
inside the run nor contain it. Every shipped file is one the export step recorded, inside its folder,
with the sha256 its marker (and the artifact's sidecar) holds: a damaged or swapped file is refused.
The bundle is assembled in a temporary folder and moved into place, so a failed deploy never leaves
half a bundle; shipped files name no path of the machine that built them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from edgeslim import __version__
from edgeslim.atomic import sha256_file, write_json
from edgeslim.errors import EdgeslimError
from edgeslim.ownership import MARK, member, owned, read_mark
from edgeslim.runlock import LOCK_NAME

TEMPLATES = Path(__file__).with_name("templates")
# Which export step feeds which bundle, and which artifact to prefer there.
BUNDLE_TARGETS = {
    "rpi": ("cpu", (".tflite", ".onnx")),
    "coral": ("edgetpu", (".tflite",)),
    "mcu": ("mcu", ()),
}


def make_bundle(
    run_dir: str | Path, target: str, out: str | Path, artifact: str | None = None, force: bool = False
) -> Path:
    """Write the bundle for ``target`` from ``run_dir`` into ``out`` (see the module docstring)."""
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
    shipped = ShippedFiles(export_dir)
    with owned(out, "bundle", inputs=[run_dir], reading=[run_dir], replace=force):
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            if target == "mcu":
                _mcu_bundle(shipped, staging)
            else:
                _python_bundle(shipped, suffixes, staging, target, artifact)
            _replace_contents(out, staging)
        except OSError as exc:  # name the bundle's file, not the staging folder that is about to go
            if exc.filename is None or not Path(exc.filename).is_relative_to(staging):
                raise
            raise OSError(
                exc.errno, exc.strerror, str(out / Path(exc.filename).relative_to(staging))
            ) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return out


class ShippedFiles:
    """The export step's recorded files: only these may be shipped, each checked against its hash."""

    def __init__(self, export_dir: Path) -> None:
        self.dir = export_dir
        marker = export_dir / "step.json"
        try:
            info = json.loads(marker.read_text())
        except (OSError, ValueError):
            info = None
        hashes = info.get("sha256") if isinstance(info, dict) else None
        if not isinstance(hashes, dict) or not isinstance(info.get("artifacts", []), list):
            raise EdgeslimError(f"{marker}: damaged", "rerun `edgeslim pipeline` to rebuild that export")
        self.hashes: dict[str, str] = hashes
        self.artifacts: list[str] = [a for a in info.get("artifacts", []) if isinstance(a, str)]

    def path(self, name: str) -> Path:
        """The recorded file ``name``, refused when it is not recorded, points outside or changed."""
        path = member(self.dir, name)
        if path is None or name not in self.hashes:
            raise EdgeslimError(
                f"{self.dir / name}: not a file the export recorded (or it points outside the run)",
                "rerun `edgeslim pipeline`; deploy ships only what the export step wrote",
            )
        if not path.is_file() or sha256_file(path) != self.hashes[name]:
            raise EdgeslimError(
                f"{path}: missing or changed since the export wrote it (sha256 differs from step.json)",
                "rerun `edgeslim pipeline` to rebuild it (a changed export is redone)",
            )
        return path

    def copy(self, name: str, staging: Path, as_name: str | None = None) -> Path:
        target = staging / (as_name or name)
        target.parent.mkdir(parents=True, exist_ok=True)
        source = self.path(name)
        try:
            shutil.copyfile(source, target)  # contents only: no modes or owners of the build machine
        except OSError as exc:  # name the file being written (a full disk), not the one read
            raise OSError(exc.errno, exc.strerror, str(target)) from None
        return target


def _replace_contents(out: Path, staging: Path) -> None:
    """Move the staged bundle into ``out``; an earlier bundle's files (its marker's list) go first."""
    files = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
    mark = read_mark(out) or {}
    earlier = mark.get("files") if isinstance(mark.get("files"), list) else []
    for name in earlier:
        path = member(out, name)
        if path is not None and path.is_file() and name not in (MARK, LOCK_NAME):
            path.unlink()
    for folder in _folders_of(out, earlier):  # only the folders the earlier bundle's files were in
        with contextlib.suppress(OSError):
            folder.rmdir()  # when that left them empty
    mode = 0o777 & ~_umask()
    for name in files:
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / name, target)
        os.chmod(target, mode & 0o666 | (0o111 & mode if name.endswith(".py") else 0))
    for folder in [out, *_folders_of(out, files)]:
        os.chmod(folder, mode)  # mkdtemp's 0700 would hide the bundle from the device's other users
    write_json(out / MARK, {**mark, "kind": "bundle", "edgeslim": __version__, "files": files})


def _folders_of(out: Path, names: list[str]) -> list[Path]:
    """The folders below ``out`` that hold these files (inside ``out`` only), deepest first."""
    folders = {
        out / parent
        for name in names
        if isinstance(name, str) and member(out, name) is not None
        for parent in Path(name).parents
        if parent != Path(".")
    }
    return sorted(folders, key=lambda p: len(p.parts), reverse=True)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _python_bundle(
    shipped: ShippedFiles, suffixes: tuple[str, ...], staging: Path, target: str, artifact: str | None
) -> None:
    chosen = _choose_artifact(shipped, suffixes, artifact)
    info = _checked_sidecar(shipped, chosen)
    shipped.copy(chosen, staging, Path(chosen).name)
    write_json(staging / f"{Path(chosen).name}.json", _portable(info))
    # coral: run.py prefers the Edge TPU-compiled file under this name, shipped when the export made it.
    stem = Path(chosen).stem
    edgetpu_name = f"{stem}_edgetpu.tflite" if target == "coral" else ""
    compiled = _compiled_edgetpu_file(shipped, chosen, info) if target == "coral" else None
    if compiled is not None:
        copied = shipped.copy(compiled, staging, edgetpu_name)
        compiled_info = _compiled_sidecar(copied, Path(chosen), info, edgetpu_name)
        write_json(staging / f"{edgetpu_name}.json", _portable(compiled_info))
    (staging / "requirements.txt").write_text(f"edgeslim=={__version__}\n")
    values = {
        "__MODEL_FILE__": Path(chosen).name,
        "__EDGETPU_FILE__": edgetpu_name,
        "__EDGETPU_STATUS__": _edgetpu_status(Path(chosen).name, edgetpu_name, compiled is not None),
        "__INPUT_SHAPE__": str((info.get("inputs") or [{}])[0].get("shape", "?")),
        "__CLASSES__": ", ".join(map(str, info.get("class_names", []))) or "see the sidecar",
    }
    (staging / "run.py").write_text(_fill((TEMPLATES / "run.py").read_text(), values))
    (staging / "README.md").write_text(_fill((TEMPLATES / f"README.{target}.md").read_text(), values))


def _checked_sidecar(shipped: ShippedFiles, name: str) -> dict[str, Any]:
    """The artifact's sidecar, checked as the device's runtime checks it (fields, and the sha256 of the
    very bytes recorded), and refused when it vouches for no hash at all."""
    from edgeslim.runtime.sidecar import read_sidecar

    path = shipped.path(f"{name}.json")  # recorded by the export and unchanged since
    artifact = shipped.path(name)
    info = read_sidecar(artifact, artifact.read_bytes())
    if info is None or info.get("sha256") is None:
        raise EdgeslimError(
            f"{path}: records no sha256 of {artifact.name}", "rerun `edgeslim pipeline` to rebuild the export"
        )
    return info


def _portable(value: Any) -> Any:
    """The sidecar as shipped: absolute paths of the building machine become bare file names."""
    if isinstance(value, dict):
        return {k: _portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable(v) for v in value]
    if isinstance(value, str) and os.path.isabs(value) and "\n" not in value:
        return Path(value).name
    return value


def _fill(template: str, values: dict[str, str]) -> str:
    for placeholder, value in values.items():
        template = template.replace(placeholder, value)
    return template


def _compiled_edgetpu_file(shipped: ShippedFiles, chosen: str, info: dict[str, Any]) -> str | None:
    """The ``*_edgetpu.tflite`` edgetpu_compiler wrote beside ``chosen``, when its sidecar records one."""
    compiler = (info.get("edgetpu") or {}).get("compiler") or {}
    recorded = compiler.get("compiled_path")
    if not recorded:
        return None  # the export ran without edgetpu_compiler on PATH, or the compiler failed
    name = str(Path(chosen).parent / Path(str(recorded)).name)  # beside the artifact, wherever the run moved
    if name not in shipped.hashes:
        raise EdgeslimError(
            f"{shipped.dir / name}: missing, but the sidecar of {chosen} records it as the Edge TPU-compiled "
            "file",
            "rerun the edgetpu export with edgetpu_compiler on PATH (delete exports/edgetpu/step.json first)",
        )
    return name


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


def _choose_artifact(shipped: ShippedFiles, suffixes: tuple[str, ...], artifact: str | None) -> str:
    candidates = [name for name in shipped.artifacts if member(shipped.dir, name) is not None]
    if artifact is not None:
        match = [c for c in candidates if Path(c).name == artifact]
        if not match:
            raise EdgeslimError(
                f"no artifact {artifact!r} in {shipped.dir}",
                f"choose one of {[Path(c).name for c in candidates]}",
            )
        return match[0]
    for suffix in suffixes:
        passed = [c for c in candidates if Path(c).suffix == suffix and _passed(shipped.dir / f"{c}.json")]
        if passed:
            return sorted(passed, key=lambda c: (shipped.dir / c).stat().st_size)[0]  # smallest verified
    raise EdgeslimError(
        f"{shipped.dir}: no verified {'/'.join(suffixes)} artifact to deploy",
        "look at the report's failures, fix them and rerun the pipeline",
    )


def _passed(sidecar: Path) -> bool:
    try:
        info = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return False
    verification = info.get("verification") if isinstance(info, dict) else None
    return isinstance(verification, dict) and verification.get("passed") is True


def _mcu_bundle(shipped: ShippedFiles, staging: Path) -> None:
    packages = sorted({Path(name).parent for name in shipped.hashes if Path(name).name == "model_data.cc"})
    if not packages:
        raise EdgeslimError(
            f"{shipped.dir}: the mcu export wrote no C package", "rerun the pipeline's mcu export"
        )
    package = packages[0]
    for name in sorted(shipped.hashes):
        if Path(name).is_relative_to(package):
            target = staging / Path(name).relative_to(package)
            shipped.copy(name, target.parent, target.name)
            if target.suffix in (".md", ".txt", ".h", ".cc", ".c", ".cmake") or target.name == "Makefile":
                _strip_paths(target, shipped.dir)


def _strip_paths(path: Path, export_dir: Path) -> None:
    """Text the export wrote may name the build machine's folders: the device needs names relative to it."""
    text = path.read_text(errors="surrogateescape")
    for root in sorted({str(export_dir.resolve()), str(export_dir.absolute())}, key=len, reverse=True):
        text = text.replace(root + "/", "").replace(root, ".")
    path.write_text(text, errors="surrogateescape")
