"""TFLite export in every mode, round-tripped through LiteRT: digits for the modes, MNIST for the figures."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from edgeslim.export import export_model
from edgeslim.runtime import evaluate, load

MODES = ["float32", "float16", "dynamic", "int8", "int16x8"]


@pytest.fixture(scope="module")
def digits_tflite(digits_model, digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("tflite")
    artifacts = {}
    for mode in MODES:
        [artifacts[mode]] = export_model(
            digits_model, digits, target="cpu", out_dir=out, formats=["tflite"], quant=mode, calib_samples=64
        )
    # The quantize stage's recipe dict: uint8 input/output, per-tensor weights.
    recipe = {"mode": "int8", "io_dtype": "uint8", "per_channel": False, "calib_samples": 64}
    [artifacts["uint8"]] = export_model(
        digits_model, digits, "cpu", out_dir=out / "u8", formats="tflite", quant=recipe
    )
    return artifacts


@pytest.mark.parametrize("mode", [*MODES, "uint8"])
def test_every_mode_round_trips_through_litert(digits_tflite, digits, mode):
    artifact = digits_tflite[mode]
    verification = artifact.sidecar["verification"]
    assert verification["backend"] == "litert"
    assert verification["passed"] and verification["agreement"] >= 0.98
    assert verification["samples"] == len(digits.y_test)
    model = load(artifact.path)
    probs = model.predict(digits.x_test[:50])
    assert probs.dtype == np.float32 and probs.shape == (50, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=0.06)  # softmax survives quantization
    assert evaluate(model, digits.x_test, digits.y_test)["accuracy"] == pytest.approx(
        verification["accuracy"]
    )
    assert verification["latency_ms_p50"] > 0


@pytest.mark.parametrize(
    ("mode", "dtype", "zero_point"),
    [
        ("float32", "float32", None),
        ("float16", "float32", None),
        ("dynamic", "float32", None),
        ("int8", "int8", -128),
        ("uint8", "uint8", 0),
        ("int16x8", "int16", 0),
    ],
)
def test_sidecar_records_the_io_quantization_the_model_has(digits_tflite, mode, dtype, zero_point):
    from ai_edge_litert.interpreter import Interpreter

    artifact = digits_tflite[mode]
    spec = artifact.sidecar["inputs"][0]
    assert spec["dtype"] == dtype
    assert spec["zero_point"] == zero_point
    native = Interpreter(model_path=str(artifact.path)).get_input_details()[0]
    if zero_point is None:
        assert spec["scale"] is None and native["quantization"] == (0.0, 0)
    else:
        assert (spec["scale"], spec["zero_point"]) == pytest.approx(native["quantization"])
        assert artifact.sidecar["outputs"][0]["scale"] > 0
    assert spec["shape"] == [None, 8, 8, 1]  # any batch size


def test_sidecar_holds_what_a_runtime_needs(digits_tflite, digits):
    artifact = digits_tflite["int8"]
    on_disk = json.loads(artifact.sidecar_path.read_text())
    assert artifact.sidecar_path.name == "model_int8.tflite.json"
    assert on_disk == json.loads(json.dumps(artifact.sidecar))
    data = artifact.path.read_bytes()
    assert on_disk["format"] == "tflite" and on_disk["quantization"] == "int8" and on_disk["target"] == "cpu"
    assert on_disk["bytes"] == len(data) and on_disk["sha256"] == hashlib.sha256(data).hexdigest()
    assert 0 < on_disk["gzip_bytes"] < on_disk["bytes"]
    assert on_disk["preprocessing"] == digits.preprocessing.to_dict()
    assert on_disk["class_names"] == digits.class_names
    assert len(on_disk["source_sha256"]) == 64
    assert {"tensorflow", "ai-edge-litert", "onnxruntime", "edgeslim"} <= set(on_disk["tool_versions"])
    assert on_disk["quant_recipe"] == {
        "mode": "int8",
        "per_channel": True,
        "calib_samples": 64,
        "io_dtype": "int8",
        "calibration": "minmax",
    }
    verification = on_disk["verification"]
    for key in (
        "backend",
        "accuracy",
        "keras_accuracy",
        "agreement",
        "max_abs_diff",
        "samples",
        "floor",
        "passed",
    ):
        assert key in verification
    assert digits_tflite["uint8"].sidecar["quant_recipe"]["per_channel"] is False


def test_quantized_files_are_smaller(digits_tflite):
    size = {mode: a.sidecar["bytes"] for mode, a in digits_tflite.items()}
    assert size["float16"] < 0.6 * size["float32"]
    for mode in ("dynamic", "int8", "int16x8", "uint8"):
        assert size[mode] < 0.35 * size["float32"]


@pytest.fixture(scope="module")
def mnist_tflite(mnist_model, mnist, tmp_path_factory):
    out = tmp_path_factory.mktemp("mnist-tflite")
    artifacts = {}
    for mode in MODES:  # default 200 calibration samples; verified on all 2,000 test images
        [artifacts[mode]] = export_model(
            mnist_model, mnist, "cpu", out_dir=out, formats=["tflite"], quant=mode
        )
    return artifacts


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_round_trips_on_mnist(mnist_tflite, mnist, mode):
    verification = mnist_tflite[mode].sidecar["verification"]
    assert verification["passed"] and verification["samples"] == len(mnist.y_test) == 2000
    assert load(mnist_tflite[mode].path).predict(mnist.x_test[:3]).shape == (3, 10)


def test_full_int8_on_mnist_is_within_one_point_of_keras(mnist_tflite, mnist):
    verification = mnist_tflite["int8"].sidecar["verification"]
    assert verification["samples"] == len(mnist.y_test) == 2000
    assert verification["keras_accuracy"] > 0.9
    assert abs(verification["accuracy"] - verification["keras_accuracy"]) <= 0.01
    assert mnist_tflite["float32"].sidecar["verification"]["agreement"] == 1.0


def test_int8_file_is_at_most_30_percent_of_float32(mnist_tflite):
    assert mnist_tflite["int8"].sidecar["bytes"] <= 0.30 * mnist_tflite["float32"].sidecar["bytes"]
