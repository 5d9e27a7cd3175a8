"""Real training runs: digits (the default) and MNIST from the real t10k files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeslim.cli import main


def test_digits_default_reaches_90_percent(digits, digits_model):
    from edgeslim.train.fit import evaluate_keras

    assert evaluate_keras(digits_model, digits)["test_accuracy"] >= 0.90


def test_mnist_short_training_reaches_90_percent(mnist, mnist_model):
    from edgeslim.train.fit import evaluate_keras

    assert evaluate_keras(mnist_model, mnist)["test_accuracy"] >= 0.90


def test_cli_train_writes_model_history_and_metrics(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--model",
            "digits_cnn",
            "--dataset",
            "digits",
            "--epochs",
            "2",
            "--optimizer",
            "adam",
            "--lr",
            "0.003",
            "--batch-size",
            "32",
            "--out",
            str(out),
            "--json",
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((out / "metrics.json").read_text())
    assert printed["test_accuracy"] == saved["test_accuracy"] > 0.5
    assert saved["params"] == 38_282 and saved["macs"] > 0 and saved["seconds_per_epoch"] > 0
    assert len(json.loads((out / "history.json").read_text())["loss"]) == 2
    assert (out / "model.keras").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp")]  # atomic writes leave no temporaries


def test_training_is_repeatable(digits):
    from edgeslim.train.config import TrainConfig
    from edgeslim.train.fit import train_model
    from edgeslim.train.zoo import build_model

    config = TrainConfig(epochs=1, batch_size=64, optimizer="adam", learning_rate=0.003, seed=7)
    first = train_model(build_model("digits_cnn", (8, 8, 1), 10, seed=7), digits, config, progress=False)
    second = train_model(build_model("digits_cnn", (8, 8, 1), 10, seed=7), digits, config, progress=False)
    for a, b in zip(first.model.get_weights(), second.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize(
    "overrides",
    [
        {"optimizer": "sgd", "schedule": "step", "step_epochs": 1},
        {"optimizer": "momentum", "schedule": "cosine", "l2": 1e-3},
        {
            "optimizer": "nesterov",
            "early_stopping": 1,
            "augment_shift": 0.1,
            "augment_rotation": 0.05,
            "augment_flip": True,
        },
    ],
)
def test_recipes_train(digits, overrides):
    from edgeslim.train.config import TrainConfig
    from edgeslim.train.fit import train_model
    from edgeslim.train.zoo import build_model

    config = TrainConfig(epochs=2, batch_size=64, learning_rate=0.05, **overrides)
    result = train_model(build_model("digits_cnn", (8, 8, 1), 10), digits, config, progress=False)
    assert np.isfinite(result.history["loss"]).all()
    assert result.metrics["test_accuracy"] > 0.3


def test_l2_penalty_enters_the_loss(digits):
    from edgeslim.train.fit import apply_l2
    from edgeslim.train.zoo import build_model

    model = build_model("digits_cnn", (8, 8, 1), 10)
    assert not model.losses
    apply_l2(model, 1e-2)
    assert float(sum(model.losses)) > 0


class _RecordingReporter:
    """A ProgressReporter that keeps what it was told (what a notebook or a GUI would draw)."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def start(self, description: str, total: int) -> None:
        self.calls.append(("start", description, total))

    def advance(self, steps: int = 1) -> None:
        self.calls.append(("advance", steps))

    def update(self, status: str, completed: int | None = None) -> None:
        self.calls.append(("update", status, completed))

    def stop(self) -> None:
        self.calls.append(("stop",))


def test_training_reports_through_an_injected_reporter(digits):
    from edgeslim.progress import ProgressReporter
    from edgeslim.train.config import TrainConfig
    from edgeslim.train.fit import train_model
    from edgeslim.train.zoo import build_model

    reporter = _RecordingReporter()
    assert isinstance(reporter, ProgressReporter)
    config = TrainConfig(epochs=2, batch_size=256, optimizer="adam", learning_rate=0.003)
    train_model(build_model("digits_cnn", (8, 8, 1), 10), digits, config, progress=reporter)
    steps = -(-len(digits.x_train) // 256)
    assert reporter.calls[0] == ("start", "train", 2 * steps) and reporter.calls[-1] == ("stop",)
    assert sum(1 for c in reporter.calls if c[0] == "advance") == 2 * steps
    updates = [c for c in reporter.calls if c[0] == "update"]
    assert [u[2] for u in updates] == [steps, 2 * steps] and "epoch 2/2" in updates[-1][1]


def test_training_imports_neither_the_cli_nor_compress():
    import subprocess
    import sys

    code = (
        "import sys\nimport edgeslim.train.fit, edgeslim.train.finetune, edgeslim.train.progress\n"
        "print(sorted(m for m in sys.modules if m.startswith(('edgeslim.cli', 'edgeslim.compress'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_zoo_models_that_need_adam_get_it_unless_told_otherwise():
    """lstm_rows and the autoencoder barely learn with the course's SGD: their own optimizer applies
    when the user names none, in the pipeline config as in the CLI (tests/test_zoo_rows runs the CLI)."""
    from edgeslim.pipeline import load_config
    from edgeslim.train.zoo_names import zoo_optimizer

    assert zoo_optimizer("lstm_rows", None) == {"optimizer": "adam", "learning_rate": 0.005}
    assert zoo_optimizer("lstm_rows", "nesterov") == {} and zoo_optimizer("lenet5", None) == {}

    def train(section: str) -> dict:
        return load_config(overrides=["model=lstm_rows", f"train={section}"]).train

    assert train("{epochs: 2}")["optimizer"] == "adam" and train("{epochs: 2}")["learning_rate"] == 0.005
    assert train("{optimizer: nesterov}")["learning_rate"] == 0.01
    assert train("{learning_rate: 0.001}")["optimizer"] == "adam"  # the rate given, the optimizer its own
