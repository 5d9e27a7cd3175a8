"""scikit-learn's 8x8 handwritten digits: the embedded default dataset (1,797 real images)."""

from __future__ import annotations

import numpy as np

from edgeslim.data.dataset import Dataset, Preprocessing
from edgeslim.data.split import stratified_split
from edgeslim.data.validate import Column, check_splits
from edgeslim.errors import EdgeslimError

TEST_FRACTION = 0.2
VAL_FRACTION = 0.1


def load_digits(seed: int = 0) -> Dataset:
    try:
        from sklearn.datasets import load_digits as sk_load_digits  # ships with scikit-learn, no download
    except ImportError:
        raise EdgeslimError(
            "dataset digits needs scikit-learn, which the base install (a device) does not have",
            "pip install scikit-learn, or evaluate on --dataset mnist/npz with --data-dir",
        ) from None

    bunch = sk_load_digits()
    raw = bunch.images.astype(np.float32)  # 0..16
    y = bunch.target.astype(np.int64)
    # Trusted, but checked like every dataset: one rule for all, and a broken scikit-learn shows here.
    names = [str(i) for i in range(10)]
    source = "scikit-learn digits"
    check_splits(
        source,
        "classification",
        {"train": {"input": Column("images", raw)}},
        {"train": {"output": Column("target", y)}},
        names,
    )
    prep = Preprocessing(scale=1.0 / 16.0, offset=0.0, raw_dtype="uint8")
    x = prep.apply(raw)[..., None]
    train_idx, test_idx = stratified_split(y, TEST_FRACTION, seed)
    fit_rel, val_rel = stratified_split(y[train_idx], VAL_FRACTION, seed + 1)
    fit_idx, val_idx = train_idx[fit_rel], train_idx[val_rel]
    return Dataset(
        name="digits",
        x_train=x[fit_idx],
        y_train=y[fit_idx],
        x_val=x[val_idx],
        y_val=y[val_idx],
        x_test=x[test_idx],
        y_test=y[test_idx],
        class_names=names,
        preprocessing=prep,
    )
