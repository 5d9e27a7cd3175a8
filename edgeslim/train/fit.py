"""Training a Keras model on a Dataset: seeded, with the course's optimizers, schedules and regularizers.

The dataset's task picks the loss and metrics: sparse cross-entropy and accuracy to classify, mean
squared error and MAE to regress or reconstruct. Several named inputs or outputs pass through as
dicts keyed by the model's input and output names.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from edgeslim.data.dataset import SPLITS, Dataset
from edgeslim.errors import EdgeslimError
from edgeslim.progress import ProgressReporter, reporter_for
from edgeslim.tasks import get_task
from edgeslim.train.config import TrainConfig


@dataclass
class TrainResult:
    model: keras.Model
    history: dict[str, list[float]]
    metrics: dict[str, Any] = field(default_factory=dict)


def check_compatible(model: keras.Model, dataset: Dataset) -> None:
    """Fail with a clear message when the dataset's inputs, targets or classes do not fit the model,
    or a split it trains, validates or tests on holds no samples."""
    empty = [split for split in SPLITS if dataset.size(split) == 0]
    if empty:
        raise EdgeslimError(
            f"dataset {dataset.name!r} has no {' and no '.join(empty)} samples; training needs all three",
            "give every split samples (a folder of images: DIR/<class>/ or DIR/{train,val,test}/<class>/)",
        )
    _check_inputs(model, dataset)
    _check_outputs(model, dataset)


def _check_inputs(model: keras.Model, dataset: Dataset) -> None:
    inputs = list(model.inputs or [])
    if dataset.multi_input:
        names = {t.name: tuple(t.shape[1:]) for t in inputs}
        if set(names) != set(dataset.input_names):
            raise EdgeslimError(
                f"model {model.name!r} takes inputs {sorted(names)} but dataset {dataset.name!r} has "
                f"{dataset.input_names}",
                "name the model's keras.Input layers after the dataset's inputs (x_train_<name> keys)",
            )
        wrong = {k: (names[k], v) for k, v in dataset.input_shapes.items() if names[k] != v}
        if wrong:
            raise EdgeslimError(f"model {model.name!r} and dataset {dataset.name!r} disagree on {wrong}")
        return
    if len(inputs) != 1:
        raise EdgeslimError(
            f"model {model.name!r} takes {len(inputs)} inputs but dataset {dataset.name!r} has one",
            "give the dataset one named input per model input (x_train_<name> keys in the .npz)",
        )
    model_in = tuple(model.input_shape[1:])
    if model_in != dataset.input_shape:
        raise EdgeslimError(
            f"model {model.name!r} takes input {model_in} "
            f"but dataset {dataset.name!r} has {dataset.input_shape}",
            "pick a model built for this dataset, or build one by zoo name so it adapts to the input",
        )


def _check_outputs(model: keras.Model, dataset: Dataset) -> None:
    outputs = list(model.outputs or [])
    if dataset.multi_output:
        names = list(getattr(model, "output_names", None) or [])
        if sorted(names) != dataset.output_names:
            raise EdgeslimError(
                f"model {model.name!r} has outputs {sorted(names)} but dataset {dataset.name!r} has "
                f"targets {dataset.output_names}",
                "name the model's output layers after the dataset's targets (y_train_<name> keys)",
            )
        shapes = dict(zip(names, (tuple(t.shape[1:]) for t in outputs), strict=True))
        for name, target in dataset.target_shapes.items():
            _check_output(model, dataset, shapes[name], target, name)
        return
    if len(outputs) != 1:
        raise EdgeslimError(
            f"model {model.name!r} has {len(outputs)} outputs but dataset {dataset.name!r} one target",
            "give the dataset one named target per output (y_train_<name> keys in the .npz)",
        )
    _check_output(model, dataset, tuple(outputs[0].shape[1:]), dataset.target_shapes["output"], "output")


def _check_output(
    model: keras.Model, dataset: Dataset, shape: tuple[Any, ...], target: tuple[int, ...], name: str
) -> None:
    if dataset.task == "classification" and dataset.multi_output:
        if not shape or shape[-1] is None:
            raise EdgeslimError(
                f"model {model.name!r} output {name!r} has shape {shape}, not one unit per class",
                "give each classification output one unit per class",
            )
        _check_labels(model, dataset, int(shape[-1]), name)
        return
    if dataset.task == "classification":
        if shape[-1:] != (dataset.num_classes,):
            raise EdgeslimError(
                f"model {model.name!r} has {shape[-1] if shape else 0} outputs but dataset "
                f"{dataset.name!r} has {dataset.num_classes} classes",
                "use a model with one output per class",
            )
        _check_labels(model, dataset, dataset.num_classes, name)
        return
    size = math.prod(int(d) for d in shape if d is not None) if None not in shape else None
    if size is not None and size != max(1, math.prod(target)):
        raise EdgeslimError(
            f"model {model.name!r} output {name!r} has shape {shape} but the dataset's "
            f"{dataset.task} targets have {target}",
            "give the model an output shaped like the targets"
            + (" (an autoencoder reproduces its input)" if dataset.task == "reconstruction" else ""),
        )


def _check_labels(model: keras.Model, dataset: Dataset, units: int, name: str) -> None:
    """Every split's labels are class ids the output has a unit for: 0 <= label < units. A Dataset built
    in Python skips the loaders' checks, and a label past the last unit would train on garbage."""
    from edgeslim.data.validate import Column, check_labels

    source = f"dataset {dataset.name!r} for model {model.name!r} (output {name!r} has {units} units)"
    for split in SPLITS:
        y = dataset.y(split)
        key = f"y_{split}" + (f"_{name}" if isinstance(y, dict) else "")
        check_labels(source, Column(key, np.asarray(y[name] if isinstance(y, dict) else y)), classes=units)


def outputs_probabilities(model: keras.Model) -> bool:
    """True when the model ends in a softmax (zoo models do); False when it outputs logits."""
    last = model.outputs[0]._keras_history.operation
    if isinstance(last, keras.layers.Softmax):
        return True
    return getattr(getattr(last, "activation", None), "__name__", "") == "softmax"


def task_loss(model: keras.Model, task: str) -> Any:
    """The task's loss: sparse cross-entropy (from logits when the model has no softmax), or MSE."""
    if task != "classification":
        return "mse"
    if outputs_probabilities(model):
        return "sparse_categorical_crossentropy"
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def task_metrics(task: str) -> list[str]:
    return ["accuracy"] if task == "classification" else ["mae"]


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
    progress: bool | ProgressReporter | None = True,
    loss: Any = None,
    y_train: Any = None,
    y_val: Any = None,
    extra_callbacks: list[keras.callbacks.Callback] | None = None,
) -> TrainResult:
    """Train ``model`` in place and evaluate it on the test split.

    ``loss`` (default: the task's), ``y_train`` and ``y_val`` let callers train toward their own
    targets; ``progress``: True for a rich bar on stderr, False for none, or a ProgressReporter.
    """
    config = config or TrainConfig()
    check_compatible(model, dataset)
    loss = task_loss(model, dataset.task) if loss is None else loss
    # A custom loss may take targets other than plain labels: its metrics are computed by callbacks.
    metrics: Any = task_metrics(dataset.task) if isinstance(loss, str) else []
    if dataset.multi_output:  # Keras wants one entry per named output
        names = list(getattr(model, "output_names", None) or dataset.output_names)
        loss = {name: loss for name in names}
        metrics = {name: metrics for name in names} if metrics else []
    history, seconds = fit_loop(
        model, dataset, config, loss, metrics, progress, extra_callbacks, y_train=y_train, y_val=y_val
    )
    result = evaluate_keras(model, dataset)
    epochs_run = len(history.get("loss", [])) or config.epochs
    result.update(
        {"train_seconds": seconds, "seconds_per_epoch": seconds / epochs_run, "epochs_run": epochs_run}
    )
    return TrainResult(model=model, history=history, metrics=result)


def fit_loop(
    model: keras.Model,
    dataset: Dataset,
    config: TrainConfig,
    loss: Any,
    metrics: list[Any],
    progress: bool | ProgressReporter | None,
    extra_callbacks: list[keras.callbacks.Callback] | None,
    y_train: Any = None,
    y_val: Any = None,
    description: str = "train",
) -> tuple[dict[str, list[float]], float]:
    """Compile and fit ``model`` (which may wrap the dataset's model, as distillation does)."""
    seed_everything(config.seed)
    steps = math.ceil(dataset.size("train") / config.batch_size)
    apply_l2(model, config.l2)
    model.compile(optimizer=make_optimizer(config, steps), loss=loss, metrics=metrics)
    callbacks: list[keras.callbacks.Callback] = list(extra_callbacks or [])
    if config.early_stopping:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=config.early_stopping, restore_best_weights=True
            )
        )
    reporter = reporter_for(progress)
    if reporter is not None:
        from edgeslim.train.progress import ProgressCallback

        callbacks.append(ProgressCallback(reporter, config.epochs, steps, description))
    x_train = dataset.x_train
    targets = dataset.y_train if y_train is None else y_train
    aug = augmenter(config)
    if aug is not None:
        # An autoencoder learns to reproduce what it is shown: its target is augmented with its input.
        same = dataset.task == "reconstruction" and targets is x_train
        fit_args: dict[str, Any] = {"x": _augmented(dataset, targets, aug, config, same), "shuffle": False}
    else:
        fit_args = {"x": x_train, "y": targets, "shuffle": True, "batch_size": config.batch_size}
    start = time.perf_counter()
    hist = model.fit(
        **fit_args,
        epochs=config.epochs,
        validation_data=(dataset.x_val, dataset.y_val if y_val is None else y_val),
        callbacks=callbacks,
        verbose=0,
    )
    seconds = time.perf_counter() - start
    return {k: [float(v) for v in vals] for k, vals in hist.history.items()}, seconds


def _augmented(dataset: Dataset, y: Any, aug: keras.Sequential, config: TrainConfig, same: bool) -> Any:
    import tensorflow as tf

    x = dataset.x_train
    if dataset.multi_input or np.ndim(x) != 4:
        raise EdgeslimError(
            f"augmentation (shift, rotation, flip) works on one image input (N, H, W, C); dataset "
            f"{dataset.name} has {dataset.input_names if dataset.multi_input else np.shape(x)[1:]}",
            "train without --augment-shift/--augment-rotation/--augment-flip",
        )
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(
        len(x), seed=config.seed, reshuffle_each_iteration=True
    )
    data = data.batch(config.batch_size)
    if same:
        data = data.map(lambda a, b: (lambda t: (t, t))(aug(a, training=True)))
    else:
        data = data.map(lambda a, b: (aug(a, training=True), b))
    return data.prefetch(2)


def predict(model: keras.Model, x: Any, batch_size: int = 512) -> Any:
    """Model outputs as numpy: one array, or a dict by output name for several outputs."""
    out = model.predict(x, batch_size=batch_size, verbose=0)
    if isinstance(out, list | tuple):
        names = list(getattr(model, "output_names", None) or [f"output_{i}" for i in range(len(out))])
        return {name: np.asarray(o) for name, o in zip(names, out, strict=True)}
    if isinstance(out, dict):
        return {k: np.asarray(v) for k, v in out.items()}
    return np.asarray(out)


def evaluate_keras(model: keras.Model, dataset: Dataset, batch_size: int = 512) -> dict[str, Any]:
    """The task's metrics of a Keras model on the test split.

    Keys: ``task``, ``test_samples``, ``test_metrics`` (the task's metrics dict), and each headline
    number flat as ``test_<metric>``: ``test_accuracy`` and ``test_loss`` (cross-entropy) for
    classification, ``test_mse``/``test_mae`` (and ``test_auc`` with anomaly labels) otherwise.
    """
    task = get_task(dataset.task)
    outputs = predict(model, dataset.x_test, batch_size)
    metrics = task.metrics(dataset.y_test, outputs, dataset.anomaly)
    result: dict[str, Any] = {"task": task.name, "test_samples": int(metrics["samples"])}
    for key in ("accuracy", "mse", "mae", "auc", "rel_max_diff"):
        if key in metrics:
            result[f"test_{key}"] = metrics[key]
    if task.name == "classification" and isinstance(outputs, np.ndarray):
        y = np.asarray(dataset.y_test)
        probs = outputs if outputs_probabilities(model) else _softmax(outputs)
        picked = np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)
        result["test_loss"] = float(-np.mean(np.log(picked)))
    result["test_metrics"] = metrics
    return result


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
