"""The README is the front door: every command of its CLI tour runs, in order, as a user types it.

Run on small data: fewer epochs and trials (the substitutions below), the config that `init` writes
trimmed to a few epochs, the real MNIST split in ../shared/data/mnist. Each command's exit code must be
the documented one, and what it promises to write or print must be there.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SMALL = [(r"--epochs \d+", "--epochs 1"), (r"--finetune-epochs \d+", "--finetune-epochs 1"),
         (r"--max-trials \d+", "--max-trials 1")]  # fmt: skip


def tour_commands() -> list[list[str]]:
    text = (REPO / "README.md").read_text()
    section = text.split("## CLI tour", 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    commands, pending = [], ""
    for line in block.splitlines():
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        args = shlex.split(pending, comments=True)
        pending = ""
        if args:
            commands.append(args)
    return commands


def test_the_tour_is_what_this_test_runs():
    commands = tour_commands()
    assert all(c[0] == "edgeslim" for c in commands), commands
    verbs = [c[1] for c in commands]
    for verb in ("init", "pipeline", "report", "deploy", "train", "inspect", "compress", "export", "eval",
                 "bench", "firmware", "fit"):  # fmt: skip
        assert verb in verbs, verb


@pytest.fixture(scope="module")
def project(tmp_path_factory, mnist_dir):
    """A project folder with ../shared/data/mnist beside it, as in the README."""
    root = tmp_path_factory.mktemp("readme")
    (root / "shared" / "data").mkdir(parents=True)
    (root / "shared" / "data" / "mnist").symlink_to(mnist_dir)
    (root / "project").mkdir()
    return root / "project"


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    line = " ".join(args)
    for pattern, small in SMALL:
        line = re.sub(pattern, small, line)
    return subprocess.run(
        [sys.executable, "-m", "edgeslim", *shlex.split(line)[1:]], cwd=cwd, capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip


def test_every_tour_command_runs_with_its_documented_result(project):
    for args in tour_commands():
        result = run(args, project)
        verb = args[1] if len(args) > 1 else ""
        allowed = {0, 1} if verb == "fit" else {0}  # fit: 1 when no model fits the budget
        assert result.returncode in allowed, (args, result.stderr[-3000:])
        assert "Traceback" not in result.stderr, (args, result.stderr[-3000:])
        check(args, result, project)
        if verb == "init":  # small data: the same pipeline, fewer epochs
            config = yaml.safe_load((project / "my.yaml").read_text())
            config["train"]["epochs"] = 3
            for stage in config["compress"]:
                params = next(iter(stage.values()))
                if "finetune" in params:
                    params["finetune"] = {"epochs": 1}
                if "qat" in params:
                    params["qat_epochs"] = 1
            (project / "my.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def check(args: list[str], result: subprocess.CompletedProcess, project: Path) -> None:
    """What the README says each command writes or prints."""
    line = " ".join(args)
    if line == "edgeslim --help":
        assert all(verb in result.stdout for verb in ("pipeline", "fit", "export", "eval"))
    elif line.startswith("edgeslim pipeline") and (project / "runs/mine/report/report.html").exists():
        if "unchanged, skipped" in result.stderr:  # the second run: every step reused
            assert "running" not in result.stderr, result.stderr
        assert (project / "runs/mine/manifest.json").is_file()
    elif line.startswith("edgeslim deploy"):
        assert {"run.py", "README.md", "requirements.txt"} <= {
            p.name for p in (project / "bundle-rpi").iterdir()
        }
    elif line.startswith("edgeslim train"):
        assert (project / "runs/m3/model.keras").is_file() and (project / "runs/m3/metrics.json").is_file()
    elif line.startswith("edgeslim inspect runs/m3/model.keras --json"):
        info = json.loads(result.stdout)
        assert info["total_params"] == 61706 and info["total_macs"] > 0
        assert info["deployed_macs"] == info["total_macs"]  # LeNet-5 has no BatchNorm to fold
    elif line.startswith("edgeslim compress"):
        assert (project / "runs/m3c/03-quantize/model.keras").is_file()
    elif line.startswith("edgeslim export"):
        sidecar = json.loads((project / "exports/mcu/model_int8.tflite.json").read_text())
        assert sidecar["quant_recipe"]["per_channel"] is False  # "per tensor, as the quantize stage said"
        assert sidecar["mcu"]["board"] == "stm32l4r5" and sidecar["verification"]["passed"]
    elif line.startswith("edgeslim eval") and "--json" in args:
        out = json.loads(result.stdout)
        assert out["task"] == "classification" and out["samples"] == 2000 and out["accuracy"] > 0.5
    elif line.startswith("edgeslim eval"):
        assert "accuracy" in result.stderr
    elif line.startswith("edgeslim bench"):
        assert json.loads(result.stdout)["p50_ms"] > 0
    elif line.startswith("edgeslim inspect exports"):
        assert "FULLY_CONNECTED" in result.stdout or "CONV_2D" in result.stdout
    elif line.startswith("edgeslim firmware"):
        assert "instructions per inference" in result.stderr and "byte for byte on 100% of 4" in result.stderr
        assert "accuracy" in result.stderr
    elif line.startswith("edgeslim fit"):
        fit = json.loads((project / "runs/fit/fit.json").read_text())
        assert fit["budget"]["max_flash"] == 24 * 1024 and (result.returncode == 0) == fit["fits"]
