"""The shared baseline for the MNIST benchmarks: mnistnet3 trained 8 epochs on the fixed split.

Cached in benchmarks/.cache (git-ignored) so the export and compression benchmarks train it once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"
CACHE = Path(__file__).resolve().parent / ".cache"

# The course's recipe for MNISTnet3 (shared/data/mnist/README.md).
MNISTNET3_RECIPE = {
    "epochs": 8,
    "batch_size": 128,
    "optimizer": "nesterov",
    "learning_rate": 0.01,
    "momentum": 0.9,
}


def mnist():
    from edgeslim.data import load_dataset

    if not MNIST_DIR.is_dir():
        sys.exit(f"real MNIST files not found in {MNIST_DIR}")
    return load_dataset("mnist", MNIST_DIR)


def trained_mnistnet3(retrain: bool = False):
    """Return (model, metrics); trains and caches on first use."""
    from edgeslim.modelio import load_keras_model, save_keras_model
    from edgeslim.train.config import TrainConfig
    from edgeslim.train.fit import train_model
    from edgeslim.train.zoo import build_model

    model_path, metrics_path = CACHE / "mnistnet3.keras", CACHE / "mnistnet3.json"
    if model_path.exists() and metrics_path.exists() and not retrain:
        return load_keras_model(model_path), json.loads(metrics_path.read_text())
    data = mnist()
    result = train_model(
        build_model("mnistnet3", data.input_shape, 10), data, TrainConfig(**MNISTNET3_RECIPE)
    )
    CACHE.mkdir(exist_ok=True)
    save_keras_model(result.model, model_path)
    metrics_path.write_text(json.dumps(result.metrics, indent=2))
    return result.model, result.metrics
