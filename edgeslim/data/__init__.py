"""Datasets by name. Every loader returns a :class:`Dataset`; nothing here knows about models.

Heavy libraries (scikit-learn, keras.datasets) are imported only when their dataset is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeslim.data.dataset import Dataset, Preprocessing
from edgeslim.errors import EdgeslimError

DATASETS: dict[str, str] = {
    "digits": "scikit-learn's 8x8 handwritten digits, embedded (default)",
    "mnist": "MNIST from IDX files in --data-dir (t10k alone uses the fixed 8,000/2,000 split)",
    "fashion_mnist": "Fashion-MNIST from IDX files in --data-dir",
    "npz": "your own .npz (x_train, y_train, x_test, y_test[, x_val, y_val]; x_train_<input> for several "
    "inputs; float y: regression; no y: reconstruction) given as --data-dir",
    "folder": "your own PNG/JPEG images in --data-dir, one subfolder per class ([train|val|test/]<class>/)",
}
# Options only the folder dataset takes; None means "not given" for every dataset.
FOLDER_OPTIONS = ("image_size", "color_mode", "class_names")


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    seed: int = 0,
    anomaly_class: int | None = None,
    **options: Any,
) -> Dataset:
    """Load a dataset by name; ``data_dir`` is the IDX folder (mnist), the .npz file (npz) or the image
    folder (folder). ``options`` (folder only): ``image_size`` (HxW), ``color_mode`` (grayscale/rgb) and
    ``class_names`` (a model's classes, which fix the label order). ``anomaly_class`` (any labelled
    dataset): reconstruction on the other classes, that class flagged anomalous in the test split."""
    given = {key: value for key, value in options.items() if value is not None}
    unknown = sorted(set(given) - set(FOLDER_OPTIONS))
    if unknown:
        raise EdgeslimError(
            f"unknown dataset options {unknown}", f"the folder dataset takes {FOLDER_OPTIONS}"
        )
    if given and name != "folder":
        flags = ", ".join("--" + key.replace("_", "-") for key in given)
        raise EdgeslimError(f"{flags}: only the folder dataset takes it, not {name}", "drop it")
    loaders: dict[str, Callable[[], Dataset]] = {
        "digits": lambda: _digits(seed),
        "mnist": lambda: _mnist("mnist", data_dir),
        "fashion_mnist": lambda: _mnist("fashion_mnist", data_dir),
        "npz": lambda: _npz(data_dir, seed),
        "folder": lambda: _folder(data_dir, seed, given),
    }
    if name not in loaders:
        if not name.endswith(".npz"):
            raise EdgeslimError(
                f"unknown dataset {name!r}", f"choose one of {sorted(loaders)} or give a .npz path"
            )
        data_dir, name = name, "npz"  # the npz loader reads data_dir when it is called
    dataset = loaders[name]()
    if anomaly_class is None:
        return dataset
    from edgeslim.data.anomaly import as_anomaly_detection

    return as_anomaly_detection(dataset, anomaly_class)


def _digits(seed: int) -> Dataset:
    from edgeslim.data.digits import load_digits

    return load_digits(seed)


def _mnist(name: str, data_dir: str | Path | None) -> Dataset:
    from edgeslim.data.mnist import load_mnist

    return load_mnist(name, data_dir)


def _npz(path: str | Path | None, seed: int) -> Dataset:
    if path is None:
        raise EdgeslimError("dataset npz needs a file", "pass --data-dir path/to/data.npz")
    from edgeslim.data.npz import load_npz

    return load_npz(path, seed)


def _folder(data_dir: str | Path | None, seed: int, options: dict[str, Any]) -> Dataset:
    from edgeslim.data.folder import load_folder

    return load_folder(data_dir, seed, **options)


__all__ = ["DATASETS", "Dataset", "Preprocessing", "load_dataset"]
