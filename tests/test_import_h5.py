"""tf.keras (Keras 2) .h5 models as users bring them: translated, loaded with the same predictions, safe.

The .h5 files are real: small versions of the four MLPerf Tiny reference architectures (keyword
spotting DS-CNN, visual wake words MobileNetV1, image classification ResNet-8, anomaly detection dense
autoencoder), built and saved by tf.keras itself (the tf_keras package, from the `bench` extra) in a
subprocess, so it never shares a process with Keras 3. tf.keras' own predictions on random inputs are
saved beside each file and compared with what edgeslim loads.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from edgeslim.cli import main
from edgeslim.errors import EdgeslimError
from edgeslim.modelio import load_keras_model, load_notes

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tf_keras") is None,
    reason="tf_keras (Keras 2) is needed to write real .h5 files: pip install -e '.[bench]'",
)

# Runs in a child process: builds the models in tf.keras, randomizes every weight (batch-norm
# statistics included, so inference is not the identity), saves .h5 files and tf.keras' predictions.
BUILD = r"""
import os, sys
import numpy as np
import tf_keras as k

L = k.layers
out, mark = sys.argv[1], sys.argv[2]
reg = k.regularizers.l2(1e-4)
k.utils.set_random_seed(0)


def bn_relu(x):
    return L.Activation("relu")(L.BatchNormalization()(x))


def ds_cnn():  # keyword spotting: MFCC 49x10 -> 12 words
    inp = k.Input((49, 10, 1))
    x = bn_relu(L.Conv2D(16, (10, 4), strides=(2, 2), padding="same", kernel_regularizer=reg)(inp))
    x = L.Dropout(0.2)(x)
    for _ in range(2):
        x = bn_relu(L.DepthwiseConv2D(3, padding="same", depthwise_regularizer=reg)(x))
        x = bn_relu(L.Conv2D(16, 1, kernel_regularizer=reg)(x))
    x = L.Dropout(0.4)(x)
    x = L.AveragePooling2D(pool_size=(25, 5))(x)
    return k.Model(inp, L.Dense(12, activation="softmax")(L.Flatten()(x)))


def mobilenet():  # visual wake words: MobileNetV1 alpha 0.25, two blocks
    inp = k.Input((32, 32, 3))
    x = bn_relu(L.Conv2D(8, 3, strides=2, padding="same", use_bias=False, kernel_regularizer=reg)(inp))
    for filters, stride in ((16, 1), (32, 2)):
        x = bn_relu(L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x))
        x = bn_relu(L.Conv2D(filters, 1, use_bias=False, kernel_regularizer=reg)(x))
    x = L.AveragePooling2D(pool_size=x.shape[1:3])(x)
    return k.Model(inp, L.Dense(2, activation="softmax")(L.Flatten()(x)))


def resnet8():  # image classification: one identity and one projection residual block
    inp = k.Input((32, 32, 3))
    conv = dict(padding="same", kernel_initializer="he_normal", kernel_regularizer=reg)
    x = bn_relu(L.Conv2D(16, 3, **conv)(inp))
    y = bn_relu(L.Conv2D(16, 3, **conv)(x))
    x = L.Activation("relu")(L.Add()([x, L.BatchNormalization()(L.Conv2D(16, 3, **conv)(y))]))
    y = bn_relu(L.Conv2D(32, 3, strides=2, **conv)(x))
    y = L.BatchNormalization()(L.Conv2D(32, 3, **conv)(y))
    x = L.Activation("relu")(L.Add()([L.Conv2D(32, 1, strides=2, **conv)(x), y]))
    x = L.AveragePooling2D(pool_size=x.shape[1:3])(x)
    return k.Model(inp, L.Dense(10, activation="softmax")(L.Flatten()(x)))


def autoencoder():  # anomaly detection: 640 -> 8 -> 640
    inp = k.Input((640,))
    x = inp
    for units in (64, 64, 8, 64, 64):
        x = bn_relu(L.Dense(units)(x))
    return k.Model(inp, L.Dense(640)(x))


def extras():  # the other tf.keras-only arguments: SeparableConv2D, SpatialDropout2D, Conv2DTranspose, LSTM
    inp = k.Input((8, 8, 3))
    x = L.SeparableConv2D(4, 3, padding="same")(inp)
    x = L.SpatialDropout2D(0.1)(x)
    x = L.Conv2DTranspose(4, 3, padding="same")(x)
    x = L.LSTM(5)(L.Reshape((64, 4))(x))
    return k.Model(inp, L.Dense(3)(x))


def digits_dw():  # 8x8 digits with a depthwise convolution: trains in seconds
    inp = k.Input((8, 8, 1))
    x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=4)(inp)
    x = L.Conv2D(8, 1, activation="relu")(x)
    return k.Model(inp, L.Dense(10, activation="softmax")(L.Flatten()(x)))


def with_lambda():  # code in the file: touches `mark` whenever it runs
    inp = k.Input((4,))
    fn = eval(f"lambda x: (open({mark!r}, 'a').close(), x * 3.0)[1]")
    return k.Model(inp, L.Dense(2)(L.Lambda(fn)(inp)))


rng = np.random.default_rng(0)
for name, build in [("ds_cnn", ds_cnn), ("mobilenet", mobilenet), ("resnet8", resnet8),
                    ("autoencoder", autoencoder), ("extras", extras), ("digits_dw", digits_dw),
                    ("lambda", with_lambda)]:
    model = build()
    for w in model.weights:
        scale = (0.5, 1.5) if ("gamma" in w.name or "moving_variance" in w.name) else (-0.5, 0.5)
        w.assign(rng.uniform(*scale, w.shape).astype("float32"))
    model.compile(optimizer="adam", loss="mse")  # a training config in the file, as tutorials leave it
    model.save(f"{out}/{name}.h5")
    x = rng.standard_normal((4,) + model.input_shape[1:]).astype("float32")
    np.savez(f"{out}/{name}.npz", x=x, y=model.predict(x, verbose=0), params=model.count_params())
    if name == "ds_cnn":
        model.save_weights(f"{out}/weights_only.h5")
        model.save(f"{out}/saved_model_dir", save_format="tf")
if os.path.exists(mark):
    os.remove(mark)  # building and predicting ran the lambda here; the tests see only what loading runs
"""

ARCHITECTURES = ["ds_cnn", "mobilenet", "resnet8", "autoencoder", "extras"]


@pytest.fixture(scope="module")
def h5_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("h5")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, "-c", BUILD, str(folder), str(folder / "lambda_ran")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


def _error_line(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("error:"), err
    return err


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_h5_loads_with_tf_keras_predictions(h5_dir, name):
    path = h5_dir / f"{name}.h5"
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    reference = np.load(h5_dir / f"{name}.npz")
    model = load_keras_model(path)
    assert model.count_params() == int(reference["params"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = model(reference["x"], training=False)
    assert not [w for w in caught if "structure" in str(w.message)], "one-element input list kept"
    assert not isinstance(y, (list, tuple))
    assert not isinstance(model.input, list) and not isinstance(model.output, list), "one-element lists kept"
    np.testing.assert_allclose(np.asarray(y), reference["y"], rtol=1e-5, atol=1e-5)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before, "the user's file was written"


def test_translation_notes_say_what_changed(h5_dir):
    for name in ("ds_cnn", "mobilenet"):
        notes = load_notes(load_keras_model(h5_dir / f"{name}.h5"))
        assert len(notes) == 1 and notes[0].startswith("DepthwiseConv2D x"), notes
        assert "groups=1" in notes[0]
    assert load_notes(load_keras_model(h5_dir / "resnet8.h5")) == ()  # Keras 3 reads it as it is
    notes = "\n".join(load_notes(load_keras_model(h5_dir / "extras.h5")))
    for expected in (
        "SeparableConv2D x1: dropped tf.keras-only groups=1",
        "kernel_initializer",
        "SpatialDropout2D x1: dropped tf.keras-only trainable=True",
        "Conv2DTranspose x1: dropped tf.keras-only groups=1",
        "LSTM x1: dropped tf.keras-only time_major=False",
    ):
        assert expected in notes, notes


def test_inspect_h5_prints_the_translation_note(h5_dir, capsys):
    path = h5_dir / "ds_cnn.h5"
    assert main(["inspect", str(path)]) == 0
    captured = capsys.readouterr()
    assert "total" in captured.out and "DepthwiseConv2D" in captured.out
    notes = [line for line in captured.err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "DepthwiseConv2D x2: dropped tf.keras-only groups=1" in notes[0], captured.err
    assert main(["inspect", str(path), "--json"]) == 0
    import json

    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "keras" and info["total_params"] == int(np.load(h5_dir / "ds_cnn.npz")["params"])
    assert len(info["notes"]) == 1 and "groups=1" in info["notes"][0]


def test_train_takes_an_h5_model(h5_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        ["train", "--model", str(h5_dir / "digits_dw.h5"), "--dataset", "digits", "--epochs", "1"]
        + ["--out", str(out), "--quiet"]
    )
    assert code == 0, capsys.readouterr().err
    assert load_keras_model(out / "model.keras").count_params() == int(
        np.load(h5_dir / "digits_dw.npz")["params"]
    )


def test_lambda_h5_runs_no_code_unless_unsafe(h5_dir, capsys):
    path, mark = h5_dir / "lambda.h5", h5_dir / "lambda_ran"
    with pytest.raises(EdgeslimError, match="carries Python code") as refused:
        load_keras_model(path)
    assert "--unsafe-load" in (refused.value.hint or "")
    assert "--unsafe-load" in _error_line(capsys, ["inspect", str(path)])
    assert not mark.exists(), "the Lambda's bytecode ran under safe mode"
    model = load_keras_model(path, unsafe=True)
    assert mark.exists(), "with --unsafe-load the Lambda should have been rebuilt (and run, symbolically)"
    reference = np.load(h5_dir / "lambda.npz")
    np.testing.assert_allclose(np.asarray(model(reference["x"])), reference["y"], rtol=1e-5, atol=1e-5)


def test_savedmodel_folder_says_what_to_do(h5_dir, capsys):
    folder = h5_dir / "saved_model_dir"
    assert (folder / "saved_model.pb").is_file()
    with pytest.raises(EdgeslimError, match="TensorFlow SavedModel"):
        load_keras_model(folder)
    err = _error_line(capsys, ["inspect", str(folder)])
    assert "SavedModel" in err and ".h5" in err and ".tflite" in err
    assert "SavedModel" in _error_line(capsys, ["inspect", str(folder / "saved_model.pb")])


def test_files_that_are_not_h5_models(h5_dir, tmp_path, capsys):
    noise = tmp_path / "noise.h5"
    noise.write_bytes(np.random.default_rng(1).bytes(4096))
    assert "not an HDF5 model file" in _error_line(capsys, ["inspect", str(noise)])
    with pytest.raises(EdgeslimError, match="not an HDF5 model file"):
        load_keras_model(noise)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes((h5_dir / "ds_cnn.h5").read_bytes()[:3000])
    assert "corrupt" in _error_line(capsys, ["inspect", str(truncated)])
    assert "only weights" in _error_line(capsys, ["inspect", str(h5_dir / "weights_only.h5")])
    renamed = tmp_path / "model.h5"
    from edgeslim.modelio import save_keras_model

    save_keras_model(load_keras_model(h5_dir / "autoencoder.h5"), tmp_path / "model.keras")
    shutil.copy(tmp_path / "model.keras", renamed)
    assert "rename it" in _error_line(capsys, ["inspect", str(renamed)])
    for name, expected in [("m.pt", "PyTorch"), ("m.tflite", "exported .tflite"), ("m.pb", "SavedModel")]:
        (tmp_path / name).write_bytes(b"x")
        with pytest.raises(EdgeslimError, match=expected):
            load_keras_model(tmp_path / name)


def test_a_tf_keras_value_that_cannot_be_dropped_is_refused():
    from edgeslim.legacy_h5 import translate

    def depthwise(groups):
        return {"class_name": "DepthwiseConv2D", "config": {"name": "dw", "groups": groups}}

    config = {"class_name": "Functional", "config": {"layers": [depthwise(1), depthwise(1)]}}
    assert translate(config) == [
        "DepthwiseConv2D x2: dropped tf.keras-only groups=1 (Keras 3 has no such argument; 1 was tf.keras' "
        "only value)"
    ]
    assert "groups" not in config["config"]["layers"][0]["config"]
    with pytest.raises(EdgeslimError, match="'dw' \\(DepthwiseConv2D\\) uses the tf.keras-only groups=2"):
        translate({"class_name": "Functional", "config": {"layers": [depthwise(2)]}})
    recurrent = {"class_name": "LSTM", "config": {"name": "lstm", "time_major": True}}
    with pytest.raises(EdgeslimError, match="time_major=True"):
        translate({"class_name": "Sequential", "config": {"layers": [recurrent]}})
