"""Run a Raspberry Pi bundle's README commands on an emulated Raspberry Pi OS and compare with this host.

    python tools/pi_emulation.py --run RUN_DIR [--cpu cortex-a72] [--cpu cortex-a76] [--json REPORT]
    python tools/pi_emulation.py --bundle DIR [--bundle DIR] --sample X.npy --images DIR [--cpu ...]

``--run`` makes an rpi bundle (``edgeslim deploy --target rpi``) for each artifact of the run's cpu
export (int8 .tflite and .onnx), a ``sample.npy`` of raw test inputs and an ``images/test/<class>/``
folder of PNGs from the run's dataset. The commands are the ones in the bundle's README, nothing else:
``pip install -r requirements.txt`` becomes ``pip install --target --platform`` of this checkout's wheel
and its declared base dependencies for aarch64; ``python run.py ...`` and ``edgeslim ...`` run under
qemu-aarch64-static (user mode) on Debian bookworm arm64's python3.11 (Raspberry Pi OS 64-bit) as a
Pi 4 (cortex-a72) and a Pi 5 (cortex-a76), and on this host. They must agree: the same classes, scores
within one quantization step of the output, the same accuracy. Emulated latency means nothing.

Exit code: 0 agreed, 1 a command failed or disagreed, 2 bad arguments, 3 this machine cannot emulate
(qemu-user-static, apt or the package indexes missing). The slow parts are cached (see pi_root.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pi_root  # noqa: E402 - a sibling module of this script, not a package

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CPUS = ["cortex-a72", "cortex-a76"]
SAMPLE_ROWS = 40
COMMAND_TIMEOUT_S = 300
SETUP_PREFIXES = ("python3 -m venv", ". ", "source ")  # a venv is what --target replaces
FLOAT_TOLERANCE = 1e-5  # an output without a quantization step: float arithmetic may differ this much


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.cpu = args.cpu or DEFAULT_CPUS
    started = time.monotonic()
    log = _log
    try:
        with tempfile.TemporaryDirectory(prefix="edgeslim-pi-") as tmp:
            work = Path(tmp)
            if args.run:
                bundles, sample, images = _from_run(Path(args.run), work)
            else:
                if not (args.bundle and args.sample and args.images):
                    raise BadInput("pass --run RUN_DIR, or --bundle DIR with --sample and --images")
                bundles, sample, images = [Path(b) for b in args.bundle], Path(args.sample), Path(args.images)
            phases: dict[str, float] = {}
            with _timed(phases, "wheel"):
                wheel = _build_wheel(work / "wheel")
            cache = Path(args.cache) if args.cache else pi_root.cache_root()
            with pi_root.locked(cache):
                with _timed(phases, "debian_root"):
                    shims, root = pi_root.ensure_root(cache, args.cpu, log, args.refresh)
                with _timed(phases, "aarch64_wheels"):
                    deps, versions = pi_root.ensure_site(cache, _base_requirements(wheel), log, args.refresh)
            with _timed(phases, "install_wheel"):
                pi_root.install_wheel(wheel, work / "site-edgeslim")
            machines = {cpu: _machine(shim) for cpu, shim in shims.items()}
            log(f"emulated: {machines}; setup {phases}")
            pythonpath = f"{work / 'site-edgeslim'}{os.pathsep}{deps}"
            with _timed(phases, "commands"):
                results = _check_bundles(bundles, sample, images, shims, pythonpath, work, wheel)
    except pi_root.Unavailable as exc:
        print(f"unavailable: {exc}", file=sys.stderr)
        return 3
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = {
        "cpus": args.cpu,
        "machines": machines,
        "debian": root["versions"],
        "wheels": versions,
        "bundles": results,
        "phase_seconds": phases,
        "seconds": round(time.monotonic() - started, 1),
        "passed": all(r["passed"] for r in results)
        and all(m.startswith("aarch64 3.11") for m in machines.values()),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    _summary(report)
    return 0 if report["passed"] else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a pipeline run directory with a cpu export")
    parser.add_argument("--bundle", action="append", help="an rpi bundle folder (repeatable)")
    parser.add_argument("--sample", help="with --bundle: the sample.npy of raw inputs the README names")
    parser.add_argument("--images", help="with --bundle: the images/ folder the README names")
    parser.add_argument("--cpu", action="append", choices=sorted(pi_root.CPUS), help="default: a72 and a76")
    parser.add_argument("--cache", help="cache folder (default: $EDGESLIM_CACHE or ~/.cache/edgeslim)")
    parser.add_argument("--json", help="write the full report here")
    parser.add_argument("--refresh", action="store_true", help="resolve versions now (else reused for a day)")
    return parser


class BadInput(Exception):
    """A bundle, run or README the check cannot use (exit code 2)."""


@contextlib.contextmanager
def _timed(phases: dict[str, float], name: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    phases[name] = round(time.monotonic() - started, 1)


def _machine(shim: Path) -> str:
    """What the emulated interpreter says it is: "aarch64 3.11.2" proves the commands ran emulated."""
    code = "import platform; print(platform.machine(), platform.python_version())"
    done = subprocess.run(
        [str(shim), "-c", code], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}
    )
    return done.stdout.strip() or f"failed: {done.stderr.strip()[-300:]}"


def _log(message: str) -> None:
    print(f"[pi] {message}", file=sys.stderr, flush=True)


def _from_run(run_dir: Path, work: Path) -> tuple[list[Path], Path, Path]:
    """An rpi bundle per cpu artifact of the run, and inputs from its dataset's test split."""
    import yaml
    from PIL import Image

    from edgeslim.data import FOLDER_OPTIONS, load_dataset
    from edgeslim.deploy import make_bundle

    marker = run_dir / "exports" / "cpu" / "step.json"
    if not marker.is_file():
        raise BadInput(f"{marker}: no cpu export in this run")
    artifacts = json.loads(marker.read_text())["artifacts"]
    bundles = [
        make_bundle(run_dir, "rpi", work / f"bundle-{Path(a).suffix[1:]}", artifact=a) for a in artifacts
    ]
    section = yaml.safe_load((run_dir / "config.yaml").read_text())["dataset"]
    options = {key: value for key, value in section.items() if key in FOLDER_OPTIONS}
    data = load_dataset(section["name"], section.get("data_dir"), section.get("seed", 0), **options)
    prep = data.preprocessing
    raw = (data.x_test[:SAMPLE_ROWS] - prep.offset) / prep.scale
    if np.issubdtype(np.dtype(prep.raw_dtype), np.integer):
        raw = np.round(raw).astype(prep.raw_dtype)
    sample = work / "sample.npy"
    np.save(sample, raw)
    images = work / "images"
    for i, (x, label) in enumerate(zip(data.x_test, data.y_test, strict=True)):
        pixels = np.clip(np.round(x * 255), 0, 255).astype(np.uint8)  # the folder dataset reads pixel / 255
        path = images / "test" / data.class_names[label] / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(path)
    return bundles, sample, images


def _build_wheel(out: Path) -> Path:
    """This checkout's wheel, built from a copy so the repository gets no build/ folder."""
    source = out.parent / "source"
    shutil.copytree(REPO / "edgeslim", source / "edgeslim", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    base = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(source)]
    done = subprocess.run([*base[:5], "--no-build-isolation", *base[5:]], capture_output=True, text=True)
    if done.returncode != 0:  # no setuptools in this Python: let pip fetch it
        done = subprocess.run(base, capture_output=True, text=True)
    if done.returncode != 0:
        raise pi_root.Unavailable(f"cannot build the edgeslim wheel: {done.stderr.strip()[-500:]}")
    return next(out.glob("edgeslim-*.whl"))


def _base_requirements(wheel: Path) -> list[str]:
    """The wheel's declared dependencies without extras: what `pip install edgeslim` brings."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(name).decode()
    prefix = "Requires-Dist: "
    lines = [line[len(prefix) :] for line in metadata.splitlines() if line.startswith(prefix)]
    return sorted(line.replace(" ", "") for line in lines if "extra ==" not in line)


def readme_commands(readme: Path) -> list[list[str]]:
    """The commands of the README's bash block that run on the Pi, after the install lines."""
    text = readme.read_text()
    if "```bash" not in text:
        raise BadInput(f"{readme}: no ```bash block of commands")
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    commands, installed = [], False
    for line in block.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith(SETUP_PREFIXES):
            continue
        if line == "pip install -r requirements.txt":
            installed = True  # done by pip_root.install_wheel + ensure_site, for aarch64
            continue
        words = shlex.split(line)
        if not installed or words[:2] != ["python", "run.py"] and words[0] != "edgeslim":
            raise BadInput(f"{readme}: the check does not know how to run {line!r}")
        commands.append(words)
    return commands


def _check_bundles(
    bundles: list[Path],
    sample: Path,
    images: Path,
    shims: dict[str, Path],
    pythonpath: str,
    work: Path,
    wheel: Path,
) -> list[dict[str, Any]]:
    """Each bundle's README commands on the host and on every emulated CPU, two runs at a time."""
    version = wheel.name.split("-")[1]
    jobs = []
    for bundle in bundles:
        requirement = (bundle / "requirements.txt").read_text().strip()
        if requirement != f"edgeslim=={version}":  # the wheel installed must be what the bundle asks for
            raise BadInput(f"{bundle}/requirements.txt says {requirement!r}, the wheel is {version}")
        commands = readme_commands(bundle / "README.md")
        jobs.append((bundle, "host", [sys.executable], dict(os.environ), commands))
        for cpu, shim in shims.items():
            env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "LANG": "C.UTF-8", "PYTHONPATH": pythonpath}
            jobs.append((bundle, cpu, [str(shim)], env, commands))

    def run(job: tuple[Path, str, list[str], dict[str, str], list[list[str]]]) -> dict[str, Any]:
        bundle, label, python, env, commands = job
        _log(f"{bundle.name}: {len(commands)} README commands on {label}")
        return _run_all(commands, python, bundle, sample, images, work / bundle.name / label, env)

    # qemu runs one thread per process: two at a time halve the wall time on a 2-core machine.
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        outcomes = list(pool.map(run, jobs))
    results = []
    for bundle in bundles:
        runs = {label: out for (b, label, *_), out in zip(jobs, outcomes, strict=True) if b == bundle}
        model = _model_file(bundle)
        step = _output_step(model)
        result: dict[str, Any] = {"bundle": str(bundle), "model": model.name, "step": step, "runs": runs}
        result["comparisons"] = {cpu: _compare(runs["host"], runs[cpu], step) for cpu in shims}
        result["passed"] = all(r["ok"] for r in runs.values()) and all(
            c["passed"] for c in result["comparisons"].values()
        )
        results.append(result)
    return results


def _model_file(bundle: Path) -> Path:
    models = [p for p in bundle.iterdir() if p.suffix in (".tflite", ".onnx")]
    if len(models) != 1:
        raise BadInput(f"{bundle}: expected one model file, found {[p.name for p in models]}")
    return models[0]


def _output_step(model: Path) -> float:
    """One quantization step of the model's first output: the tolerance for its scores."""
    sidecar = json.loads(Path(f"{model}.json").read_text())
    scale = (sidecar.get("outputs") or [{}])[0].get("scale")
    if scale:
        return float(scale)
    if model.suffix == ".onnx":  # QDQ files end in DequantizeLinear: its scale is the output's step
        import onnx
        from onnx import numpy_helper

        graph = onnx.load(str(model)).graph
        constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        producer = {out: node for node in graph.node for out in node.output}
        node = producer.get(graph.output[0].name)
        if node is not None and node.op_type == "DequantizeLinear" and node.input[1] in constants:
            return float(np.max(constants[node.input[1]]))
    return FLOAT_TOLERANCE


def _run_all(
    commands: list[list[str]],
    python: list[str],
    bundle: Path,
    sample: Path,
    images: Path,
    cwd: Path,
    env: dict,
) -> dict[str, Any]:
    """Every command in a fresh copy of the bundle holding the README's sample.npy and images/."""
    shutil.copytree(bundle, cwd)
    shutil.copy2(sample, cwd / "sample.npy")
    shutil.copytree(images, cwd / "images")
    outputs: dict[str, Any] = {"ok": True, "commands": []}
    for words in commands:
        argv = [*python, *words[1:]] if words[0] == "python" else [*python, "-m", "edgeslim", *words[1:]]
        started = time.monotonic()
        try:
            done = subprocess.run(
                argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S
            )
            code, stdout, stderr = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired:
            code, stdout, stderr = -1, "", f"timed out after {COMMAND_TIMEOUT_S} s"
        entry = {
            "command": shlex.join(words),
            "returncode": code,
            "seconds": round(time.monotonic() - started, 2),
        }
        try:
            entry["output"] = json.loads(stdout) if code == 0 else None
        except ValueError:
            entry["output"] = None
        if code != 0 or entry["output"] is None:
            entry["stderr"] = stderr.strip()[-1500:]
            outputs["ok"] = False
        outputs["commands"].append(entry)
    return outputs


def _compare(host: dict[str, Any], pi: dict[str, Any], step: float) -> dict[str, Any]:
    """Same classes, scores within one step, same accuracy; bench must have produced figures."""
    found: dict[str, Any] = {"passed": host["ok"] and pi["ok"]}
    if not found["passed"]:
        return found
    for mine, theirs in zip(host["commands"], pi["commands"], strict=True):
        a, b = mine["output"], theirs["output"]
        if "predictions" in a:
            classes_a = [p["class"] for p in a["predictions"]]
            classes_b = [p["class"] for p in b["predictions"]]
            scores_a = np.array([p["scores"] for p in a["predictions"]])
            scores_b = np.array([p["scores"] for p in b["predictions"]])
            diff = float(np.max(np.abs(scores_a - scores_b))) if scores_a.shape == scores_b.shape else np.inf
            found.update(rows=len(classes_a), classes_equal=classes_a == classes_b, max_score_diff=diff)
            found["passed"] &= (
                classes_a == classes_b and diff <= step * 1.0001 and a["backend"] == b["backend"]
            )
        elif "accuracy" in a:
            found.update(accuracy_host=a["accuracy"], accuracy_pi=b["accuracy"], eval_samples=b["samples"])
            same = a["accuracy"] == b["accuracy"] and a["samples"] == b["samples"] > 0
            found["passed"] &= same and a["backend"] == b["backend"]
        elif "p50_ms" in a:
            found.update(bench_p50_ms_host=a["p50_ms"], bench_p50_ms_pi=b["p50_ms"])
            found["passed"] &= b["p50_ms"] > 0 and b["throughput_per_s"] > 0
    return found


def _summary(report: dict[str, Any]) -> None:
    for result in report["bundles"]:
        print(f"{result['model']} (one output step {result['step']:.6g}):")
        for cpu, found in result["comparisons"].items():
            if "classes_equal" not in found:
                failed = [
                    c
                    for c in result["runs"][cpu]["commands"] + result["runs"]["host"]["commands"]
                    if c["returncode"] != 0 or c["output"] is None
                ]
                print(f"  {cpu}: FAILED {[(c['command'], c.get('stderr', '')[-400:]) for c in failed]}")
                continue
            print(
                f"  {cpu}: {'ok' if found['passed'] else 'DIFFERENT'}: {found['rows']} rows, classes "
                f"{'identical' if found['classes_equal'] else 'differ'}, max score diff "
                f"{found['max_score_diff']:.3g}; accuracy {found.get('accuracy_pi')} (host "
                f"{found.get('accuracy_host')}) on {found.get('eval_samples')} images; "
                f"{sum(c['seconds'] for c in result['runs'][cpu]['commands']):.1f} s emulated"
            )
    print(f"emulated {report['machines']}; phases {report['phase_seconds']} (seconds)")
    print(f"total {report['seconds']} s: {'passed' if report['passed'] else 'FAILED'}")


if __name__ == "__main__":
    sys.exit(main())
