"""`edgeslim train` as a Python function: build or load a model, train it, write the run folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeslim.atomic import write_json
from edgeslim.data import load_dataset
from edgeslim.errors import EdgeslimError
from edgeslim.modelio import KERAS_SUFFIXES
from edgeslim.progress import ProgressReporter
from edgeslim.train.config import TrainConfig
from edgeslim.train.zoo_names import ZOO_TASKS


@dataclass
class TrainRun:
    model_path: Path
    metrics: dict[str, Any]
    history: dict[str, list[float]]


def resolve_model(spec: str, dataset: Any, unsafe: bool = False, seed: int = 0):
    """A zoo name builds a fresh model for the dataset's shape; a path loads a user's ``.keras`` model
    (safe mode), whatever its inputs."""
    from edgeslim.train.zoo import MODELS, build_model

    if spec in MODELS:
        return build_model(spec, dataset.input_shape, dataset.num_classes, seed=seed)
    if spec.endswith(KERAS_SUFFIXES) or "/" in spec or Path(spec).exists():
        from edgeslim.modelio import load_keras_model

        return load_keras_model(spec, unsafe=unsafe)
    raise EdgeslimError(
        f"unknown model {spec!r}", f"choose one of {sorted(MODELS)} or give a path to a .keras (or .h5) file"
    )


def train_inputs(model: str, data_dir: str | Path | None) -> list[str | Path | None]:
    """What training reads from the user (a model file, a data folder): its run folder never holds them."""
    return [model if model.endswith(KERAS_SUFFIXES) else None, data_dir]


def train_to_dir(
    model: str,
    dataset: str,
    out: str | Path,
    config: TrainConfig,
    data_dir: str | Path | None = None,
    unsafe: bool = False,
    progress: bool | ProgressReporter | None = True,
    anomaly_class: int | None = None,
    image_size: str | None = None,
    color_mode: str | None = None,
) -> TrainRun:
    """Train and write ``out/model.keras``, ``out/history.json`` and ``out/metrics.json`` atomically.

    ``anomaly_class``: train a reconstruction model on the other classes and score the test split's
    reconstruction error as an anomaly detector (AUC). A reconstruction zoo model (autoencoder) on a
    labelled dataset learns to reconstruct every class when none is held out.
    """
    from edgeslim.analysis.keras_model import analyze_keras
    from edgeslim.data.anomaly import dataset_for_task
    from edgeslim.modelio import save_keras_model
    from edgeslim.ownership import owned
    from edgeslim.train.fit import train_model

    # Never over the user's model or data: the run folder must not hold them.
    with owned(out, "train", inputs=train_inputs(model, data_dir)) as out:
        options = {"image_size": image_size, "color_mode": color_mode}  # the folder dataset's
        data = load_dataset(dataset, data_dir, seed=config.seed, anomaly_class=anomaly_class, **options)
        data = dataset_for_task(data, ZOO_TASKS.get(model))  # an autoencoder reconstructs labelled images
        net = resolve_model(model, data, unsafe=unsafe, seed=config.seed)
        result = train_model(net, data, config, progress=progress)
        stats = analyze_keras(result.model)
        metrics = {
            **result.metrics,
            "model": result.model.name,
            "dataset": data.summary(),
            "params": stats.total_params,
            "macs": stats.total_macs,
            "config": config.to_dict(),
        }
        model_path = save_keras_model(result.model, out / "model.keras")
        write_json(out / "history.json", result.history)
        write_json(out / "metrics.json", metrics)  # last: its presence means the folder is complete
        return TrainRun(model_path=model_path, metrics=metrics, history=result.history)
