"""MNIST and Fashion-MNIST from IDX files, with the project's fixed split for the t10k-only folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeslim.data.dataset import Dataset, Preprocessing
from edgeslim.data.idx import IMAGES_MAGIC, LABELS_MAGIC, find_idx_pair, read_idx
from edgeslim.data.validate import Column, check_splits
from edgeslim.errors import EdgeslimError

# The fixed split of the 10,000 t10k images (shared/data/mnist/README.md), used everywhere so figures compare.
T10K_TRAIN_END = 8000
T10K_VAL_START = 7200
FULL_VAL_COUNT = 6000  # with the 60,000 training images: the last 6,000 validate

CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashion_mnist": [
        "t-shirt",
        "trouser",
        "pullover",
        "dress",
        "coat",
        "sandal",
        "shirt",
        "sneaker",
        "bag",
        "ankle-boot",
    ],
}
PREPROCESSING = Preprocessing(scale=1.0 / 255.0, offset=0.0, raw_dtype="uint8")


def load_mnist(name: str = "mnist", data_dir: str | Path | None = None) -> Dataset:
    if data_dir is None:
        x_tr, y_tr, x_te, y_te = _download(name)
        _check(
            name,
            f"keras.datasets.{name}",
            {
                "train": _columns("x_train", x_tr, "y_train", y_tr),
                "test": _columns("x_test", x_te, "y_test", y_te),
            },
        )
        return _from_train_test(name, x_tr, y_tr, x_te, y_te)
    folder = Path(data_dir)
    if not folder.is_dir():
        raise EdgeslimError(f"--data-dir {folder}: no such directory", _what_to_provide(name))
    test = find_idx_pair(folder, "t10k")
    if test is None:
        raise EdgeslimError(f"--data-dir {folder}: no t10k IDX files found", _what_to_provide(name))
    x_te, y_te = _read_pair(*test)
    train = find_idx_pair(folder, "train")
    if train is None:
        # The fixed split draws every split from t10k: its labels are checked as the training pool.
        _check(name, folder, {"train": _columns(test[0].name, x_te, test[1].name, y_te)})
        return _from_t10k_only(name, x_te, y_te)
    x_tr, y_tr = _read_pair(*train)
    pairs = {"train": (train, x_tr, y_tr), "test": (test, x_te, y_te)}
    _check(name, folder, {s: _columns(f[0].name, x, f[1].name, y) for s, (f, x, y) in pairs.items()})
    return _from_train_test(name, x_tr, y_tr, x_te, y_te)


def _read_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if len(images) != len(labels):
        raise EdgeslimError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels",
            "use the images and labels files of the same set",
        )
    return images, labels.astype(np.int64)


def _columns(x_key: str, x: np.ndarray, y_key: str, y: np.ndarray) -> tuple[Column, Column]:
    return Column(x_key, x), Column(y_key, y)


def _check(name: str, source: str | Path, splits: dict[str, tuple[Column, Column]]) -> None:
    """The checks every dataset shares (labels 0-9, two classes, test classes seen in training)."""
    inputs = {split: {"input": x} for split, (x, _) in splits.items()}
    targets = {split: {"output": y} for split, (_, y) in splits.items()}
    check_splits(source, "classification", inputs, targets, CLASS_NAMES[name])


def _to_model_input(images: np.ndarray) -> np.ndarray:
    return PREPROCESSING.apply(images)[..., None]


def _from_t10k_only(name: str, images: np.ndarray, labels: np.ndarray) -> Dataset:
    if len(images) != 10_000:
        raise EdgeslimError(
            f"the t10k files hold {len(images)} images; the fixed split needs the standard 10,000",
            "provide the standard t10k files, or add the train-* files",
        )
    x = _to_model_input(images)
    return Dataset(
        name=name,
        x_train=x[:T10K_VAL_START],
        y_train=labels[:T10K_VAL_START],
        x_val=x[T10K_VAL_START:T10K_TRAIN_END],
        y_val=labels[T10K_VAL_START:T10K_TRAIN_END],
        x_test=x[T10K_TRAIN_END:],
        y_test=labels[T10K_TRAIN_END:],
        class_names=CLASS_NAMES[name],
        preprocessing=PREPROCESSING,
    )


def _from_train_test(
    name: str, x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray
) -> Dataset:
    x_tr, x_te = _to_model_input(x_tr), _to_model_input(x_te)
    n_fit = len(x_tr) - min(FULL_VAL_COUNT, len(x_tr) // 10)
    return Dataset(
        name=name,
        x_train=x_tr[:n_fit],
        y_train=y_tr[:n_fit],
        x_val=x_tr[n_fit:],
        y_val=y_tr[n_fit:],
        x_test=x_te,
        y_test=y_te,
        class_names=CLASS_NAMES[name],
        preprocessing=PREPROCESSING,
    )


def _download(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    try:
        import keras

        module = keras.datasets.mnist if name == "mnist" else keras.datasets.fashion_mnist
        (x_tr, y_tr), (x_te, y_te) = module.load_data()
    except ImportError:
        raise EdgeslimError(f"dataset {name}: no --data-dir given", _what_to_provide(name)) from None
    except Exception as exc:  # noqa: BLE001 - any network failure means the same thing to the user
        raise EdgeslimError(
            f"dataset {name}: no --data-dir given and the download failed ({type(exc).__name__})",
            _what_to_provide(name),
        ) from None
    return x_tr, y_tr.astype(np.int64), x_te, y_te.astype(np.int64)


def _what_to_provide(name: str) -> str:
    return (
        f"pass --data-dir DIR, a folder holding the {name} IDX files t10k-images-idx3-ubyte[.gz] and "
        "t10k-labels-idx1-ubyte[.gz] (and optionally train-images/train-labels)"
    )
