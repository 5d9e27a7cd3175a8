"""Fine-tuning after a compression stage: plain (task loss) or knowledge distillation from a teacher.

Distillation loss per task, with the student's outputs s and the teacher's t on the same batch:
    classification:  alpha * CE(labels, softmax(z_s)) + (1 - alpha) * T^2 * KL(p_t^T || p_s^T),
                     p^T = softmax(z / T)
    regression and reconstruction:  alpha * MSE(y, s) + (1 - alpha) * MSE(t, s)
Zoo classifiers end in softmax, so their log-probabilities serve as logits (softmax(log p / T) is the
tempered distribution).

The teacher runs inside the training step, on exactly the batch the student sees: student and
teacher are joined in one Keras model whose output packs [student, teacher] along the last axis, so
an augmented batch reaches both (teacher outputs computed once, up front, on the un-augmented data
would be compared with a student looking at other images). The teacher runs in inference mode and is
never trained. Pruned kernels (those with exact zeros) stay pruned: their masks are re-applied after
every optimizer step.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import keras
import numpy as np

from edgeslim.data.dataset import Dataset
from edgeslim.errors import EdgeslimError
from edgeslim.layers.sparsity import MaskKeeper
from edgeslim.progress import ProgressReporter
from edgeslim.tasks import get_task
from edgeslim.train.config import FinetuneConfig, default_finetune_train
from edgeslim.train.fit import (
    TrainResult,
    augmenter,
    check_compatible,
    evaluate_keras,
    fit_loop,
    outputs_probabilities,
    predict,
    task_loss,
    task_metrics,
)

default_train = default_finetune_train  # the name callers know
__all__ = [
    "DistillationLoss",
    "FinetuneConfig",
    "accuracy",
    "default_train",
    "finetune",
    "outputs_probabilities",
]


def as_logits(outputs: np.ndarray, probabilities: bool) -> np.ndarray:
    return (
        np.log(np.clip(outputs, 1e-7, 1.0)).astype(np.float32)
        if probabilities
        else outputs.astype(np.float32)
    )


@keras.saving.register_keras_serializable(package="edgeslim")
class DistillationLoss(keras.losses.Loss):
    """``y_pred`` packs [student outputs, teacher outputs] along its last axis; ``y_true`` the targets.

    Classification: the teacher half holds logits; the student half probabilities or logits.
    """

    def __init__(
        self,
        alpha: float = 0.5,
        temperature: float = 2.0,
        student_probabilities: bool = True,
        task: str = "classification",
        name: str = "distillation",
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.alpha, self.temperature, self.student_probabilities = alpha, temperature, student_probabilities
        self.task = get_task(task).name

    def call(self, y_true: Any, y_pred: Any) -> Any:
        ops = keras.ops
        half = int(y_pred.shape[-1]) // 2
        student, teacher = y_pred[..., :half], y_pred[..., half:]
        if self.task != "classification":
            target = ops.reshape(ops.cast(y_true, student.dtype), ops.shape(student))
            to_labels = ops.mean(ops.square(student - target), axis=-1)
            to_teacher = ops.mean(ops.square(student - teacher), axis=-1)
            return self.alpha * to_labels + (1.0 - self.alpha) * to_teacher
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        student = ops.log(ops.clip(student, 1e-7, 1.0)) if self.student_probabilities else student
        ce = keras.losses.sparse_categorical_crossentropy(labels, student, from_logits=True)
        t = self.temperature
        p_teacher = ops.softmax(teacher / t, axis=-1)
        kl = ops.sum(
            p_teacher * (ops.log_softmax(teacher / t, axis=-1) - ops.log_softmax(student / t, axis=-1)), -1
        )
        return self.alpha * ce + (1.0 - self.alpha) * (t**2) * kl

    def get_config(self) -> dict[str, Any]:
        return super().get_config() | {
            "alpha": self.alpha,
            "temperature": self.temperature,
            "student_probabilities": self.student_probabilities,
            "task": self.task,
        }


class TeacherOutputs(keras.layers.Layer):
    """The teacher on the student's batch: inference mode, no gradient, logits for classification."""

    def __init__(self, teacher: keras.Model, as_logits: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.teacher, self.as_logits = teacher, as_logits

    def call(self, inputs: Any) -> Any:
        # No `training` argument here, so the outer fit's training=True never reaches the teacher.
        out = keras.ops.stop_gradient(self.teacher(inputs, training=False))
        return keras.ops.log(keras.ops.clip(out, 1e-7, 1.0)) if self.as_logits else out


def distillation_model(student: keras.Model, teacher: keras.Model, task: str) -> keras.Model:
    """One model: the student's inputs in, [student outputs, teacher outputs] out (last axis)."""
    inputs = [keras.Input(shape=t.shape[1:], dtype=t.dtype, name=t.name) for t in student.inputs]
    feed: Any = (
        inputs[0] if len(inputs) == 1 else {t.name: i for t, i in zip(student.inputs, inputs, strict=True)}
    )
    logits = task == "classification" and outputs_probabilities(teacher)
    packed = keras.layers.Concatenate(axis=-1, name="student_teacher")(
        [student(feed), TeacherOutputs(teacher, logits, name="teacher")(feed)]
    )
    return keras.Model(inputs if len(inputs) > 1 else inputs[0], packed, name=f"{student.name}_distill")


TEACHER_INPUT = "edgeslim_teacher_outputs"


def cached_teacher_model(
    student: keras.Model, teacher: keras.Model, dataset: Dataset, task: str
) -> tuple[keras.Model, Dataset]:
    """Distillation without augmentation: the teacher's outputs on the train and validation inputs,
    computed once, enter as one more input, so the teacher does not run again in every step (on
    mnistnet3 it cost more than the compressed student's own training). Exactly what the teacher would
    have answered in the step: the inputs do not change between epochs."""

    logits = task == "classification" and outputs_probabilities(teacher)

    def answers(x: Any) -> np.ndarray:
        out = predict(teacher, x)
        return np.log(np.clip(out, 1e-7, 1.0)).astype(np.float32) if logits else out.astype(np.float32)

    names = [t.name for t in student.inputs]
    inputs = [
        keras.Input(shape=t.shape[1:], dtype=t.dtype, name=n)
        for t, n in zip(student.inputs, names, strict=True)
    ]
    cached = keras.Input(shape=teacher.outputs[0].shape[1:], name=TEACHER_INPUT)
    feed: Any = inputs[0] if len(inputs) == 1 else dict(zip(names, inputs, strict=True))
    packed = keras.layers.Concatenate(axis=-1, name="student_teacher")([student(feed), cached])
    joint = keras.Model([*inputs, cached], packed, name=f"{student.name}_distill")

    def with_answers(x: Any) -> dict[str, Any]:
        feeds = dict(x) if isinstance(x, dict) else {names[0]: x}
        return feeds | {TEACHER_INPUT: answers(x)}

    data = replace(dataset, x_train=with_answers(dataset.x_train), x_val=with_answers(dataset.x_val))
    return joint, data


class ValHeadline(keras.callbacks.Callback):
    """The student's validation headline metric each epoch (val_accuracy, val_mse) when the loss's own
    metrics cannot give it (distillation's packed outputs, a logits model)."""

    def __init__(self, student: keras.Model, dataset: Dataset) -> None:
        super().__init__()
        self.student, self.dataset = student, dataset
        self.task = get_task(dataset.task)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        key = f"val_{self.task.headline}"
        if logs is not None and key not in logs:
            logs[key] = headline(self.student, self.dataset, "val")


def headline(model: keras.Model, dataset: Dataset, split: str) -> float:
    task = get_task(dataset.task)
    x, y = dataset.x(split), dataset.y(split)
    return float(task.metrics(y, predict(model, x), None)[task.headline])


def accuracy(model: keras.Model, x: Any, y: np.ndarray) -> float:
    out = np.asarray(model.predict(x, batch_size=512, verbose=0))
    return float(np.mean(np.argmax(out, axis=-1) == y))


def finetune(
    model: keras.Model,
    dataset: Dataset,
    config: FinetuneConfig | None = None,
    teacher: keras.Model | None = None,
    progress: bool | ProgressReporter | None = False,
    callbacks: list[keras.callbacks.Callback] | None = None,
) -> TrainResult:
    """Train ``model`` in place for ``config.epochs``; distil from ``teacher`` when given and enabled."""
    config = _recurrent_rate(model, config or FinetuneConfig())
    if config.epochs == 0:
        raise EdgeslimError("finetune.epochs is 0: nothing to fine-tune", "set finetune epochs >= 1")
    check_compatible(model, dataset)
    task = get_task(dataset.task)
    extra: list[keras.callbacks.Callback] = list(callbacks or [])
    if config.keep_sparsity and not any(isinstance(c, MaskKeeper) for c in extra):
        keeper = MaskKeeper.from_zeros(model)
        if keeper is not None:
            extra.append(keeper)
    before = headline(model, dataset, "val")
    why_not = _why_not_distil(model, teacher, dataset) if config.distill and teacher is not None else None
    distill = config.distill and teacher is not None and why_not is None
    trainee, loss, metrics = model, task_loss(model, task.name), task_metrics(task.name)
    data = dataset
    if distill:
        assert teacher is not None
        if augmenter(config.train) is None:  # the same inputs every epoch: the teacher answers once
            trainee, data = cached_teacher_model(model, teacher, dataset, task.name)
        else:
            trainee = distillation_model(model, teacher, task.name)
        loss = DistillationLoss(config.alpha, config.temperature, outputs_probabilities(model), task.name)
        metrics = []
    if not isinstance(loss, str):
        extra.append(ValHeadline(model, dataset))
    was_trainable = teacher.trainable if distill and teacher is not None else None
    try:
        if distill and teacher is not None:
            teacher.trainable = False  # its weights are constants of the joint model, never updated
        history, seconds = fit_loop(
            trainee, data, config.train_config(), loss, metrics, progress, extra, description="finetune"
        )
    finally:
        if was_trainable is not None and teacher is not None:
            teacher.trainable = was_trainable
    result = evaluate_keras(model, dataset)
    result.update(
        {
            f"val_{task.headline}_before": before,
            f"val_{task.headline}": headline(model, dataset, "val"),
            "distilled": distill,
            "train_seconds": seconds,
            "epochs_run": len(history.get("loss", [])),
            "seconds_per_epoch": seconds / max(1, len(history.get("loss", []))),
        }
    )
    if why_not:
        result["not_distilled_because"] = why_not
    result["learning_rate"] = config.train.learning_rate
    return TrainResult(model=model, history=history, metrics=result)


def _recurrent_rate(model: keras.Model, config: FinetuneConfig) -> FinetuneConfig:
    """``config`` with its ``recurrent_learning_rate`` as the rate when the model has a recurrent layer."""
    if not _recurrent(model):
        return config
    return replace(config, train=replace(config.train, learning_rate=config.recurrent_learning_rate))


def _recurrent(model: keras.Layer) -> bool:
    return any(
        isinstance(layer, keras.layers.RNN | keras.layers.Bidirectional)
        or (isinstance(layer, keras.Model) and _recurrent(layer))
        for layer in getattr(model, "layers", [])
    )


def _why_not_distil(model: keras.Model, teacher: keras.Model, dataset: Dataset) -> str | None:
    """None when ``teacher`` can teach ``model`` here; otherwise why not (a mismatch is a user mistake)."""
    if teacher is model:
        return "the teacher is the student itself"
    if len(model.outputs) != 1 or len(teacher.outputs) != 1:
        return "distillation packs one output per model; fine-tuned on the task loss alone"
    student_shape, teacher_shape = tuple(model.outputs[0].shape[1:]), tuple(teacher.outputs[0].shape[1:])
    if student_shape != teacher_shape:
        raise EdgeslimError(
            f"teacher {teacher.name!r} outputs {teacher_shape}, student {model.name!r} {student_shape} "
            f"on dataset {dataset.name!r}",
            "distil from a model trained on the same dataset",
        )
    return None
