"""TFLite Micro as a static library for one Cortex-M core, built once from the pinned sources and cached.

One library per core and kernel set (``edgeslim.tflm_kernels``: CMSIS-NN by default, or the reference
kernels).
The cache lives outside the repository: ``$EDGESLIM_CACHE/tflm/<key>/`` (default
``~/.cache/edgeslim/tflm/<key>/``). The key names the core and kernel set and hashes the archives'
checksums, the make arguments, the cross compiler's version and ``RECIPE``, so any change builds a new
library beside the old. A lock file keeps two processes from building the same key at once; the build
happens in a temporary folder and is published by one rename, so a reader sees a whole library or none.

Build steps (as verified in shared/vendor/tflm/README.md): unpack tflite-micro and its four dependencies
(plus CMSIS-NN, CMSIS and Cortex_DFP for the CMSIS-NN kernels) into its ``downloads/`` folder, apply
TFLite Micro's own patches to flatbuffers and kissfft, leave ``pigweed/`` empty and point
``gcc_embedded/bin`` at the system's cross compiler so the Makefile downloads nothing, then ``make ...
microlite``. Only the library and the headers are kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from edgeslim.errors import EdgeslimError, MissingTool
from edgeslim.export.firmware.toolchain import (
    APT_HINT,
    Toolchain,
    find_sources,
    find_toolchain,
    python_with_pillow_and_numpy,
    sources_reason,
)
from edgeslim.tflm_kernels import DEFAULT_KERNELS, EXTRA_ARCHIVES, KERNELS, kernel_make_args

RECIPE = 1  # bump when the steps below change what is built
CACHE_ENV = "EDGESLIM_CACHE"
LIBRARY_NAME = "libtensorflow-microlite.a"
MAKEFILE = "tensorflow/lite/micro/tools/make/Makefile"
DOWNLOADS = Path("tensorflow/lite/micro/tools/make/downloads")
DEPENDENCIES = ("flatbuffers", "gemmlowp", "ruy", "kissfft")
HEADER_SUFFIXES = (".h", ".hpp")
BUILD_TIMEOUT_S = 3 * 3600


# The QEMU target TFLite Micro itself tests on builds with the soft-float ABI, which turns the
# Cortex-M55's Helium (MVE) off: that core builds as the generic Cortex-M target with integer MVE and
# the softfp ABI, whose calls pass arguments as soft float does, so the harness links with it.
TARGETS = {"cortex-m55": ("cortex_m_generic", "cortex-m55+nofp")}


def make_args(cpu: str, kernels: str = DEFAULT_KERNELS) -> list[str]:
    target, arch = TARGETS.get(cpu, ("cortex_m_qemu", cpu))
    # release strips the error strings
    return [f"TARGET={target}", f"TARGET_ARCH={arch}", "BUILD_TYPE=release", *kernel_make_args(kernels)]


@dataclass(frozen=True)
class TflmLibrary:
    root: Path
    cpu: str
    kernels: str
    key: str

    @property
    def archive(self) -> Path:
        return self.root / "lib" / LIBRARY_NAME

    @property
    def include_dirs(self) -> list[Path]:
        base = self.root / "include"
        downloads = base / DOWNLOADS
        return [
            base,
            downloads,
            downloads / "flatbuffers" / "include",
            downloads / "gemmlowp",
            downloads / "ruy",
        ]

    @property
    def info(self) -> dict:
        return json.loads((self.root / "build.json").read_text(encoding="utf-8"))


def cache_root() -> Path:
    given = os.environ.get(CACHE_ENV)
    base = (
        Path(given)
        if given
        else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgeslim"
    )
    return base / "tflm"


def _archives(sources: Path) -> dict[str, str]:
    """Archive name -> sha256, each checked against SHA256SUMS (a changed archive is refused, not built)."""
    listed: dict[str, str] = {}
    for line in (sources / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            listed[name.strip().lstrip("*")] = digest
    for name, digest in listed.items():
        actual = (
            hashlib.sha256((sources / name).read_bytes()).hexdigest() if (sources / name).is_file() else None
        )
        if actual != digest:
            raise EdgeslimError(
                f"{sources / name}: {'missing' if actual is None else 'does not match SHA256SUMS'}",
                "restore the pinned TFLite Micro archives (shared/vendor/tflm)",
            )
    return listed


def _archive_for(listed: dict[str, str], stem: str) -> str:
    names = [name for name in listed if name.startswith(f"{stem}-")]
    if len(names) != 1:
        raise EdgeslimError(f"expected one {stem}-*.tar.xz in SHA256SUMS, found {names}")
    return names[0]


def library_key(listed: dict[str, str], cpu: str, kernels: str, toolchain: Toolchain) -> str:
    recipe = {
        "recipe": RECIPE,
        "cpu": cpu,
        "make": make_args(cpu, kernels),
        "gcc": toolchain.gcc_version,
        "sources": listed,
    }
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    return f"{cpu}-{kernels}-{digest}"


def cached_library(cpu: str, kernels: str = DEFAULT_KERNELS) -> TflmLibrary | None:
    """The published library for ``cpu`` and ``kernels`` if it is already built, else None (never builds)."""
    toolchain, _ = find_toolchain()
    sources = find_sources()
    if toolchain is None or sources is None:
        return None
    key = library_key(_archives(sources), cpu, kernels, toolchain)
    root = cache_root() / key
    return TflmLibrary(root, cpu, kernels, key) if (root / "build.json").is_file() else None


def ensure_library(
    cpu: str, kernels: str = DEFAULT_KERNELS, jobs: int = 2, log: Callable[[str], None] | None = None
) -> TflmLibrary:
    """The library for ``cpu`` with ``kernels``, built first if the cache has none (minutes; once per key)."""
    toolchain, reason = find_toolchain()
    if toolchain is None:
        raise MissingTool(reason, APT_HINT)
    sources = find_sources()
    if sources is None:
        raise MissingTool(sources_reason(), "or run from a checkout with ../shared/vendor/tflm")
    listed = _archives(sources)
    key = library_key(listed, cpu, kernels, toolchain)
    root = cache_root() / key
    if (root / "build.json").is_file():
        return TflmLibrary(root, cpu, kernels, key)
    root.parent.mkdir(parents=True, exist_ok=True)
    with _locked(root.parent / f"{key}.lock", log):
        if not (root / "build.json").is_file():  # another process may have built it while we waited
            _build(sources, listed, cpu, kernels, toolchain, root, jobs, log or (lambda _: None))
    return TflmLibrary(root, cpu, kernels, key)


@contextlib.contextmanager
def _locked(path: Path, log: Callable[[str], None] | None) -> Iterator[None]:
    import fcntl

    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if log:
                log(f"waiting for another process building {path.stem}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(
    sources: Path,
    listed: dict[str, str],
    cpu: str,
    kernels: str,
    toolchain: Toolchain,
    root: Path,
    jobs: int,
    log: Callable[[str], None],
) -> None:
    if shutil.which("make") is None:
        raise MissingTool("building TFLite Micro needs make", "apt-get install make")
    python = python_with_pillow_and_numpy()
    if python is None:
        raise MissingTool(
            "building TFLite Micro needs a python3 with Pillow and numpy (its Makefile runs scripts)",
            "apt-get install python3-pil python3-numpy, or pip install pillow numpy",
        )
    # Under the lock no one else builds this key: folders left by a killed build are stale.
    for stale in [*root.parent.glob(f".build-{root.name}-*"), *root.parent.glob(f".publish-{root.name}-*")]:
        shutil.rmtree(stale, ignore_errors=True)
    work = root.parent / f".build-{root.name}-{os.getpid()}"
    publish = root.parent / f".publish-{root.name}-{os.getpid()}"
    started = time.perf_counter()
    try:
        tree = _unpack(sources, listed, work, kernels, toolchain)
        shim = work / "bin"
        shim.mkdir()
        # A script, not a symlink: a venv's python finds its site-packages only when started by its own path.
        (shim / "python3").write_text(f'#!/bin/sh\nexec "{python}" "$@"\n', encoding="utf-8")
        (shim / "python3").chmod(0o755)
        env = dict(os.environ, PATH=f"{shim}{os.pathsep}{os.environ.get('PATH', '')}")
        what = f"TFLite Micro with {KERNELS[kernels]} for {cpu}"
        log(f"building {what} (-j{jobs}), once; about 5-10 minutes on 2 cores")
        cmd = ["make", "-f", MAKEFILE, *make_args(cpu, kernels), f"-j{jobs}", "microlite"]
        with open(work / "build.log", "w") as out:
            made = subprocess.run(
                cmd, cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S
            )
        if made.returncode != 0:
            tail = (work / "build.log").read_text(errors="replace").strip().splitlines()[-5:]
            failed_log = root.parent / f"{root.name}.failed.log"
            shutil.copyfile(work / "build.log", failed_log)
            raise EdgeslimError(
                f"building {what} failed: {' | '.join(tail)[-500:]}",
                f"the full log is {failed_log}",
            )
        [library] = sorted(tree.glob(f"gen/*/lib/{LIBRARY_NAME}"))
        (publish / "lib").mkdir(parents=True)
        shutil.copy2(library, publish / "lib" / LIBRARY_NAME)
        headers = _copy_headers(tree, publish / "include")
        info = {
            "key": root.name,
            "cpu": cpu,
            "kernels": kernels,
            "make": make_args(cpu, kernels),
            "gcc": toolchain.gcc_version,
            "sources": listed,
            "recipe": RECIPE,
            "build_seconds": round(time.perf_counter() - started, 1),
            "jobs": jobs,
            "library_bytes": (publish / "lib" / LIBRARY_NAME).stat().st_size,
            "headers": headers,
            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (publish / "build.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        os.replace(publish, root)  # the one step that makes it visible
        (root.parent / f"{root.name}.failed.log").unlink(missing_ok=True)  # an earlier attempt's
        log(f"{what} built in {info['build_seconds']:.0f} s: {root}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(publish, ignore_errors=True)


def _unpack(sources: Path, listed: dict[str, str], work: Path, kernels: str, toolchain: Toolchain) -> Path:
    work.mkdir(parents=True)
    with tarfile.open(sources / _archive_for(listed, "tflite-micro")) as archive:
        archive.extractall(work, filter="data")
    tree = work / "tflite-micro"
    downloads = tree / DOWNLOADS
    downloads.mkdir(parents=True, exist_ok=True)
    for name in DEPENDENCIES:
        with tarfile.open(sources / _archive_for(listed, name)) as archive:
            archive.extractall(downloads, filter="data")
    for name, folder in EXTRA_ARCHIVES[kernels].items():
        with tarfile.open(sources / _archive_for(listed, name)) as archive:
            archive.extractall(downloads / folder, filter="data")
    for stray in [
        *downloads.joinpath("flatbuffers").rglob("BUILD"),
        *downloads.joinpath("flatbuffers").rglob("BUILD.bazel"),
    ]:
        stray.unlink()
    _apply_patch(downloads / "flatbuffers", downloads.parent / "flatbuffers.patch")
    _apply_patch(downloads / "kissfft", tree / "third_party" / "kissfft" / "kissfft.patch")
    (downloads / "pigweed").mkdir()  # the library does not need it; an existing folder skips a git clone
    gcc_bin = downloads / "gcc_embedded" / "bin"  # an existing folder stops the Makefile's GCC download
    gcc_bin.mkdir(parents=True)
    tool_dir = Path(toolchain.gcc).parent
    for tool in tool_dir.glob("arm-none-eabi-*"):
        (gcc_bin / tool.name).symlink_to(tool)
    return tree


def _apply_patch(folder: Path, patch: Path) -> None:
    git = shutil.which("git")
    if git is not None:
        # Outside any repository: a ceiling stops git from finding one above the cache folder.
        env = dict(os.environ, GIT_CEILING_DIRECTORIES=str(folder.parent))
        cmd = [git, "apply", "--ignore-whitespace", str(patch)]
    elif shutil.which("patch") is not None:
        env, cmd = dict(os.environ), ["patch", "-p1", "--ignore-whitespace", "-i", str(patch)]
    else:
        raise MissingTool("applying TFLite Micro's patches needs git or patch", "apt-get install git")
    done = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise EdgeslimError(f"patching {folder.name} with {patch.name} failed: {done.stderr.strip()[:300]}")


def _copy_headers(tree: Path, dest: Path) -> int:
    count = 0
    for path in tree.rglob("*"):
        if (
            path.suffix in HEADER_SUFFIXES
            and path.is_file()
            and "gen" not in path.relative_to(tree).parts[:1]
        ):
            target = dest / path.relative_to(tree)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            count += 1
    return count
