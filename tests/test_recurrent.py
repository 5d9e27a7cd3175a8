"""Recurrent models export: fused LSTM, unrolled GRU/SimpleRNN, LiteRT and TFLite Micro, ONNX; and the
converters' refusals told apart from our own bugs. Digits read row by row: 8 steps of 8 features."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

from edgeslim.errors import EdgeslimError
from edgeslim.export import export_model
from edgeslim.runtime import evaluate, load

KINDS = {"lstm": layers.LSTM, "gru": layers.GRU, "simple_rnn": layers.SimpleRNN}


def _rows_model(kind: str, units: int = 24) -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            layers.Reshape((8, 8), name="rows"),
            KINDS[kind](units, name=kind),
            layers.Dense(10, activation="softmax", name="output"),
        ],
        name=f"{kind}_rows",
    )


@pytest.fixture(scope="module")
def recurrent_models(digits):
    from edgeslim.train.config import TrainConfig
    from edgeslim.train.fit import train_model

    config = TrainConfig(epochs=12, batch_size=32, optimizer="adam", learning_rate=0.01, seed=0)
    models = {}
    for kind in KINDS:
        keras.utils.set_random_seed(0)
        models[kind] = train_model(_rows_model(kind), digits, config, progress=False)
    return models


@pytest.fixture(scope="module")
def exported(recurrent_models, digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("recurrent")
    artifacts = {}
    for kind, trained in recurrent_models.items():
        for target, formats in (("cpu", ["tflite", "onnx"]), ("mcu", None)):
            for artifact in export_model(
                trained.model, digits, target, out_dir=out / kind / target, formats=formats, calib_samples=100
            ):
                artifacts[kind, target, artifact.sidecar["format"]] = artifact
    return artifacts


@pytest.mark.parametrize("kind", list(KINDS))
def test_recurrent_models_train(recurrent_models, kind):
    assert recurrent_models[kind].metrics["test_accuracy"] > 0.85


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("target", ["cpu", "mcu"])
def test_int8_tflite_runs_in_litert_and_says_how_it_was_built(exported, digits, kind, target):
    artifact = exported[kind, target, "tflite"]
    verification = artifact.sidecar["verification"]
    assert verification["passed"] and verification["agreement"] >= 0.98
    assert abs(verification["accuracy"] - verification["keras_accuracy"]) <= 0.02
    record = artifact.sidecar["format_details"]["recurrent"]
    [layer] = record["layers"]
    ops = set(load(artifact.path).sidecar["mcu"]["ops"]) if target == "mcu" else None
    if kind == "lstm":  # one fused op with int8 weights and activations (16-bit cell state)
        assert layer["as"] == "UNIDIRECTIONAL_SEQUENCE_LSTM" and record["fused_lstm_ops"] == 1
        assert record["batch"] == 1 and record["integer_path"].startswith("full int8: UNIDIRECTIONAL")
        assert "reset" in record["state"]
        assert ops is None or "UNIDIRECTIONAL_SEQUENCE_LSTM" in ops
    else:  # GRU and SimpleRNN have no fused TFLite op: the recurrence is unrolled into builtin ops
        assert layer["as"] == "unrolled" and "no fused TFLite op" in layer["why"]
        assert ops is None or "WHILE" not in ops
    assert record["fallback"] is None
    model = load(artifact.path)
    assert [s.dtype for s in model.inputs] == ["int8"]
    assert evaluate(model, digits.x_test, digits.y_test)["accuracy"] == pytest.approx(
        verification["accuracy"]
    )


@pytest.mark.parametrize("kind", list(KINDS))
def test_mcu_int8_runs_in_tflite_micro(exported, digits, kind):
    artifact = exported[kind, "mcu", "tflite"]
    assert artifact.sidecar["format_details"]["recurrent"]["tflm"]["runs"] is True
    tflm = artifact.sidecar["verification"]["tflm"]
    assert tflm["backend"] == "tflm" and tflm["passed"]
    micro = evaluate(load(artifact.path, backend="tflm"), digits.x_test, digits.y_test)
    assert micro["accuracy"] == pytest.approx(tflm["accuracy"])
    assert abs(micro["accuracy"] - artifact.sidecar["verification"]["accuracy"]) <= 0.01


@pytest.mark.parametrize("kind", list(KINDS))
def test_onnx_keeps_the_recurrence_as_onnx_ops(exported, kind):
    artifact = exported[kind, "cpu", "onnx"]
    assert artifact.sidecar["verification"]["passed"]
    expected = {"lstm": "LSTM", "gru": "Loop", "simple_rnn": "Loop"}[kind]
    assert expected in artifact.sidecar["format_details"]["recurrent_ops"]


def test_fused_lstm_state_does_not_leak_between_samples(exported, digits):
    """The fused op keeps h and c in variable tensors across invocations; each prediction must start
    from zero state, so a sample's output does not depend on the samples run before it."""
    for backend in ("litert", "tflm"):
        model = load(exported["lstm", "mcu", "tflite"].path, backend=backend)
        x = digits.x_test[:40]
        np.testing.assert_array_equal(model.predict(x[::-1]), model.predict(x)[::-1])


def test_float32_and_int16x8_lstm(recurrent_models, digits, tmp_path):
    model = recurrent_models["lstm"].model
    [f32] = export_model(model, digits, "cpu", out_dir=tmp_path, formats="tflite", quant="float32")
    assert f32.sidecar["verification"]["agreement"] == 1.0
    assert f32.sidecar["format_details"]["recurrent"]["layers"][0]["as"] == "UNIDIRECTIONAL_SEQUENCE_LSTM"
    [i16] = export_model(model, digits, "cpu", out_dir=tmp_path, formats="tflite", quant="int16x8")
    record = i16.sidecar["format_details"]["recurrent"]
    # The converter has no 16x8 kernel for the fused op: the record says so and what was done instead.
    assert "16x8" in record["fallback"] and record["layers"][0]["as"] == "unrolled"
    assert i16.sidecar["verification"]["passed"]


class _Igamma(layers.Layer):
    """An op neither TFLite builtins nor ONNX have."""

    def call(self, x):
        import tensorflow as tf

        return tf.math.igamma(tf.abs(x) + 1.0, tf.abs(x) + 1.0)


class _Broken(layers.Layer):
    """Stands for a bug in code that runs while a converter traces the model."""

    broken = False

    def call(self, x):
        if self.broken:
            raise TypeError("a bug, not the user's mistake")
        return x


def test_a_model_the_converters_refuse_is_a_user_error(digits, tmp_path):
    model = keras.Sequential([keras.Input((8, 8, 1)), layers.Flatten(), layers.Dense(10), _Igamma()])
    for fmt, message in (("tflite", "TFLite converter failed"), ("onnx", "no ONNX opset 17 op for")):
        with pytest.raises(EdgeslimError, match=message):
            export_model(model, digits, "cpu", out_dir=tmp_path / fmt, formats=fmt, quant="float32")


def test_our_own_bugs_are_not_turned_into_user_errors(digits, tmp_path):
    broken = _Broken()
    model = keras.Sequential([keras.Input((8, 8, 1)), broken, layers.Flatten(), layers.Dense(10)])
    broken.broken = True
    for fmt in ("tflite", "onnx"):
        with pytest.raises(TypeError, match="a bug"):
            export_model(
                model, digits, "cpu", out_dir=tmp_path / fmt, formats=fmt, quant="float32", verify=False
            )


def test_calibration_data_of_the_wrong_shape_is_a_bug_not_a_refusal(recurrent_models):
    from edgeslim.export import tflite
    from edgeslim.recipe import QuantRecipe

    with pytest.raises(Exception) as caught:
        tflite.convert(
            recurrent_models["gru"].model, QuantRecipe("int8"), np.zeros((4, 3, 3), np.float32), None
        )
    assert not isinstance(caught.value, EdgeslimError)
