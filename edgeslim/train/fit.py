"""Training a Keras model on a Dataset: seeded, with the course's optimizers, schedules and regularizers."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from edgeslim.data.dataset import Dataset
from edgeslim.errors import EdgeslimError
from edgeslim.train.config import TrainConfig


@dataclass
class TrainResult:
    model: keras.Model
    history: dict[str, list[float]]
    metrics: dict[str, Any] = field(default_factory=dict)


def check_compatible(model: keras.Model, dataset: Dataset) -> None:
    """Fail with a clear message when the dataset's shape or classes do not fit the model."""
    model_in = tuple(model.input_shape[1:])
    if model_in != dataset.input_shape:
        raise EdgeslimError(
            f"model {model.name!r} takes input {model_in} "
            f"but dataset {dataset.name!r} has {dataset.input_shape}",
            "pick a model built for this dataset, or build one by zoo name so it adapts to the input",
        )
    model_out = model.output_shape[-1]
    if model_out != dataset.num_classes:
        raise EdgeslimError(
            f"model {model.name!r} has {model_out} outputs but dataset {dataset.name!r} has "
            f"{dataset.num_classes} classes",
            "use a model with one output per class",
        )


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    rate: float | keras.optimizers.schedules.LearningRateSchedule = config.learning_rate
    total = max(1, config.epochs * steps_per_epoch)
    if config.schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=total)
    elif config.schedule == "step":
        boundaries = [
            steps_per_epoch * e for e in range(config.step_epochs, config.epochs, config.step_epochs)
        ]
        values = [config.learning_rate * config.step_gamma**i for i in range(len(boundaries) + 1)]
        if boundaries:
            rate = keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(rate)
    momentum = 0.0 if config.optimizer == "sgd" else config.momentum
    return keras.optimizers.SGD(rate, momentum=momentum, nesterov=config.optimizer == "nesterov")


def apply_l2(model: keras.Model, l2: float) -> None:
    """Attach an L2 penalty to every kernel (Keras 3 collects ``variable.regularizer`` into the loss)."""
    if l2 <= 0:
        return
    for layer in model.layers:
        for attr in ("kernel", "depthwise_kernel", "pointwise_kernel"):
            variable = getattr(layer, attr, None)
            if variable is not None and getattr(variable, "regularizer", None) is None:
                variable.regularizer = keras.regularizers.L2(l2)


def augmenter(config: TrainConfig) -> keras.Sequential | None:
    steps: list[keras.layers.Layer] = []
    if config.augment_shift > 0:
        steps.append(
            keras.layers.RandomTranslation(config.augment_shift, config.augment_shift, seed=config.seed)
        )
    if config.augment_rotation > 0:
        steps.append(keras.layers.RandomRotation(config.augment_rotation, seed=config.seed))
    if config.augment_flip:
        steps.append(keras.layers.RandomFlip("horizontal", seed=config.seed))
    return keras.Sequential(steps) if steps else None


def seed_everything(seed: int) -> None:
    keras.utils.set_random_seed(seed)  # Python, numpy and TensorFlow in one call


def train_model(
    model: keras.Model,
    dataset: Dataset,
    config: TrainConfig | None = None,
    progress: bool = True,
    loss: Any = "sparse_categorical_crossentropy",
    y_train: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    extra_callbacks: list[keras.callbacks.Callback] | None = None,
) -> TrainResult:
    """Train ``model`` in place and evaluate it on the test split.

    ``loss``, ``y_train`` and ``y_val`` let fine-tuning (distillation) reuse this loop with its own targets.
    """
    config = config or TrainConfig()
    check_compatible(model, dataset)
    seed_everything(config.seed)
    steps = math.ceil(len(dataset.x_train) / config.batch_size)
    apply_l2(model, config.l2)
    model.compile(optimizer=make_optimizer(config, steps), loss=loss, metrics=_metrics(loss))
    callbacks: list[keras.callbacks.Callback] = list(extra_callbacks or [])
    if config.early_stopping:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=config.early_stopping, restore_best_weights=True
            )
        )
    if progress:
        from edgeslim.train.progress import RichProgress

        callbacks.append(RichProgress(config.epochs, steps))
    x_train = dataset.x_train
    aug = augmenter(config)
    train_data: Any
    if aug is not None:
        train_data = _augmented(x_train, y_train if y_train is not None else dataset.y_train, aug, config)
        fit_args: dict[str, Any] = {"x": train_data, "shuffle": False}  # tf.data shuffles itself
    else:
        fit_args = {
            "x": x_train,
            "y": y_train if y_train is not None else dataset.y_train,
            "shuffle": True,
            "batch_size": config.batch_size,
        }
    start = time.perf_counter()
    hist = model.fit(
        **fit_args,
        epochs=config.epochs,
        validation_data=(dataset.x_val, y_val if y_val is not None else dataset.y_val),
        callbacks=callbacks,
        verbose=0,
    )
    seconds = time.perf_counter() - start
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    metrics = evaluate_keras(model, dataset)
    epochs_run = len(history.get("loss", [])) or config.epochs
    metrics.update(
        {"train_seconds": seconds, "seconds_per_epoch": seconds / epochs_run, "epochs_run": epochs_run}
    )
    return TrainResult(model=model, history=history, metrics=metrics)


def _metrics(loss: Any) -> list[Any]:
    # A custom (distillation) loss gets targets wider than the class count: accuracy needs its own metric.
    return ["accuracy"] if isinstance(loss, str) else []


def _augmented(x: np.ndarray, y: np.ndarray, aug: keras.Sequential, config: TrainConfig) -> Any:
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(
        len(x), seed=config.seed, reshuffle_each_iteration=True
    )
    data = data.batch(config.batch_size).map(lambda a, b: (aug(a, training=True), b))
    return data.prefetch(2)


def evaluate_keras(model: keras.Model, dataset: Dataset, batch_size: int = 512) -> dict[str, float]:
    """Test accuracy and cross-entropy of a Keras model (softmax outputs) on the test split."""
    probs = np.asarray(model.predict(dataset.x_test, batch_size=batch_size, verbose=0))
    y = dataset.y_test
    picked = np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)
    return {
        "test_accuracy": float(np.mean(np.argmax(probs, axis=1) == y)),
        "test_loss": float(-np.mean(np.log(picked))),
        "test_samples": len(y),
    }
