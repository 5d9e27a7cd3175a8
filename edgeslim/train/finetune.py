"""Fine-tuning after a compression stage: plain (task loss) or knowledge distillation from a teacher.

Distillation loss, with the teacher's and student's logits z_t, z_s:
    alpha * CE(labels, softmax(z_s)) + (1 - alpha) * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))
Zoo models end in softmax, so their log-probabilities serve as logits (softmax(log p / T) is the
tempered distribution). Pruned kernels (those with exact zeros) stay pruned: their masks are
re-applied after every optimizer step.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import keras
import numpy as np

from edgeslim.data.dataset import Dataset
from edgeslim.errors import ConfigError, EdgeslimError
from edgeslim.train.config import TrainConfig
from edgeslim.train.fit import TrainResult, train_model


def default_train() -> TrainConfig:
    # Fine-tuning starts from a good model: a small Adam step that decays to zero keeps what it knows.
    return TrainConfig(epochs=1, batch_size=64, optimizer="adam", learning_rate=5e-4, schedule="cosine")


@dataclass
class FinetuneConfig:
    epochs: int = 2
    distill: bool = True
    alpha: float = 0.5  # weight of the label loss; the distillation term gets 1 - alpha
    # Zoo teachers end in softmax and are confident: at T = 4 their clipped log-probabilities make the
    # soft targets mostly noise (p^(1/4) lifts 1e-7 to 0.02); T = 2 measured better on MNIST.
    temperature: float = 2.0
    keep_sparsity: bool = True  # re-apply the zeros of pruned kernels after every step
    train: TrainConfig = field(default_factory=default_train)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, prefix: str = "finetune") -> None:
        checks = [
            (
                isinstance(self.epochs, int) and not isinstance(self.epochs, bool) and self.epochs >= 0,
                "epochs",
                "an integer >= 0",
            ),
            (isinstance(self.distill, bool), "distill", "true or false"),
            (_number(self.alpha) and 0 <= self.alpha <= 1, "alpha", "a number in [0, 1]"),
            (_number(self.temperature) and self.temperature > 0, "temperature", "a number > 0"),
            (isinstance(self.keep_sparsity, bool), "keep_sparsity", "true or false"),
        ]
        for ok, key, expected in checks:
            if not ok:
                raise ConfigError(f"{prefix}.{key}: must be {expected}, got {getattr(self, key)!r}")

    def train_config(self) -> TrainConfig:
        return replace(self.train, epochs=max(1, self.epochs))

    def to_dict(self) -> dict[str, Any]:
        train = self.train.to_dict()
        train.pop("epochs")
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "train"} | train

    @classmethod
    def from_dict(cls, values: dict[str, Any], prefix: str = "finetune") -> FinetuneConfig:
        """Flat keys: epochs, distill, alpha, temperature, keep_sparsity, plus any TrainConfig key."""
        own = {f.name for f in fields(cls)} - {"train"}
        train_values = default_train().to_dict() | {k: v for k, v in values.items() if k not in own}
        train_values["epochs"] = 1
        config = cls.__new__(cls)
        for f in fields(cls):
            if f.name != "train":
                setattr(config, f.name, values.get(f.name, f.default))
        config.train = TrainConfig.from_dict(train_values, prefix)
        config.validate(prefix)
        return config


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def outputs_probabilities(model: keras.Model) -> bool:
    """True when the model ends in a softmax (zoo models do); False when it outputs logits."""
    last = model.outputs[0]._keras_history.operation
    if isinstance(last, keras.layers.Softmax):
        return True
    return getattr(getattr(last, "activation", None), "__name__", "") == "softmax"


def as_logits(outputs: np.ndarray, probabilities: bool) -> np.ndarray:
    return (
        np.log(np.clip(outputs, 1e-7, 1.0)).astype(np.float32)
        if probabilities
        else outputs.astype(np.float32)
    )


@keras.saving.register_keras_serializable(package="edgeslim")
class DistillationLoss(keras.losses.Loss):
    """y_true packs [label, teacher logits...]; y_pred is the student's output (probabilities or logits)."""

    def __init__(
        self,
        alpha: float = 0.5,
        temperature: float = 2.0,
        student_probabilities: bool = True,
        name: str = "distillation",
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.alpha, self.temperature, self.student_probabilities = alpha, temperature, student_probabilities

    def call(self, y_true: Any, y_pred: Any) -> Any:
        ops = keras.ops
        labels = ops.cast(y_true[:, 0], "int32")
        teacher = y_true[:, 1:]
        student = ops.log(ops.clip(y_pred, 1e-7, 1.0)) if self.student_probabilities else y_pred
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
        }


class ValAccuracy(keras.callbacks.Callback):
    """Validation accuracy each epoch, for losses whose targets are not plain labels."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        super().__init__()
        self.x, self.y = x, y

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None and "val_accuracy" not in logs:
            logs["val_accuracy"] = accuracy(self.model, self.x, self.y)


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    out = np.asarray(model.predict(x, batch_size=512, verbose=0))
    return float(np.mean(np.argmax(out, axis=-1) == y))


def finetune(
    model: keras.Model,
    dataset: Dataset,
    config: FinetuneConfig | None = None,
    teacher: keras.Model | None = None,
    progress: bool = False,
    callbacks: list[keras.callbacks.Callback] | None = None,
) -> TrainResult:
    """Train ``model`` in place for ``config.epochs``; distil from ``teacher`` when given and enabled."""
    config = config or FinetuneConfig()
    if config.epochs == 0:
        raise EdgeslimError("finetune.epochs is 0: nothing to fine-tune", "set finetune epochs >= 1")
    extra: list[keras.callbacks.Callback] = list(callbacks or [])
    if config.keep_sparsity and not any(isinstance(c, _mask_types()) for c in extra):
        keeper = _mask_types()[0].from_zeros(model)
        if keeper is not None:
            extra.append(keeper)
    before = accuracy(model, dataset.x_val, dataset.y_val)
    probs = outputs_probabilities(model)
    distill = config.distill and teacher is not None
    loss: Any
    y_train = y_val = None
    if distill:
        if teacher.output_shape[-1] != dataset.num_classes:
            raise EdgeslimError(
                f"teacher {teacher.name!r} has {teacher.output_shape[-1]} outputs, "
                f"dataset {dataset.name!r} has {dataset.num_classes} classes"
            )
        teacher_probs = outputs_probabilities(teacher)
        y_train = _pack(dataset.y_train, as_logits(_predict(teacher, dataset.x_train), teacher_probs))
        y_val = _pack(dataset.y_val, as_logits(_predict(teacher, dataset.x_val), teacher_probs))
        loss = DistillationLoss(config.alpha, config.temperature, student_probabilities=probs)
        extra.append(ValAccuracy(dataset.x_val, dataset.y_val))
    elif probs:
        loss = "sparse_categorical_crossentropy"
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        extra.append(ValAccuracy(dataset.x_val, dataset.y_val))
    result = train_model(
        model,
        dataset,
        config.train_config(),
        progress=progress,
        loss=loss,
        y_train=y_train,
        y_val=y_val,
        extra_callbacks=extra,
    )
    result.metrics.update(
        {
            "val_accuracy_before": before,
            "val_accuracy": accuracy(model, dataset.x_val, dataset.y_val),
            "distilled": distill,
        }
    )
    return result


def _predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=512, verbose=0))


def _pack(labels: np.ndarray, logits: np.ndarray) -> np.ndarray:
    return np.concatenate([labels.reshape(-1, 1).astype(np.float32), logits], axis=1)


def _mask_types() -> tuple[type, ...]:
    from edgeslim.compress.masks import MaskKeeper  # compress imports train lazily; no cycle at import

    return (MaskKeeper,)
