"""The rpi bundle on an emulated Raspberry Pi OS 64-bit, as a Pi 4 and a Pi 5, against this host.

It runs tools/pi_emulation.py (Debian bookworm arm64's python3.11 under qemu-aarch64-static; 60-90 s on
2 busy cores with its cache in ~/.cache/edgeslim, the first build about 20 s more). It needs
qemu-user-static, apt-get, dpkg-deb, the Debian keyring, and the Debian and PyPI indexes: where they are
missing the test skips with the reason, unless EDGESLIM_REQUIRE_PI_EMULATION=1 (set by CI) makes that a
failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeslim.deploy import make_bundle

REPO = Path(__file__).resolve().parent.parent
TOOL = REPO / "tools" / "pi_emulation.py"
CPUS = ("cortex-a72", "cortex-a76")


def _unavailable(reason: str) -> None:
    if os.environ.get("EDGESLIM_REQUIRE_PI_EMULATION") == "1":
        pytest.fail(f"the Pi emulation check cannot run: {reason}")
    pytest.skip(f"no Pi emulation here: {reason}")


def _tool():
    spec = importlib.util.spec_from_file_location("pi_emulation", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_check_runs_exactly_the_readme_commands(default_run, tmp_path):
    run_dir, _ = default_run
    bundle = make_bundle(run_dir, "rpi", tmp_path / "rpi", artifact="model_int8.tflite")
    tool = _tool()
    commands = tool.readme_commands(bundle / "README.md")
    assert [shlex.join(c) for c in commands] == [
        "python run.py sample.npy --json",
        "edgeslim eval model_int8.tflite --dataset folder --data-dir images --json",
        "edgeslim bench model_int8.tflite --json",
    ]
    readme = bundle / "README.md"
    readme.write_text(readme.read_text().replace("--json\n```", "--json\nsudo reboot\n```", 1))
    with pytest.raises(tool.BadInput, match="does not know how to run 'sudo reboot'"):
        tool.readme_commands(readme)


def test_rpi_bundle_agrees_on_an_emulated_pi4_and_pi5(default_run, digits, tmp_path):
    missing = [tool for tool in ("qemu-aarch64-static", "apt-get", "dpkg-deb") if shutil.which(tool) is None]
    if missing:
        _unavailable(f"{missing} not found (apt-get install qemu-user-static)")
    run_dir, _ = default_run
    report_path = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, str(TOOL), "--run", str(run_dir), "--json", str(report_path)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode == 3:
        _unavailable(done.stderr.strip().splitlines()[-1])
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    report = json.loads(report_path.read_text())
    assert set(report["machines"]) == set(CPUS)
    assert all(m.startswith("aarch64 3.11") for m in report["machines"].values()), report["machines"]
    assert report["debian"]["python3.11"].startswith("3.11") and "libstdc++6" in report["debian"]
    assert sorted(Path(b["model"]).suffix for b in report["bundles"]) == [".onnx", ".tflite"]
    for bundle in report["bundles"]:
        host = bundle["runs"]["host"]["commands"]
        for cpu in CPUS:
            pi = bundle["runs"][cpu]["commands"]
            assert [c["command"] for c in pi] == [c["command"] for c in host]  # the README's, all of them
            found = bundle["comparisons"][cpu]
            assert found["classes_equal"] and found["rows"] == 40, found
            assert found["max_score_diff"] <= bundle["step"], found
            assert found["accuracy_pi"] == found["accuracy_host"] > 0.85
            assert found["eval_samples"] == len(digits.x_test)
            assert found["bench_p50_ms_pi"] > 0
