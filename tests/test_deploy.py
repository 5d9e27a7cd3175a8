"""Deploy bundles: an rpi bundle runs from a fresh TensorFlow-free venv; the mcu bundle is the C package."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest

from edgeslim.atomic import sha256_file
from edgeslim.cli import main
from edgeslim.deploy import make_bundle
from edgeslim.errors import EdgeslimError

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
    # The same digits as 8-bit PNGs (what a camera gives): read with Pillow, scaled as pixel / 255.
    from PIL import Image

    pngs = []
    for i in range(5):
        pngs.append(tmp_path / f"digit{i}.png")
        Image.fromarray(np.round(digits.x_test[i, ..., 0] * 255).astype(np.uint8)).save(pngs[-1])
    result = subprocess.run(
        [str(base_venv), str(bundle / "run.py"), *map(str, pngs), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert [int(p["class"]) for p in json.loads(result.stdout)["predictions"]] == labels[:5]


def test_mcu_bundle_is_the_c_package(default_run, tmp_path):
    run_dir, _ = default_run
    bundle = tmp_path / "mcu"
    assert main(["deploy", str(run_dir), "--target", "mcu", "--out", str(bundle)]) == 0
    names = {p.name for p in bundle.rglob("*")}
    assert {"model_data.h", "model_data.cc", "README.md"} <= names


def test_coral_bundle_and_bad_input(default_run, digits, tmp_path, capsys):
    run_dir, _ = default_run
    assert main(["deploy", str(run_dir), "--target", "coral", "--out", str(tmp_path / "coral")]) == 0
    assert "edgetpu_compiler" in (tmp_path / "coral" / "README.md").read_text()
    assert not (tmp_path / "coral" / "model_int8_edgetpu.tflite").exists()  # no compiler here: none made
    np.save(tmp_path / "batch.npy", _raw_digits(digits, 5))
    done = _run_py(tmp_path / "coral", tmp_path / "batch.npy")
    assert done.returncode == 0, done.stderr
    assert "note: no model_int8_edgetpu.tflite here" in done.stderr
    assert len(json.loads(done.stdout)["predictions"]) == 5
    assert main(["deploy", str(run_dir), "--target", "fpga", "--out", str(tmp_path / "x")]) == 2
    assert main(["deploy", str(tmp_path / "nothing"), "--target", "rpi", "--out", str(tmp_path / "y")]) == 2
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def _raw_digits(digits, n: int) -> np.ndarray:
    return np.round(digits.x_test[:n, ..., 0] * 16).astype(np.uint8)  # raw 0..16, as the sensor gives them


def _run_py(bundle: Path, *inputs: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(bundle / "run.py"), *map(str, inputs), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=bundle,
    )


def _as_edgetpu_compiler_output(uncompiled: Path, compiled: Path) -> None:
    """Write what edgetpu_compiler writes for a fully mapped model: one `edgetpu-custom-op` in place of
    every op, between the same input and output tensors. Coral's compiler cannot be installed here; the
    result is a real LiteRT flatbuffer that, like a compiled file, runs only through libedgetpu."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(uncompiled.read_bytes()))
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode, code.version = "edgetpu-custom-op", 1
    model.operatorCodes.append(code)
    graph = model.subgraphs[0]
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = (
        len(model.operatorCodes) - 1,
        list(graph.inputs),
        list(graph.outputs),
    )
    op.customOptions = list(b"edgetpu executable")
    graph.operators = [op]
    compiled.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))


@pytest.fixture
def compiled_run(default_run, tmp_path) -> Path:
    """A copy of the run whose edgetpu export has a compiled file, recorded in the sidecar as the
    export records edgetpu_compiler's output (edgeslim/export/edgetpu.py)."""
    run_dir, _ = default_run
    export = tmp_path / "run" / "exports" / "edgetpu"
    shutil.copytree(run_dir / "exports" / "edgetpu", export)
    compiled = export / "model_int8_edgetpu.tflite"
    _as_edgetpu_compiler_output(export / "model_int8.tflite", compiled)
    sidecar_path = export / "model_int8.tflite.json"
    sidecar = json.loads(sidecar_path.read_text())
    ops = sidecar["edgetpu"]["total_ops"]
    sidecar["edgetpu"]["compiler"] = {
        "ran": True,
        "returncode": 0,
        "compiled_path": str(compiled),
        "mapped_ops": ops,
        "cpu_ops": 0,
    }
    sidecar["edgetpu"]["prediction"] = False
    sidecar_path.write_text(json.dumps(sidecar))
    # The export step records every file it wrote, the compiled one included (deploy checks them).
    marker_path = export / "step.json"
    marker = json.loads(marker_path.read_text())
    for path in (compiled, sidecar_path):
        marker["sha256"][path.name] = sha256_file(path)
    marker["files"] = sorted({*marker["files"], compiled.name})
    marker_path.write_text(json.dumps(marker))
    return tmp_path / "run"


def test_coral_bundle_ships_the_compiled_file_and_falls_back_to_the_cpu(compiled_run, digits, tmp_path):
    bundle = tmp_path / "coral"
    assert main(["deploy", str(compiled_run), "--target", "coral", "--out", str(bundle)]) == 0
    compiled = bundle / "model_int8_edgetpu.tflite"
    source = compiled_run / "exports" / "edgetpu" / "model_int8_edgetpu.tflite"
    assert compiled.read_bytes() == source.read_bytes()
    side = json.loads((bundle / "model_int8_edgetpu.tflite.json").read_text())
    assert side["file"] == compiled.name and side["compiled_from"]["file"] == "model_int8.tflite"
    assert "verification" not in side  # that ran the uncompiled file on the CPU
    assert (bundle / "model_int8.tflite").is_file() and "model_int8_edgetpu.tflite" in (
        bundle / "README.md"
    ).read_text()

    # This machine has no libedgetpu: run.py says so in one line and classifies on the CPU.
    np.save(tmp_path / "batch.npy", _raw_digits(digits, 20))
    done = _run_py(bundle, tmp_path / "batch.npy")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, done.stderr
    for part in (
        "libedgetpu.so.1",
        "apt-get install libedgetpu1-std",
        "uncompiled model_int8.tflite on the CPU",
    ):
        assert part in warnings[0]
    result = json.loads(done.stdout)
    assert result["model"] == "model_int8.tflite" and result["backend"] == "litert"
    from edgeslim.runtime import load

    expected = load(bundle / "model_int8.tflite").predict_raw(_raw_digits(digits, 20)[..., None])
    assert [int(p["class"]) for p in result["predictions"]] == np.argmax(expected, axis=1).tolist()
    np.testing.assert_allclose([p["scores"] for p in result["predictions"]], expected, atol=1e-6)


def test_a_compiled_file_without_libedgetpu_is_one_clear_error(compiled_run, capsys):
    """The runtime itself: no traceback from LiteRT's half-built delegate, one line saying what to do."""
    compiled = compiled_run / "exports" / "edgetpu" / "model_int8_edgetpu.tflite"
    code = (
        "import sys\nfrom edgeslim.runtime import RuntimeModelError, load\n"
        "try:\n    load(sys.argv[1], probe=False)\nexcept RuntimeModelError as exc:\n    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(compiled)], capture_output=True, text=True)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "libedgetpu.so.1 is not installed" in done.stdout and "\n" not in done.stdout.strip()
    assert main(["eval", str(compiled)]) == 2
    assert "sudo apt-get install libedgetpu1-std" in capsys.readouterr().err


def test_a_recorded_compiled_file_that_is_missing_is_a_clear_error(compiled_run, tmp_path):
    (compiled_run / "exports" / "edgetpu" / "model_int8_edgetpu.tflite").unlink()
    with pytest.raises(EdgeslimError, match="model_int8_edgetpu.tflite: missing"):
        make_bundle(compiled_run, "coral", tmp_path / "coral")
    assert not (tmp_path / "coral").exists()
