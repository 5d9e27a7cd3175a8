"""The zoo's recurrent and anomaly-detection rows end to end: train -> export int8 (cpu and mcu) ->
eval in LiteRT and TFLite Micro; and DS-CNN on keyword-spotting-shaped input."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from edgeslim.cli import main
from edgeslim.data import Dataset, load_dataset
from edgeslim.export import export_model


def test_zoo_names_match_and_the_new_rows_build():
    from edgeslim.train.zoo import MODELS, build_model
    from edgeslim.train.zoo_names import ZOO_NAMES, ZOO_TASKS

    assert set(MODELS) == set(ZOO_NAMES) and ZOO_TASKS["autoencoder"] == "reconstruction"
    rows = build_model("lstm_rows", (28, 28, 1), 10)
    assert rows.count_params() == 4 * 128 * (28 + 128 + 1) + 129 * 10 == 81_674
    assert build_model("lstm_rows", (28, 28), 10).output_shape == (None, 10)  # steps x features directly
    auto = build_model("autoencoder", (28, 28, 1), 0)
    assert auto.output_shape == (None, 28, 28, 1)
    assert min(layer.units for layer in auto.layers if hasattr(layer, "units")) == 8  # the bottleneck


def _eval_json(capsys, artifact, *args: str) -> dict:
    assert main(["eval", str(artifact), *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_lstm_rows_on_mnist_trains_exports_and_runs_in_litert_and_tflm(mnist_dir, mnist, tmp_path, capsys):
    run = tmp_path / "lstm"
    data_args = ["--dataset", "mnist", "--data-dir", str(mnist_dir)]
    assert main(["train", "--model", "lstm_rows", *data_args, "--epochs", "1", "--optimizer", "adam",
                 "--lr", "0.005", "--batch-size", "64", "--out", str(run), "--json"]) == 0  # fmt: skip
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["test_accuracy"] > 0.7 and metrics["params"] == 81_674
    for target in ("cpu", "mcu"):
        [artifact] = export_model(
            run / "model.keras",
            mnist,
            target,
            out_dir=tmp_path / target,
            formats=["tflite"],
            verify_samples=400,
        )
        v = artifact.sidecar["verification"]
        assert v["passed"] and abs(v["accuracy"] - v["keras_accuracy"]) <= 0.02
        assert (
            artifact.sidecar["format_details"]["recurrent"]["layers"][0]["as"]
            == "UNIDIRECTIONAL_SEQUENCE_LSTM"
        )
        litert = _eval_json(capsys, artifact.path, *data_args, "--limit", "400")
        assert litert["task"] == "classification" and litert["accuracy"] == pytest.approx(v["accuracy"])
    micro = _eval_json(capsys, artifact.path, *data_args, "--limit", "400", "--backend", "tflm")
    assert micro["backend"] == "tflm" and micro["accuracy"] == pytest.approx(v["tflm"]["accuracy"])
    assert artifact.sidecar["mcu"]["fits"]


@pytest.fixture(scope="module")
def autoencoder_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("auto") / "run"
    assert main(["train", "--model", "autoencoder", "--dataset", "digits", "--anomaly-class", "0",
                 "--epochs", "30", "--optimizer", "adam", "--lr", "0.003", "--batch-size", "32",
                 "--out", str(run), "--quiet"]) == 0  # fmt: skip
    return run


def test_autoencoder_detects_a_held_out_class(autoencoder_run, digits, tmp_path, capsys):
    metrics = json.loads((autoencoder_run / "metrics.json").read_text())
    assert metrics["task"] == "reconstruction" and "test_accuracy" not in metrics
    assert metrics["dataset"]["anomaly_class"] == 0 and metrics["test_auc"] > 0.8
    data = load_dataset("digits", anomaly_class=0)
    assert data.task == "reconstruction" and data.anomaly.sum() == (digits.y_test == 0).sum()
    assert data.y_train is data.x_train and len(data.x_train) == (digits.y_train != 0).sum()
    [artifact] = export_model(
        autoencoder_run / "model.keras", data, "cpu", out_dir=tmp_path, formats=["tflite"]
    )
    v = artifact.sidecar["verification"]
    assert v["task"] == "reconstruction" and v["criterion"] == "fidelity" and v["passed"], v
    assert abs(v["metrics"]["auc"] - v["keras_metrics"]["auc"]) <= 0.02
    args = ["--dataset", "digits", "--anomaly-class", "0"]
    litert = _eval_json(capsys, artifact.path, *args)
    assert set(litert) >= {"mse", "auc", "samples"} and "accuracy" not in litert
    assert litert["auc"] == pytest.approx(v["metrics"]["auc"]) and litert["mse"] == pytest.approx(
        v["metrics"]["mse"]
    )
    plain = _eval_json(capsys, artifact.path, "--dataset", "digits")  # no anomaly class: reconstruction only
    assert plain["task"] == "reconstruction" and "auc" not in plain


def test_autoencoder_exports_for_the_mcu_and_runs_in_tflite_micro(autoencoder_run, tmp_path, capsys):
    data = load_dataset("digits", anomaly_class=0)
    [artifact] = export_model(
        autoencoder_run / "model.keras", data, "mcu", out_dir=tmp_path, formats=["tflite"]
    )
    v = artifact.sidecar["verification"]
    assert v["passed"] and v["tflm"]["passed"] and artifact.sidecar["mcu"]["fits"]
    micro = _eval_json(
        capsys, artifact.path, "--dataset", "digits", "--anomaly-class", "0", "--backend", "tflm"
    )
    assert micro["backend"] == "tflm" and micro["auc"] == pytest.approx(v["tflm"]["metrics"]["auc"])
    assert abs(micro["auc"] - v["metrics"]["auc"]) < 0.01


def _keyword_spotting_shaped(seed: int = 0) -> Dataset:
    """Synthetic 49x10 'spectrograms' (MLPerf Tiny's keyword-spotting input: 49 frames of 10 MFCCs) in
    noise, one stroke per sample at a random place: a tone (constant coefficient), a click (every
    coefficient at once), a rising or a falling sweep. The shape, not the place, is the class."""
    rng = np.random.default_rng(seed)
    strokes = {
        0: [(t, 0) for t in range(8)],
        1: [(0, f) for f in range(8)],
        2: [(t, t) for t in range(8)],
        3: [(t, 7 - t) for t in range(8)],
    }

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 4, n)
        x = rng.normal(0, 3.0, (n, 49, 10)).astype(np.float32)  # MFCC-like magnitudes
        for i, label in enumerate(y):
            t0, f0 = rng.integers(0, 41), rng.integers(0, 2)
            for dt, df in strokes[int(label)]:
                x[i, t0 + dt, f0 + df] += 15.0
        return x[..., None], y

    (xtr, ytr), (xva, yva), (xte, yte) = make(3200), make(100), make(200)
    return Dataset("kws_shaped", xtr, ytr, xva, yva, xte, yte, [f"kw{i}" for i in range(4)])


def test_dscnn_on_keyword_spotting_shaped_input(tmp_path):
    from edgeslim.runtime import evaluate, load
    from edgeslim.train.config import TrainConfig
    from edgeslim.train.fit import train_model
    from edgeslim.train.zoo import build_model

    data = _keyword_spotting_shaped()
    model = build_model("dscnn", data.input_shape, data.num_classes)
    # 800 steps: DS-CNN's nine BatchNorms need their moving statistics settled (momentum 0.99).
    config = TrainConfig(epochs=2, batch_size=8, optimizer="adam", learning_rate=0.003)
    trained = train_model(model, data, config, progress=False)
    assert data.input_shape == (49, 10, 1) and trained.metrics["test_accuracy"] > 0.9
    [artifact] = export_model(model, data, "cpu", out_dir=tmp_path, formats=["tflite"], quant="int8")
    v = artifact.sidecar["verification"]
    assert v["backend"] == "litert" and v["passed"]
    runtime = load(artifact.path)
    assert runtime.inputs[0].shape == (None, 49, 10, 1) and runtime.inputs[0].dtype == "int8"
    assert evaluate(runtime, data.x_test, data.y_test)["accuracy"] == pytest.approx(v["accuracy"])
    assert dataclasses.asdict(data.preprocessing)["scale"] == 1.0
