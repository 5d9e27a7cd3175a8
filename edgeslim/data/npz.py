"""A user's own ``.npz`` with x_train, y_train, x_test, y_test (optional x_val, y_val)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from edgeslim.data.dataset import Dataset, Preprocessing
from edgeslim.data.split import stratified_split
from edgeslim.errors import EdgeslimError

REQUIRED = ("x_train", "y_train", "x_test", "y_test")
VAL_FRACTION = 0.1


def load_npz(path: str | Path, seed: int = 0) -> Dataset:
    path = Path(path)
    if not path.is_file():
        raise EdgeslimError(f"{path}: no such file", "pass --data-dir path/to/data.npz")
    try:
        with np.load(path, allow_pickle=False) as npz:  # no pickles: a data file must not run code
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise EdgeslimError(f"{path}: not a readable .npz file ({exc})", "save it with numpy.savez") from None
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise EdgeslimError(f"{path}: missing arrays {missing}", f"the .npz needs {list(REQUIRED)}")
    x_train, y_train = (
        _images(arrays["x_train"], path, "x_train"),
        _labels(arrays["y_train"], path, "y_train"),
    )
    x_test, y_test = _images(arrays["x_test"], path, "x_test"), _labels(arrays["y_test"], path, "y_test")
    for xk, x, yk, y in (("x_train", x_train, "y_train", y_train), ("x_test", x_test, "y_test", y_test)):
        if len(x) != len(y):
            raise EdgeslimError(f"{path}: {xk} has {len(x)} rows but {yk} has {len(y)}", "fix the arrays")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise EdgeslimError(
            f"{path}: x_train samples {x_train.shape[1:]} differ from x_test {x_test.shape[1:]}"
        )
    if "x_val" in arrays and "y_val" in arrays:
        x_val, y_val = _images(arrays["x_val"], path, "x_val"), _labels(arrays["y_val"], path, "y_val")
    else:
        fit, val = stratified_split(y_train, VAL_FRACTION, seed)
        x_train, x_val, y_val, y_train = x_train[fit], x_train[val], y_train[val], y_train[fit]
    # Integer images are taken as raw 8-bit pixels; float images as already preprocessed.
    raw_is_int = np.issubdtype(arrays["x_train"].dtype, np.integer)
    prep = Preprocessing(scale=1 / 255.0, raw_dtype="uint8") if raw_is_int else Preprocessing()
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    return Dataset(
        name=path.stem,
        x_train=prep.apply(x_train),
        y_train=y_train,
        x_val=prep.apply(x_val),
        y_val=y_val,
        x_test=prep.apply(x_test),
        y_test=y_test,
        class_names=[str(i) for i in range(num_classes)],
        preprocessing=prep,
    )


def _images(x: np.ndarray, path: Path, key: str) -> np.ndarray:
    if x.ndim == 3:  # (N, H, W): add the channel axis
        x = x[..., None]
    if x.ndim != 4:
        raise EdgeslimError(f"{path}: {key} has shape {x.shape}", "expected (N, H, W) or (N, H, W, C)")
    return x


def _labels(y: np.ndarray, path: Path, key: str) -> np.ndarray:
    y = np.asarray(y).reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
        raise EdgeslimError(f"{path}: {key} must be a 1-D array of non-negative integer class ids")
    return y.astype(np.int64)
