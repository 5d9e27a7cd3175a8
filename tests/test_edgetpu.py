"""The edgetpu target: full int8, static batch 1, and the op-by-op Edge TPU mapping analysis."""

from __future__ import annotations

import pytest

from edgeslim.export import export_model
from edgeslim.export.edgetpu_compiler import compiler_path, parse_log
from edgeslim.export.edgetpu_ops import analyze_edgetpu
from edgeslim.runtime import load


@pytest.fixture(scope="module")
def edgetpu_artifact(digits_model, digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("edgetpu")
    [artifact] = export_model(
        digits_model, digits, "edgetpu", out_dir=out, calib_samples=32, verify_samples=150
    )
    return artifact


def test_edgetpu_export_is_int8_with_static_batch_one(edgetpu_artifact, digits):
    sidecar = edgetpu_artifact.sidecar
    assert sidecar["batch"] == 1 and sidecar["quantization"] == "int8"
    assert sidecar["inputs"][0]["shape"] == [1, 8, 8, 1] and sidecar["inputs"][0]["dtype"] == "int8"
    assert sidecar["verification"]["passed"]
    model = load(edgetpu_artifact.path)  # a batch-1 file still serves any batch size
    assert model.fixed_batch == 1
    assert model.predict(digits.x_test[:9]).shape == (9, 10)


def test_a_supported_model_maps_every_op(edgetpu_artifact):
    analysis = edgetpu_artifact.sidecar["edgetpu"]
    assert analysis["total_ops"] == len(analysis["ops"]) > 0
    assert analysis["mapped_ops"] == analysis["total_ops"] and analysis["mapped_fraction"] == 1.0
    assert analysis["first_unmapped"] is None and analysis["advice"] == []
    assert {op["op"] for op in analysis["ops"]} >= {"CONV_2D", "FULLY_CONNECTED", "SOFTMAX"}
    # Without Coral's compiler on PATH the analysis says it is a prediction.
    assert analysis["prediction"] is (compiler_path() is None)


@pytest.fixture(scope="module")
def elu_analysis(digits, tmp_path_factory):
    import keras
    from keras import layers

    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            layers.Conv2D(8, 3, activation="relu", name="conv1"),
            layers.ELU(name="elu"),  # no int8 kernel: the converter wraps it in DEQUANTIZE/QUANTIZE
            layers.Conv2D(8, 3, activation="relu", name="conv2"),
            layers.Flatten(),
            layers.Dense(10, activation="softmax"),
        ]
    )
    out = tmp_path_factory.mktemp("edgetpu-elu")
    [artifact] = export_model(model, digits, "edgetpu", out_dir=out, calib_samples=16, verify=False)
    return artifact.sidecar["edgetpu"]


def test_an_unsupported_op_is_flagged_and_everything_after_it_falls_back(elu_analysis):
    first = elu_analysis["first_unmapped"]
    assert first is not None and first["index"] == 1
    ops = elu_analysis["ops"]
    assert ops[0]["runs_on"] == "edgetpu"
    assert all(op["runs_on"] == "cpu" for op in ops[first["index"] :])  # one partition: the rest is CPU
    assert elu_analysis["mapped_ops"] == first["index"] < elu_analysis["total_ops"]
    assert "ELU" in elu_analysis["unsupported"]
    elu = next(op for op in ops if op["op"] == "ELU")
    assert elu["reason"] == "operation not supported by the Edge TPU"
    conv2 = [op for op in ops if op["op"] == "CONV_2D"][1]
    assert conv2["runs_on"] == "cpu" and conv2["reason"].startswith("after the first unmapped op")
    advice = " ".join(elu_analysis["advice"])
    assert "replace ELU with ReLU" in advice and "run on the CPU" in advice


def test_a_dynamic_batch_or_float_model_is_flagged(digits_model, digits, tmp_path):
    [dynamic] = export_model(
        digits_model, digits, "cpu", out_dir=tmp_path, formats=["tflite"], verify=False, calib_samples=16
    )
    analysis = analyze_edgetpu(dynamic.path.read_bytes())
    assert "dynamic shape" in analysis["first_unmapped"]["reason"]
    [floating] = export_model(
        digits_model, digits, "cpu", out_dir=tmp_path, formats=["tflite"], quant="float32", verify=False
    )
    analysis = analyze_edgetpu(floating.path.read_bytes())
    assert analysis["first_unmapped"]["index"] == 0 and analysis["mapped_ops"] == 0
    assert (
        "not 8-bit quantized" in analysis["first_unmapped"]["reason"]
        or "dynamic" in analysis["first_unmapped"]["reason"]
    )


COMPILER_LOG = """Edge TPU Compiler version 16.0.384591198
Input: model_int8.tflite
Output: model_int8_edgetpu.tflite

Operator                       Count      Status

CONV_2D                        2          Mapped to Edge TPU
MAX_POOL_2D                    1          Mapped to Edge TPU
ELU                            1          Operation not supported
FULLY_CONNECTED                2          More than one subgraph is not supported
Number of operations that will run on Edge TPU: 3
Number of operations that will run on CPU: 3
"""


def test_the_compiler_log_is_parsed():
    parsed = parse_log(COMPILER_LOG)
    assert parsed["compiler_version"] == "16.0.384591198"
    assert parsed["mapped_ops"] == 3 and parsed["cpu_ops"] == 3
    assert parsed["ops"][0] == {"op": "CONV_2D", "count": 2, "status": "Mapped to Edge TPU"}
    assert parsed["ops"][2]["status"] == "Operation not supported"
