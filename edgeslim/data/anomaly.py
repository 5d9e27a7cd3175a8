"""Anomaly detection from a labelled dataset: learn to reconstruct the normal classes, flag class K.

The MLPerf Tiny anomaly-detection recipe: an autoencoder trained only on normal data reconstructs
normal samples well and anomalies badly, so the per-sample reconstruction error is the anomaly score
and its ROC AUC on a test set holding both says how well it separates them.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from edgeslim.data.dataset import Dataset
from edgeslim.errors import EdgeslimError


def as_anomaly_detection(dataset: Dataset, anomaly_class: int) -> Dataset:
    """A reconstruction dataset: train and validation without class ``anomaly_class``, the whole test
    split with ``anomaly`` flags marking that class; every target is its own input."""
    if dataset.task != "classification" or dataset.multi_input or dataset.multi_output:
        raise EdgeslimError(
            f"--anomaly-class needs a labelled one-input classification dataset; {dataset.name} is a "
            f"{dataset.task} dataset" + (" with several inputs or outputs" if dataset.multi_input else ""),
            "drop --anomaly-class, or use a dataset with class labels (digits, mnist, integer-y .npz)",
        )
    if isinstance(anomaly_class, bool) or not isinstance(anomaly_class, int | np.integer):
        raise EdgeslimError(f"--anomaly-class must be a class index, got {anomaly_class!r}")
    if not 0 <= anomaly_class < dataset.num_classes:
        raise EdgeslimError(
            f"--anomaly-class {anomaly_class} is not a class of {dataset.name} "
            f"(classes 0-{dataset.num_classes - 1})",
            f"choose a class between 0 and {dataset.num_classes - 1}",
        )
    k = int(anomaly_class)
    train = np.asarray(dataset.y_train) != k
    val = np.asarray(dataset.y_val) != k
    x_train, x_val, x_test = dataset.x_train[train], dataset.x_val[val], dataset.x_test
    flags = np.asarray(dataset.y_test) == k
    if not flags.any() or flags.all():
        raise EdgeslimError(
            f"the {dataset.name} test split has {int(flags.sum())} samples of class {k} among {len(flags)}",
            "AUC needs both normal and anomalous test samples: choose another class",
        )
    return replace(
        dataset,
        x_train=x_train,
        y_train=x_train,  # the same array, not a copy: the target of an autoencoder is its input
        x_val=x_val,
        y_val=x_val,
        x_test=x_test,
        y_test=x_test,
        class_names=[],
        task="reconstruction",
        anomaly=flags,
        anomaly_class=k,
    )


def as_reconstruction(dataset: Dataset) -> Dataset:
    """Every class reconstructed, none held out: the targets are the inputs, no anomaly labels."""
    if dataset.task == "reconstruction":
        return dataset
    if dataset.multi_input:
        raise EdgeslimError(
            f"dataset {dataset.name} has several inputs; an autoencoder reconstructs one",
            "use a one-input dataset",
        )
    return replace(
        dataset,
        y_train=dataset.x_train,
        y_val=dataset.x_val,
        y_test=dataset.x_test,
        class_names=[],
        task="reconstruction",
        anomaly=None,
        anomaly_class=None,
    )


def dataset_for_task(dataset: Dataset, task: str | None) -> Dataset:
    """The dataset as the model's task needs it: a labelled dataset feeds an autoencoder as a
    reconstruction dataset; any other mismatch is a mistake."""
    if task is None or task == dataset.task:
        return dataset
    if task == "reconstruction" and dataset.task == "classification":
        return as_reconstruction(dataset)
    raise EdgeslimError(
        f"the model does {task} but dataset {dataset.name} is a {dataset.task} dataset",
        "evaluate it on the dataset it was trained on",
    )
