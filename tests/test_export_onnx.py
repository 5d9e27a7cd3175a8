"""ONNX export: float32, float16, int8 QDQ (three calibrations) and dynamic int8, through ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest

from edgeslim.analysis.onnx_model import analyze_onnx
from edgeslim.errors import EdgeslimError
from edgeslim.export import export_model
from edgeslim.export.onnx import OPSET
from edgeslim.runtime import load

CASES = {
    "float32": "float32",
    "float16": "float16",
    "int8": {"mode": "int8", "calibration": "minmax"},
    "int8-entropy": {"mode": "int8", "calibration": "entropy"},
    "int8-percentile": {"mode": "int8", "calibration": "percentile"},
    "dynamic": "dynamic",
}


@pytest.fixture(scope="module")
def digits_onnx(digits_model, digits, tmp_path_factory):
    base = tmp_path_factory.mktemp("onnx")
    artifacts = {}
    for case, quant in CASES.items():
        [artifacts[case]] = export_model(
            digits_model, digits, "cpu", out_dir=base / case, formats=["onnx"], quant=quant, calib_samples=64
        )
    return artifacts


@pytest.mark.parametrize("case", list(CASES))
def test_every_mode_round_trips_through_onnxruntime(digits_onnx, digits, case):
    artifact = digits_onnx[case]
    verification = artifact.sidecar["verification"]
    assert verification["backend"] == "onnxruntime"
    assert verification["passed"] and verification["agreement"] >= 0.98
    model = load(artifact.path)
    assert [s.name for s in model.outputs] == ["output"]
    assert model.inputs[0].shape == (None, 8, 8, 1) and model.inputs[0].dtype == "float32"
    probs = model.predict(digits.x_test[:33])
    assert probs.shape == (33, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=0.06)


def test_opset_is_chosen_and_recorded(digits_onnx):
    for artifact in digits_onnx.values():
        details = artifact.sidecar["format_details"]
        assert details["onnx_opset"] == OPSET == 17
        assert analyze_onnx(artifact.path)["opsets"]["ai.onnx"] == OPSET


def test_each_mode_has_its_own_graph(digits_onnx):
    ops = {case: set(analyze_onnx(a.path)["op_counts"]) for case, a in digits_onnx.items()}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops["int8"]
    assert {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"} <= ops["dynamic"]
    assert not ops["float32"] & {"QuantizeLinear", "ConvInteger"}
    dtypes = {case: analyze_onnx(a.path)["param_bytes_by_dtype"] for case, a in digits_onnx.items()}
    assert dtypes["float16"].get("float16", 0) > dtypes["float16"].get("float32", 0)
    assert dtypes["int8"].get("int8", 0) > 0
    sizes = {case: a.sidecar["bytes"] for case, a in digits_onnx.items()}
    assert sizes["int8"] < 0.4 * sizes["float32"] and sizes["float16"] < 0.6 * sizes["float32"]


def activation_scales(path) -> dict[str, float]:
    """The scale of every activation QuantizeLinear (the calibration sets these; weights have their own)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(path).graph
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    return {
        node.input[0]: float(constants[node.input[1]].reshape(-1)[0])
        for node in graph.node
        if node.op_type == "QuantizeLinear" and node.input[0] not in constants
    }


def test_entropy_and_percentile_calibration_change_the_scales(digits_onnx):
    minmax = activation_scales(digits_onnx["int8"].path)
    for case in ("int8-entropy", "int8-percentile"):
        other = activation_scales(digits_onnx[case].path)
        shared = sorted(set(minmax) & set(other))
        assert len(shared) >= 3, case
        differ = [name for name in shared if not np.isclose(minmax[name], other[name], rtol=1e-3)]
        # Both clip the long tails min/max keeps: most ranges, hence scales, shrink.
        assert len(differ) >= len(shared) // 2, (case, minmax, other)
        assert sum(other[n] < minmax[n] for n in differ) >= len(differ) // 2, case


def test_calibration_method_is_recorded(digits_onnx):
    assert digits_onnx["int8-entropy"].sidecar["format_details"]["calibration_method"] == "entropy"
    assert digits_onnx["int8-percentile"].sidecar["quant_recipe"]["calibration"] == "percentile"
    assert digits_onnx["int8"].sidecar["format_details"]["quant_format"] == "QDQ"


@pytest.mark.parametrize("mode", ["float32", "float16", "int8", "dynamic"])
def test_every_mode_round_trips_on_mnist(mnist_model, mnist, tmp_path, mode):
    [artifact] = export_model(mnist_model, mnist, "cpu", out_dir=tmp_path, formats=["onnx"], quant=mode)
    verification = artifact.sidecar["verification"]
    assert verification["passed"] and verification["samples"] == len(mnist.y_test) == 2000
    assert abs(verification["accuracy"] - verification["keras_accuracy"]) <= 0.01
    assert load(artifact.path).predict(mnist.x_test[:3]).shape == (3, 10)


def test_int16x8_is_refused_for_onnx(digits_model, digits, tmp_path):
    with pytest.raises(EdgeslimError, match="int16x8"):
        export_model(digits_model, digits, "cpu", out_dir=tmp_path, formats=["onnx"], quant="int16x8")
    assert not list(tmp_path.iterdir())


def test_a_model_holding_constants_takes_only_its_own_inputs(digits, tmp_path):
    """An adapted Normalization keeps its mean and variance as captured tensors; the ONNX file must hold
    them as constants, not ask the caller for them."""
    import keras

    norm = keras.layers.Normalization()
    norm.adapt(digits.x_train[:200])
    head = keras.layers.Dense(10, "softmax")
    model = keras.Sequential([keras.Input(digits.x_train.shape[1:]), norm, keras.layers.Flatten(), head])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(digits.x_train, digits.y_train, epochs=3, verbose=0)
    for quant in ("float32", "int8"):
        [artifact] = export_model(
            model, digits, "cpu", out_dir=tmp_path / quant, formats=["onnx"], quant=quant, calib_samples=32
        )
        assert artifact.sidecar["verification"]["passed"]
        runtime_model = load(artifact.path)
        assert len(runtime_model.inputs) == 1
        if quant == "float32":
            expected = model.predict(digits.x_test[:16], verbose=0)
            np.testing.assert_allclose(runtime_model.predict(digits.x_test[:16]), expected, atol=1e-5)
