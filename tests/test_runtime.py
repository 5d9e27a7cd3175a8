"""edgeslim.runtime: any batch size, backends, inspect, evaluate/bench, one clear error for bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgeslim.analysis.onnx_model import analyze_onnx
from edgeslim.analysis.tflite_model import analyze_tflite
from edgeslim.cli import main
from edgeslim.errors import EdgeslimError
from edgeslim.export import export_model
from edgeslim.runtime import RuntimeModelError, benchmark, evaluate, load


@pytest.fixture(scope="module")
def files(digits_model, digits, tmp_path_factory):
    """A dynamic-batch float32 .tflite, a static batch-1 int8 .tflite, and a float32 .onnx."""
    out = tmp_path_factory.mktemp("runtime")
    kwargs = {"verify_samples": 100, "calib_samples": 32}
    [tfl] = export_model(
        digits_model, digits, "cpu", out_dir=out / "f", formats=["tflite"], quant="float32", **kwargs
    )
    [int8] = export_model(digits_model, digits, "edgetpu", out_dir=out / "e", **kwargs)
    [onnx] = export_model(
        digits_model, digits, "cpu", out_dir=out / "o", formats=["onnx"], quant="float32", **kwargs
    )
    return {"float32.tflite": tfl.path, "int8.tflite": int8.path, "float32.onnx": onnx.path}


@pytest.mark.parametrize("name", ["float32.tflite", "int8.tflite", "float32.onnx"])
def test_any_batch_size_matches_one_at_a_time(files, digits, name):
    model = load(files[name])
    x = digits.x_test[:300]
    one_by_one = np.concatenate([model.predict(x[i : i + 1]) for i in range(0, 300, 37)])
    for batch in (1, 7, 300):
        got = model.predict(x[:batch])
        assert got.shape == (batch, 10) and got.dtype == np.float32
        np.testing.assert_allclose(got, model.predict(x)[:batch], atol=1e-5)
    np.testing.assert_allclose(one_by_one, model.predict(x)[::37], atol=1e-5)


def test_specs_and_backends(files):
    tfl, int8, onnx = load(files["float32.tflite"]), load(files["int8.tflite"]), load(files["float32.onnx"])
    assert (tfl.backend, int8.backend, onnx.backend) == ("litert", "litert", "onnxruntime")
    assert tfl.inputs[0].shape == (None, 8, 8, 1) and tfl.fixed_batch is None
    assert (
        int8.inputs[0].shape == (1, 8, 8, 1) and int8.inputs[0].dtype == "int8" and int8.inputs[0].quantized
    )
    assert int8.outputs[0].scale > 0 and onnx.outputs[0].name == "output"
    assert load(files["int8.tflite"], backend="tflm").backend == "tflm"
    assert load(files["float32.onnx"], backend="ort", threads=2).threads == 2


def test_predict_raw_applies_the_sidecar_preprocessing(files, digits):
    model = load(files["int8.tflite"])
    raw = np.rint(digits.x_test[:20] / digits.preprocessing.scale).astype(np.uint8)  # 0..16 pixel values
    np.testing.assert_allclose(model.predict_raw(raw), model.predict(digits.x_test[:20]), atol=1e-6)
    assert model.class_names == digits.class_names


def test_without_sidecar_the_model_itself_gives_the_quantization(files, digits, tmp_path):
    bare = tmp_path / "bare.tflite"
    shutil.copy(files["int8.tflite"], bare)
    with_sidecar, without = load(files["int8.tflite"]), load(bare)  # the bare file is probed in a child first
    assert without.sidecar is None and without.inputs == with_sidecar.inputs
    np.testing.assert_array_equal(
        without.predict(digits.x_test[:10]), with_sidecar.predict(digits.x_test[:10])
    )


BAD_INPUTS = [
    (lambda x: x[0], r"expects shape \(batch, 8, 8, 1\), got \(8, 8, 1\).*x\[None\]"),
    (lambda x: x[:, :4], r"expects shape \(batch, 8, 8, 1\), got \(5, 4, 8, 1\)"),
    (lambda x: x.astype(np.int32), "expects float32 data, got int32.*predict_raw"),
    (lambda x: x.astype(bool), "expects float32 data, got bool"),
    (lambda x: x.astype(np.complex64), "expects float32 data, got complex64"),
    (lambda x: np.array([["a"] * 8] * 8), "expects float32 data, got <U1"),
    (lambda x: x[:0], "empty batch"),
    (lambda x: {"nope": x}, "missing inputs"),
]


@pytest.mark.parametrize("name", ["int8.tflite", "float32.onnx"])
@pytest.mark.parametrize(("make", "message"), BAD_INPUTS)
def test_bad_inputs_raise_one_clear_error(files, digits, name, make, message):
    model = load(files[name])
    with pytest.raises(RuntimeModelError, match=message) as caught:
        model.predict(make(digits.x_test[:5]))
    assert isinstance(caught.value, EdgeslimError)


def test_bad_files_raise_one_clear_error(files, tmp_path):
    cases = {
        tmp_path / "missing.tflite": "no such model file",
        tmp_path / "model.pb": "unknown model file type '.pb'.*expected a .tflite file",
        tmp_path / "noext": "unknown model file type",
        tmp_path / "empty.onnx": "not an ONNX model",
        tmp_path / "text.onnx": "not an ONNX model",
        tmp_path / "random.tflite": "not a TFLite flatbuffer",
        tmp_path / "short.tflite": "too small for a .tflite model",
    }
    (tmp_path / "model.pb").write_bytes(b"x")
    (tmp_path / "noext").write_bytes(b"x")
    (tmp_path / "empty.onnx").write_bytes(b"")
    (tmp_path / "text.onnx").write_text("this is not a model\n" * 5)
    (tmp_path / "random.tflite").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "short.tflite").write_bytes(files["int8.tflite"].read_bytes()[:20])
    for path, message in cases.items():
        with pytest.raises(RuntimeModelError, match=message):
            load(path)


def test_backend_and_thread_mistakes(files):
    with pytest.raises(RuntimeModelError, match="backend 'onnxruntime' cannot run .tflite"):
        load(files["int8.tflite"], backend="onnxruntime")
    with pytest.raises(RuntimeModelError, match="backend 'tflm' cannot run .onnx"):
        load(files["float32.onnx"], backend="tflm")
    with pytest.raises(RuntimeModelError, match="unknown backend 'tensorrt'"):
        load(files["float32.onnx"], backend="tensorrt")
    for threads in (0, -1, "2", 1.5):
        with pytest.raises(RuntimeModelError, match="threads must be a positive integer"):
            load(files["float32.onnx"], threads=threads)


def test_a_stale_or_broken_sidecar_is_caught(files, tmp_path):
    copy = tmp_path / "m.tflite"
    data = bytearray(files["float32.tflite"].read_bytes())
    shutil.copy(files["float32.tflite"].with_name("model_float32.tflite.json"), tmp_path / "m.tflite.json")
    data[len(data) // 2] ^= 0x01  # one bit in the weights: invisible to format checks, not to the hash
    copy.write_bytes(bytes(data))
    with pytest.raises(RuntimeModelError, match="does not match its sidecar"):
        load(copy)
    (tmp_path / "m.tflite.json").write_text("{not json")
    with pytest.raises(RuntimeModelError, match="not readable JSON"):
        load(copy)


def test_evaluate_and_benchmark(files, digits):
    model = load(files["float32.onnx"])
    result = evaluate(model, digits.x_test, digits.y_test)
    assert result["samples"] == len(digits.y_test) and 0.9 < result["accuracy"] <= 1.0
    assert result["backend"] == "onnxruntime"
    one_hot = np.eye(10)[digits.y_test]
    assert evaluate(model, digits.x_test, one_hot, limit=50)["samples"] == 50
    timing = benchmark(files["int8.tflite"], batch=4, threads=1, warmup=2, runs=20)
    assert timing["batch"] == 4 and timing["threads"] == 1
    assert 0 < timing["p50_ms"] <= timing["p90_ms"] <= timing["p99_ms"] and timing["throughput_per_s"] > 0


def test_cli_eval_and_bench_print_json(files, capsys):
    assert main(["eval", str(files["int8.tflite"]), "--dataset", "digits", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) >= {"accuracy", "samples", "backend"} and result["accuracy"] > 0.9
    assert (
        main(
            ["bench", str(files["float32.onnx"]), "--threads", "1", "--batch", "2", "--runs", "20", "--json"]
        )
        == 0
    )
    timing = json.loads(capsys.readouterr().out)
    assert {"p50_ms", "p90_ms", "p99_ms", "throughput_per_s"} <= set(timing) and timing["batch"] == 2
    assert main(["eval", str(files["int8.tflite"]) + ".missing"]) == 2


def test_inspect_reads_tflite_and_onnx(files, digits_model):
    keras_params = digits_model.count_params()
    tfl = analyze_tflite(files["float32.tflite"])
    assert tfl["op_counts"]["CONV_2D"] == 2 and tfl["ops"][0]["op"] == "CONV_2D"
    assert {"index", "op", "inputs", "outputs", "multiplications"} == set(tfl["ops"][0])
    from edgeslim.analysis.keras_model import analyze_keras

    # Per op, counted from the file's own shapes: the same total as the Keras count of the deployed model
    assert sum(op["multiplications"] for op in tfl["ops"]) == analyze_keras(digits_model).deployed_macs
    assert keras_params <= tfl["total_params"] <= keras_params + 64  # plus a few shape constants
    assert tfl["dtypes"]["parameters"]["FLOAT32"] > 0
    int8 = analyze_tflite(files["int8.tflite"])
    assert int8["param_bytes_by_dtype"]["INT8"] > 0.7 * int8["param_bytes"] and int8["quantized_tensors"] > 0
    onnx = analyze_onnx(files["float32.onnx"])
    assert onnx["op_counts"]["Conv"] == 2 and onnx["param_bytes"] >= 4 * keras_params
    assert onnx["opsets"]["ai.onnx"] == 17 and onnx["outputs"][0]["name"] == "output"
    with pytest.raises(RuntimeModelError):
        analyze_tflite(files["float32.onnx"])
