"""A Raspberry Pi OS 64-bit (Debian bookworm arm64) Python 3.11 that runs here under qemu-aarch64-static.

Built once and cached outside the repository (``~/.cache/edgeslim``, or ``$EDGESLIM_CACHE``), keyed by
the exact versions it holds: the Debian packages apt resolves, and the aarch64 wheels pip resolves
(resolved versions are reused for a day; offline, the last ones). Every build goes to a temporary name
and is renamed into place under a lock, so a killed build is never used. Needs qemu-user-static,
apt-get and dpkg-deb (Debian/Ubuntu), the Debian keyring, and the Debian and PyPI indexes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

RECIPE = 1  # bump when the way a root is built changes: every cached root is then rebuilt
PRUNE_AFTER_DAYS = 30
RESOLVE_TTL_S = 24 * 3600  # how long resolved versions are reused before apt and pip are asked again
DEBIAN_MIRRORS = {
    "http://deb.debian.org/debian": ("bookworm", "bookworm-updates"),
    "http://deb.debian.org/debian-security": ("bookworm-security",),
}
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# python3.11 does not pull in libstdc++6, which numpy and onnxruntime need.
DEBIAN_PACKAGES = ("python3.11", "libstdc++6")
PYTHON = "usr/bin/python3.11"
SHIM = "usr/bin/python3-emulated"
# Raspberry Pi OS 64-bit is glibc 2.36; ai-edge-litert's aarch64 wheel is tagged manylinux_2_27 only, so
# every manylinux level up to 2.36 is listed (manylinux2014 alone does not find it).
PIP_PLATFORMS = [f"manylinux_2_{minor}_aarch64" for minor in range(17, 37)] + ["linux_aarch64"]
PIP_TARGET = ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", "--only-binary=:all:"]
# What the emulated CPU reports in /proc/cpuinfo. onnxruntime's cpuinfo reads it and segfaults on the
# host's x86 one; qemu's -L serves ROOT/proc/cpuinfo first. The instruction set itself is QEMU_CPU's.
CPUS = {
    "cortex-a53": ("0xd03", "fp asimd evtstrm crc32 cpuid", "Raspberry Pi 3 Model B Plus Rev 1.3"),
    "cortex-a72": ("0xd08", "fp asimd evtstrm crc32 cpuid", "Raspberry Pi 4 Model B Rev 1.5"),
    "cortex-a76": (
        "0xd0b",
        "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp",
        "Raspberry Pi 5 Model B Rev 1.0",
    ),
}


Log = Callable[[str], None]


class Unavailable(Exception):
    """The emulated Pi cannot be built here: a tool is missing, or the package indexes are unreachable."""


def cache_root() -> Path:
    if os.environ.get("EDGESLIM_CACHE"):
        return Path(os.environ["EDGESLIM_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgeslim"


def check_tools() -> str:
    """The qemu-aarch64-static path; Unavailable names the Debian packages to install otherwise."""
    missing = [tool for tool in ("qemu-aarch64-static", "apt-get", "dpkg-deb") if shutil.which(tool) is None]
    if missing or not Path(DEBIAN_KEYRING).is_file():
        raise Unavailable(
            f"missing {missing or [DEBIAN_KEYRING]}: apt-get install qemu-user-static debian-archive-keyring"
        )
    return str(shutil.which("qemu-aarch64-static"))


@contextlib.contextmanager
def locked(cache: Path) -> Iterator[None]:
    """One builder at a time per cache (two test runs, or CI jobs sharing a home folder)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "pi.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def ensure_root(
    cache: Path, cpus: list[str], log: Log, refresh: bool = False
) -> tuple[dict[str, Path], dict[str, object]]:
    """The emulated Python per CPU ({cpu: shim}) and what the root holds, building what is missing.

    Call it inside ``locked(cache)``: it shares apt's folders with any other builder. The versions apt
    resolves are reused for a day (``refresh`` asks apt again now).
    """
    qemu = check_tools()
    unknown = [cpu for cpu in cpus if cpu not in CPUS]
    if unknown:
        raise ValueError(f"unknown CPU {unknown}: choose from {sorted(CPUS)}")
    apt_dir = cache / "pi-root" / "apt"
    recipe = cache / "pi-root" / f"resolved-{_digest([RECIPE, *DEBIAN_MIRRORS, *DEBIAN_PACKAGES])}.json"
    debs = _resolved(recipe, refresh, lambda: _resolve_debs(apt_dir, log), log)
    if not debs:
        raise Unavailable("the Debian package index is unreachable and no Pi root is cached yet")
    entry = cache / "pi-root" / _digest([RECIPE, *debs])
    if not (entry / "manifest.json").is_file():
        _build_root(apt_dir, entry, debs, log)
    shims = {cpu: _cpu_view(entry, cpu, qemu) for cpu in cpus}
    _mark_used_and_prune(entry)
    return shims, json.loads((entry / "manifest.json").read_text())


def ensure_site(
    cache: Path, requirements: list[str], log: Log, refresh: bool = False
) -> tuple[Path, dict[str, str]]:
    """The aarch64 wheels of ``requirements`` installed with ``pip install --target``; {name: version}.

    The versions pip resolves are reused for a day (``refresh`` asks PyPI again now).
    """
    base = cache / "pi-site"
    base.mkdir(parents=True, exist_ok=True)
    recipe = base / f"resolved-{_digest([RECIPE, *PIP_PLATFORMS, *requirements])}.json"
    pins = _resolved(recipe, refresh, lambda: _resolve_wheels(requirements, log), log)
    if not pins:
        raise Unavailable("PyPI is unreachable and no aarch64 site-packages are cached yet")
    entry = base / _digest([RECIPE, *PIP_PLATFORMS, *pins])
    if not (entry / "manifest.json").is_file():
        log(f"installing {len(pins)} aarch64 wheels into {entry}")
        staging = _staging(entry)
        _pip(["install", "--quiet", "--no-deps", "--target", str(staging / "site"), *_platform_args(), *pins])
        (staging / "manifest.json").write_text(json.dumps(dict(p.split("==") for p in pins), indent=1))
        staging.rename(entry)
    _mark_used_and_prune(entry)
    return entry / "site", json.loads((entry / "manifest.json").read_text())


def install_wheel(wheel: Path, target: Path) -> None:
    """The project's own wheel, without its dependencies (``ensure_site`` holds those)."""
    _pip(["install", "--quiet", "--no-deps", "--target", str(target), *_platform_args(), str(wheel)])


def _resolve_debs(apt_dir: Path, log: Log) -> list[str]:
    """The .deb file names (name_version_arch) of the packages and their dependencies; [] offline."""
    conf = _apt_config(apt_dir)
    for leftover in (apt_dir / "archives").glob("*.deb"):  # --print-uris omits files already downloaded
        leftover.unlink()
    env = {**os.environ, "APT_CONFIG": str(conf), "DEBIAN_FRONTEND": "noninteractive"}
    update = subprocess.run(["apt-get", "-qq", "update"], env=env, capture_output=True, text=True)
    if update.returncode != 0:
        log(f"apt-get update failed ({update.stderr.strip()[-300:]}); using a cached root if there is one")
        return []
    done = subprocess.run(
        ["apt-get", "-qq", "-y", "install", "--download-only", "--print-uris", *DEBIAN_PACKAGES],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise Unavailable(f"apt cannot resolve {DEBIAN_PACKAGES} for arm64: {done.stderr.strip()[-300:]}")
    # Lines read: 'URL' FILE SIZE SHA256:...
    return sorted(line.split()[1] for line in done.stdout.splitlines() if line.startswith("'"))


def _build_root(apt_dir: Path, entry: Path, debs: list[str], log: Log) -> None:
    started = time.monotonic()
    log(f"building the Pi root {entry.name}: {len(debs)} Debian bookworm arm64 packages")
    env = {**os.environ, "APT_CONFIG": str(_apt_config(apt_dir)), "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "-qq", "update"], env=env, capture_output=True)  # lists may be gone
    done = subprocess.run(
        ["apt-get", "-qq", "-y", "install", "--download-only", *DEBIAN_PACKAGES],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise Unavailable(f"apt cannot download {DEBIAN_PACKAGES}: {done.stderr.strip()[-300:]}")
    staging = _staging(entry)
    base = staging / "base"
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", str(apt_dir / "archives" / deb), str(base)], check=True)
    _relative_links(base)
    for deb in debs:
        (apt_dir / "archives" / deb).unlink()
    versions = {deb.split("_")[0]: deb.split("_")[1].replace("%3a", ":") for deb in debs}
    manifest = {"suite": "bookworm", "arch": "arm64", "debs": debs, "versions": versions}
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=1))
    staging.rename(entry)
    log(f"built the Pi root in {time.monotonic() - started:.1f} s")


def _cpu_view(entry: Path, cpu: str, qemu: str) -> Path:
    """ROOT for one CPU: the base hard-linked (no copy), its own /proc/cpuinfo and the python shim."""
    view = entry / cpu
    if not (view / SHIM).is_file():
        staging = _staging(view)
        shutil.copytree(entry / "base", staging, symlinks=True, copy_function=os.link, dirs_exist_ok=True)
        part, features, model = CPUS[cpu]
        cores = "\n".join(
            f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
            f"CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: {part}\nCPU revision\t: 1\n"
            for i in range(4)
        )
        (staging / "proc").mkdir()
        (staging / "proc" / "cpuinfo").write_text(f"{cores}\nRevision\t: 0000\nModel\t\t: {model}\n")
        # sys.executable is this shim, so child processes (edgeslim's load probe) are emulated too; the
        # interpreter finds its prefix from the shim's own path, so no host site-packages leak in.
        shim = view / SHIM
        text = f'#!/bin/sh\nexec {qemu} -cpu {cpu} -L {view} -0 {shim} {view / PYTHON} "$@"\n'
        (staging / SHIM).write_text(text)
        (staging / SHIM).chmod(0o755)
        staging.rename(view)
    return view / SHIM


def _relative_links(root: Path) -> None:
    """An absolute link inside the root (sitecustomize.py -> /etc/...) would read the host's file."""
    for link in [p for p in root.rglob("*") if p.is_symlink()]:
        target = os.readlink(link)
        if target.startswith("/"):
            link.unlink()
            link.symlink_to(os.path.relpath(root / target.lstrip("/"), link.parent))


def _apt_config(apt_dir: Path) -> Path:
    """A private apt for arm64: its own sources, lists, archives and empty status; no host settings."""
    for sub in ("lists/partial", "archives/partial", "parts", "sources.list.d", "preferences.d", "log"):
        (apt_dir / sub).mkdir(parents=True, exist_ok=True)
    (apt_dir / "status").touch()
    (apt_dir / "empty.conf").touch()
    sources = [
        f"deb [arch=arm64 signed-by={DEBIAN_KEYRING}] {url} {suite} main"
        for url, suites in DEBIAN_MIRRORS.items()
        for suite in suites
    ]
    (apt_dir / "sources.list").write_text("\n".join(sources) + "\n")
    settings = {
        "APT::Architecture": "arm64",
        "APT::Architectures": "arm64",
        "APT::Install-Recommends": "false",
        "APT::Sandbox::User": "root",
        "Acquire::Languages": "none",
        # A container's clock may be off; the Release signatures are still checked.
        "Acquire::Check-Valid-Until": "false",
        "Acquire::Check-Date": "false",
        "Debug::NoLocking": "true",  # our own lock (pi.lock) serializes builders
        "Dir::Etc::main": apt_dir / "empty.conf",
        "Dir::Etc::Parts": apt_dir / "parts",
        "Dir::Etc::SourceList": apt_dir / "sources.list",
        "Dir::Etc::SourceParts": apt_dir / "sources.list.d",
        "Dir::Etc::Preferences": apt_dir / "preferences",
        "Dir::Etc::PreferencesParts": apt_dir / "preferences.d",
        "Dir::State": apt_dir,
        "Dir::State::Lists": apt_dir / "lists",
        "Dir::State::status": apt_dir / "status",
        "Dir::Cache": apt_dir,
        "Dir::Cache::archives": apt_dir / "archives",
        "Dir::Cache::pkgcache": "",
        "Dir::Cache::srcpkgcache": "",
        "Dir::Log": apt_dir / "log",
    }
    conf = apt_dir / "apt.conf"
    conf.write_text("".join(f'{key} "{value}";\n' for key, value in settings.items()))
    return conf


def _resolve_wheels(requirements: list[str], log: Log) -> list[str]:
    """``name==version`` of every aarch64 wheel the requirements need; [] when PyPI is unreachable."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        args = ["install", "--quiet", "--dry-run", "--ignore-installed", "--report", str(report)]
        done = _pip([*args, "--target", str(Path(tmp) / "t"), *_platform_args(), *requirements], check=False)
        if done.returncode != 0:
            log(
                f"pip could not resolve the aarch64 wheels ({done.stderr.strip()[-300:]}); using a cached set"
            )
            return []
        items = json.loads(report.read_text())["install"]
    return sorted(f"{i['metadata']['name']}=={i['metadata']['version']}" for i in items)


def _platform_args() -> list[str]:
    return [arg for platform in PIP_PLATFORMS for arg in ("--platform", platform)] + PIP_TARGET


def _pip(args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, env=env)
    if check and done.returncode != 0:
        raise Unavailable(f"pip {args[0]} failed: {done.stderr.strip()[-500:]}")
    return done


def _staging(final: Path) -> Path:
    """A fresh temporary folder beside ``final`` (leftovers of a killed build are removed first)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))


def _mark_used_and_prune(entry: Path) -> None:
    """Entries are keyed by versions, so new releases add entries: drop those unused for a while."""
    (entry / "manifest.json").touch()
    cutoff = time.time() - PRUNE_AFTER_DAYS * 86400
    for other in entry.parent.glob("*"):
        manifest = other / "manifest.json"
        if other != entry and manifest.is_file() and manifest.stat().st_mtime < cutoff:
            shutil.rmtree(other, ignore_errors=True)


def _resolved(record: Path, refresh: bool, resolve: Callable[[], list[str]], log: Log) -> list[str]:
    """The resolved versions: recorded ones younger than a day, else resolve (offline: the last record)."""
    fresh = record.is_file() and time.time() - record.stat().st_mtime < RESOLVE_TTL_S
    if fresh and not refresh:
        return json.loads(record.read_text())
    found = resolve()
    if found:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(found))
        return found
    if record.is_file():
        log(f"using the versions resolved on {time.ctime(record.stat().st_mtime)} ({record.name})")
        return json.loads(record.read_text())
    return []


def _digest(parts: list[object]) -> str:
    return hashlib.sha256("\n".join(map(str, parts)).encode()).hexdigest()[:16]
