"""Tasks (classification, regression, reconstruction) and several named inputs and outputs: the
metrics, the pass rules, and the whole path train -> export -> verify -> evaluate on real digits."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import layers

from edgeslim.cli import main
from edgeslim.data import load_dataset
from edgeslim.errors import EdgeslimError
from edgeslim.export import export_model
from edgeslim.runtime import evaluate, load
from edgeslim.tasks import fidelity, get_task, roc_auc


def _pairwise_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    pos, neg = scores[labels], scores[~labels]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


def test_auc_is_the_share_of_positive_negative_pairs_ranked_right():
    rng = np.random.default_rng(0)
    labels = rng.random(300) < 0.3
    scores = np.round(rng.normal(size=300) + labels, 1)  # rounded: many ties
    assert roc_auc(labels, scores) == pytest.approx(_pairwise_auc(labels, scores), abs=1e-12)
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert roc_auc(np.array([1, 1, 0, 0]), np.array([0.1, 0.2, 0.3, 0.4])) == 0.0
    assert roc_auc(np.zeros(5, bool), np.arange(5.0)) is None  # one class only: undefined


def test_each_task_brings_its_metrics_and_headline():
    y = np.array([0, 1, 2, 1])
    probs = np.eye(3)[[0, 1, 1, 1]]
    classification = get_task("classification").metrics(y, probs)
    assert classification["accuracy"] == 0.75 and classification["samples"] == 4
    target, pred = np.array([1.0, 2.0, 3.0]), np.array([[1.0], [2.5], [2.0]])  # (N,) against (N, 1)
    regression = get_task("regression").metrics(target, pred)
    assert regression["mse"] == pytest.approx((0.25 + 1.0) / 3) and regression["mae"] == pytest.approx(0.5)
    assert regression["rel_max_diff"] == pytest.approx(1 / 3)
    x = np.zeros((4, 2, 2))
    recon = x + np.array([0.0, 0.1, 1.0, 2.0])[:, None, None]
    metrics = get_task("reconstruction").metrics(x, recon, anomaly=np.array([0, 0, 1, 1]))
    assert metrics["auc"] == 1.0 and metrics["mse"] == pytest.approx(np.mean([0, 0.01, 1, 4]))
    assert get_task("reconstruction").headline_of(metrics) == ("auc", 1.0)
    assert get_task("regression").higher_is_better is False
    with pytest.raises(EdgeslimError, match="unknown task"):
        get_task("segmentation")


def test_the_pass_rules():
    classification = get_task("classification")
    keras_out = np.eye(4)[[0, 1, 2, 3] * 25]
    artifact = keras_out.copy()
    artifact[:3] = np.eye(4)[[1, 2, 3]]  # 3 of 100 decisions changed
    rule = classification.compare(artifact, keras_out, None, floor=0.98)
    assert (rule.criterion, rule.score, rule.passed) == ("agreement", 0.97, False)
    regression = get_task("regression")
    y = np.linspace(0, 1, 51)  # variance 0.1040
    k = y + 0.1  # Keras' MSE 0.01
    assert regression.compare(k, k, y, 0.98).score == 1.0
    worse = regression.compare(y + 0.12, k, y, 0.98)  # extra MSE 0.0044: 4.2 % of the variance
    assert worse.criterion == "fidelity" and worse.score == pytest.approx(1 - 0.0044 / np.var(y))
    assert not worse.passed
    assert regression.compare(y + 0.105, k, y, 0.98).passed  # extra 0.001025: 1 % of the variance
    assert fidelity(-1.0, 0.1) == 1.0 and fidelity(0.2, 0.1) == 0.0


def test_several_outputs_are_scored_each_and_averaged():
    y = {"a": np.array([0, 1]), "b": np.array([1, 1])}
    out = {"a": np.eye(2)[[0, 1]], "b": np.eye(2)[[0, 1]]}
    metrics = get_task("classification").metrics(y, out)
    assert metrics["accuracy"] == 0.75 and metrics["per_output"]["b"]["accuracy"] == 0.5


def test_tasks_and_the_runtime_import_without_tensorflow():
    code = (
        "import sys\nfor m in ('tensorflow', 'keras'):\n    sys.modules[m] = None\n"
        "import edgeslim.tasks, edgeslim.runtime, edgeslim.data.npz\nprint('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "ok"


@pytest.fixture(scope="module")
def digits_npz(digits, tmp_path_factory):
    """Real digits as .npz files: regression (the ink of each image) and two inputs, two outputs."""
    folder = tmp_path_factory.mktemp("npz")

    def profile(x: np.ndarray) -> np.ndarray:  # the image's row and column sums: a second input
        return np.concatenate([x.sum(axis=2)[..., 0], x.sum(axis=1)[..., 0]], axis=1).astype(np.float32)

    arrays = {}
    for split in ("train", "test"):
        x, y = getattr(digits, f"x_{split}"), getattr(digits, f"y_{split}")
        arrays[split] = (x, y)
    np.savez(
        folder / "ink.npz",
        **{f"x_{s}": x.reshape(len(x), -1) for s, (x, _) in arrays.items()},
        **{
            f"y_{s}": x.reshape(len(x), -1).mean(axis=1).astype(np.float32) * 4
            for s, (x, _) in arrays.items()
        },
    )
    np.savez(
        folder / "two.npz",
        **{f"x_{s}_image": x for s, (x, _) in arrays.items()},
        **{f"x_{s}_profile": profile(x) for s, (x, _) in arrays.items()},
        **{f"y_{s}_digit": y for s, (_, y) in arrays.items()},
        **{f"y_{s}_parity": y % 2 for s, (_, y) in arrays.items()},
    )
    return folder


def test_npz_infers_the_task_and_names_the_inputs(digits_npz):
    ink = load_dataset("npz", digits_npz / "ink.npz")
    assert ink.task == "regression" and ink.y_train.dtype == np.float32 and ink.num_classes == 0
    two = load_dataset("npz", digits_npz / "two.npz")
    assert two.task == "classification" and two.input_names == ["image", "profile"]
    assert two.output_names == ["digit", "parity"] and two.input_shapes["profile"] == (16,)
    x, y = two.take("test", slice(0, 5))
    assert x["image"].shape == (5, 8, 8, 1) and y["parity"].shape == (5,)
    assert set(two.representative(7)) == {"image", "profile"}
    with pytest.raises(EdgeslimError, match="has 2 inputs"):
        _ = two.input_shape


def _fit(model, dataset, epochs=30):
    from edgeslim.train.config import TrainConfig
    from edgeslim.train.fit import train_model

    config = TrainConfig(epochs=epochs, batch_size=32, optimizer="adam", learning_rate=0.003, seed=0)
    return train_model(model, dataset, config, progress=False)


def test_regression_trains_exports_and_verifies_by_mse(digits_npz, tmp_path, capsys):
    data = load_dataset("npz", digits_npz / "ink.npz")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), layers.Dense(16, activation="relu"), layers.Dense(1)])
    trained = _fit(model, data)
    assert trained.metrics["task"] == "regression" and trained.metrics["test_mse"] < 0.01
    assert "test_accuracy" not in trained.metrics
    artifacts = export_model(model, data, "cpu", out_dir=tmp_path, formats=["tflite", "onnx"])
    for artifact in artifacts:
        v = artifact.sidecar["verification"]
        assert v["task"] == "regression" and v["criterion"] == "fidelity" and v["passed"], v
        assert v["accuracy"] is None and v["agreement"] is None
        assert set(v["metrics"]) >= {"mse", "mae", "rel_max_diff"} and v["keras_metrics"]["mse"] < 0.01
    tflite = next(a for a in artifacts if a.sidecar["format"] == "tflite")
    assert (
        main(
            [
                "eval",
                str(tflite.path),
                "--dataset",
                "npz",
                "--data-dir",
                str(digits_npz / "ink.npz"),
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["task"] == "regression" and result["mse"] == pytest.approx(
        tflite.sidecar["verification"]["metrics"]["mse"]
    )


def test_two_named_inputs_and_outputs_export_and_run(digits_npz, tmp_path):
    data = load_dataset("npz", digits_npz / "two.npz")
    keras.utils.set_random_seed(0)
    image, profile = keras.Input((8, 8, 1), name="image"), keras.Input((16,), name="profile")
    h = layers.Concatenate()([layers.Flatten()(image), layers.Dense(16, activation="relu")(profile)])
    h = layers.Dense(32, activation="relu")(h)
    outputs = {
        "digit": layers.Dense(10, activation="softmax", name="digit")(h),
        "parity": layers.Dense(2, activation="softmax", name="parity")(h),
    }
    model = keras.Model({"image": image, "profile": profile}, outputs)
    trained = _fit(model, data, epochs=15)
    assert trained.metrics["test_metrics"]["per_output"]["digit"]["accuracy"] > 0.85
    artifacts = export_model(
        model, data, "cpu", out_dir=tmp_path, formats=["tflite", "onnx"], calib_samples=64
    )
    for artifact in artifacts:
        v = artifact.sidecar["verification"]
        assert v["passed"] and v["agreement"] >= 0.98, v
        runtime = load(artifact.path)
        assert len(runtime.inputs) == 2 and len(runtime.outputs) == 2
        x, y = data.take("test", slice(None))
        result = evaluate(runtime, x, y)  # inputs fed by name, outputs matched to targets by name
        assert result["accuracy"] == pytest.approx(v["accuracy"])
        assert result["metrics"]["per_output"]["digit"]["accuracy"] > 0.85


def _report(task: str | None, rows: list[dict]) -> dict:
    """A report in the data model's shape: stages with ``deployed.metrics``, artifacts with ``metrics``."""
    stages = [
        {
            "name": f"0{i}-stage",
            "stage": "train",
            "params": 1000 - 100 * i,
            "nonzero_params": 900,
            "macs": 5000 - 500 * i,
            "delta_vs_baseline": None,
            "deployed": {
                "format": "tflite",
                "quantization": "float32",
                "bytes": 4000 - 900 * i,
                "gzip_bytes": 3000,
                "latency_ms_p50": 0.1,
                **row,
            },  # fmt: skip
            "layers": [],
            "changes": [],
        }
        for i, row in enumerate(rows)
    ]
    artifact = {"name": "cpu/model_int8.tflite", "format": "tflite", "quantization": "int8", "bytes": 1000,
                "gzip_bytes": 900, "latency_ms_p50": 0.05, "passed": True, **rows[-1]}  # fmt: skip
    report = {"run_dir": "run", "created": "now", "dataset": {"name": "d", "test": 10}, "failures": [],
              "baseline_accuracy": rows[0].get("accuracy"), "stages": stages, "artifacts": [artifact],
              "pareto": []}  # fmt: skip
    if task:
        report["task"] = task
    return report


@pytest.mark.parametrize(
    ("task", "rows", "shown", "hidden"),
    [
        ("regression",
         [{"metrics": {"mse": 0.02, "mae": 0.1}}, {"metrics": {"mse": 0.03, "mae": 0.12}, "fidelity": 0.99}],
         ["| MSE | MAE |", "0.03", "+0.01", "| fidelity |", "0.9900"], ["| accuracy |", "agreement"]),
        ("reconstruction",
         [{"metrics": {"mse": 0.02, "auc": 0.95}}, {"metrics": {"mse": 0.021, "auc": 0.94}}],
         ["| anomaly AUC | MSE |", "0.940", "baseline anomaly AUC 0.950"], ["| accuracy |"]),
        (None, [{"accuracy": 0.95}, {"accuracy": 0.93, "agreement": 0.97}],  # a run written before tasks
         ["| accuracy |", "93.00%", "| agreement |", "97.00%", "baseline accuracy 95.00%"], ["MSE"]),
    ],
)  # fmt: skip
def test_report_columns_follow_the_task(tmp_path, task, rows, shown, hidden):
    from edgeslim.report import write_report

    written = write_report(_report(task, rows), tmp_path, plots=True)
    text = written["md"].read_text()
    for fragment in shown:
        assert fragment in text, fragment
    for fragment in hidden:
        assert fragment not in text, fragment
    html = written["html"].read_text()
    assert "<th>" + ("accuracy" if task is None else "MSE") + "</th>" in html
    assert written["plot:accuracy_vs_bytes"].stat().st_size > 1000


def test_fit_refuses_a_regression_model_and_two_inputs_with_one_line(digits_npz, tmp_path, capsys):
    """fit's loss is accuracy points of one classifier output: a regression model, or a model with two
    inputs, is refused before any work (exit 2, one line, nothing written), not scored as a classifier."""
    inputs = keras.Input((64,))
    keras.Model(inputs, layers.Dense(1)(layers.Dense(8)(inputs))).save(tmp_path / "ink.keras")
    image, profile = keras.Input((8, 8, 1), name="image"), keras.Input((16,), name="profile")
    joined = layers.Concatenate()([layers.Flatten()(image), profile])
    heads = [layers.Dense(10, activation="softmax", name="digit")(joined),
             layers.Dense(2, activation="softmax", name="parity")(joined)]  # fmt: skip
    keras.Model([image, profile], heads).save(tmp_path / "two.keras")
    for model, data, why in (("ink", "ink.npz", "regression model"), ("two", "two.npz", "2 inputs")):
        out = tmp_path / f"fit-{model}"
        code = main(["fit", str(tmp_path / f"{model}.keras"), "--dataset", "npz", "--data-dir",
                     str(digits_npz / data), "--max-flash", "8KB", "--out", str(out)])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2 and err.count("error:") == 1 and why in err and "Traceback" not in err, err
        assert not (out / "fit.json").exists()
