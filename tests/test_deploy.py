"""Deploy bundles: an rpi bundle runs from a fresh TensorFlow-free venv; the mcu bundle is the C package."""

from __future__ import annotations

import json
import os
import subprocess
import venv
from pathlib import Path

import numpy as np
import pytest

from edgeslim.cli import main

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def base_venv(tmp_path_factory) -> Path:
    """A fresh venv with the base package only (no extras): what `pip install edgeslim` gives a Pi."""
    root = tmp_path_factory.mktemp("basevenv") / "venv"
    venv.EnvBuilder(with_pip=True).create(root)
    python = root / "bin" / "python"
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(REPO)],
        capture_output=True,
        text=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        timeout=900,
    )
    if result.returncode != 0:
        pytest.fail(f"base install failed: {result.stderr[-2000:]}")
    return python


def test_rpi_bundle_runs_without_tensorflow(default_run, digits, base_venv, tmp_path):
    run_dir, _ = default_run
    bundle = tmp_path / "rpi"
    assert main(["deploy", str(run_dir), "--target", "rpi", "--out", str(bundle)]) == 0
    files = sorted(p.name for p in bundle.iterdir())
    model_file = next(f for f in files if f.endswith((".tflite", ".onnx")))
    assert {"run.py", "README.md", "requirements.txt", model_file + ".json"} <= set(files)
    assert (bundle / "requirements.txt").read_text().strip().startswith("edgeslim==")
    raw = np.round(digits.x_test[:40, ..., 0] * 16).astype(np.uint8)  # raw 0..16 values, as the sensor gives
    np.save(tmp_path / "batch.npy", raw)
    check = subprocess.run([str(base_venv), "-c", "import tensorflow"], capture_output=True)
    assert check.returncode != 0, "the base venv must not have TensorFlow"
    result = subprocess.run(
        [str(base_venv), str(bundle / "run.py"), str(tmp_path / "batch.npy"), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    predictions = json.loads(result.stdout)["predictions"]
    labels = [int(p["class"]) for p in predictions]
    assert len(labels) == 40
    assert np.mean(np.array(labels) == digits.y_test[:40]) >= 0.85


def test_mcu_bundle_is_the_c_package(default_run, tmp_path):
    run_dir, _ = default_run
    bundle = tmp_path / "mcu"
    assert main(["deploy", str(run_dir), "--target", "mcu", "--out", str(bundle)]) == 0
    names = {p.name for p in bundle.rglob("*")}
    assert {"model_data.h", "model_data.cc", "README.md"} <= names


def test_coral_bundle_and_bad_input(default_run, tmp_path, capsys):
    run_dir, _ = default_run
    assert main(["deploy", str(run_dir), "--target", "coral", "--out", str(tmp_path / "coral")]) == 0
    assert "edgetpu_compiler" in (tmp_path / "coral" / "README.md").read_text()
    assert main(["deploy", str(run_dir), "--target", "fpga", "--out", str(tmp_path / "x")]) == 2
    assert main(["deploy", str(tmp_path / "nothing"), "--target", "rpi", "--out", str(tmp_path / "y")]) == 2
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
