"""Datasets by name. Every loader returns a :class:`Dataset`; nothing here knows about models.

Heavy libraries (scikit-learn, keras.datasets) are imported only when their dataset is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgeslim.data.dataset import Dataset, Preprocessing
from edgeslim.errors import EdgeslimError

DATASETS: dict[str, str] = {
    "digits": "scikit-learn's 8x8 handwritten digits, embedded (default)",
    "mnist": "MNIST from IDX files in --data-dir (t10k alone uses the fixed 8,000/2,000 split)",
    "fashion_mnist": "Fashion-MNIST from IDX files in --data-dir",
    "npz": "your own .npz (x_train, y_train, x_test, y_test[, x_val, y_val]) given as --data-dir",
}


def load_dataset(name: str, data_dir: str | Path | None = None, seed: int = 0) -> Dataset:
    """Load a dataset by name; ``data_dir`` is the IDX folder (mnist) or the .npz file (npz)."""
    loaders: dict[str, Callable[[], Dataset]] = {
        "digits": lambda: _digits(seed),
        "mnist": lambda: _mnist("mnist", data_dir),
        "fashion_mnist": lambda: _mnist("fashion_mnist", data_dir),
        "npz": lambda: _npz(data_dir, seed),
    }
    if name not in loaders:
        if name.endswith(".npz"):
            return _npz(name, seed)
        raise EdgeslimError(
            f"unknown dataset {name!r}", f"choose one of {sorted(loaders)} or give a .npz path"
        )
    return loaders[name]()


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


__all__ = ["DATASETS", "Dataset", "Preprocessing", "load_dataset"]
