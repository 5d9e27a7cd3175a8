"""Fine-tuning: the distillation loss, its config, kept sparsity, and logits models."""

from __future__ import annotations

from dataclasses import replace

import keras
import numpy as np
import pytest
from keras import layers

from edgeslim.errors import ConfigError
from edgeslim.train.finetune import (
    DistillationLoss,
    FinetuneConfig,
    accuracy,
    default_train,
    finetune,
    outputs_probabilities,
)


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


@pytest.mark.parametrize("alpha,temperature", [(0.5, 4.0), (0.1, 2.0), (1.0, 1.0)])
def test_distillation_loss_matches_the_formula(alpha, temperature):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=8)
    teacher, student = rng.normal(size=(8, 5)) * 3, rng.normal(size=(8, 5)) * 3
    probs = np.exp(log_softmax(student))
    y_pred = np.concatenate([probs, teacher], axis=1).astype("float32")  # student, then teacher logits
    got = float(DistillationLoss(alpha, temperature)(labels.astype("float32"), y_pred))
    ce = -log_softmax(student)[np.arange(8), labels]
    p_t = np.exp(log_softmax(teacher / temperature))
    kl = np.sum(p_t * (log_softmax(teacher / temperature) - log_softmax(student / temperature)), axis=1)
    expected = np.mean(alpha * ce + (1 - alpha) * temperature**2 * kl)
    assert got == pytest.approx(expected, rel=1e-4)


def test_config_validation_and_flat_dict_round_trip():
    config = FinetuneConfig.from_dict({"epochs": 3, "alpha": 0.7, "temperature": 2, "learning_rate": 1e-3})
    assert config.train.learning_rate == 1e-3 and config.train_config().epochs == 3
    assert FinetuneConfig.from_dict(config.to_dict()).to_dict() == config.to_dict()
    for values, message in [
        ({"alpha": 1.5}, "finetune.alpha: must be a number in [0, 1]"),
        ({"temperature": 0}, "finetune.temperature: must be a number > 0"),
        ({"epochs": -1}, "finetune.epochs: must be an integer >= 0"),
        ({"distill": "yes"}, "finetune.distill: must be true or false"),
        ({"optimizer": "lion"}, "finetune.optimizer: must be one of"),
        ({"colour": 1}, "finetune.colour: unknown key"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            FinetuneConfig.from_dict(values)


def test_regression_distillation_loss_matches_the_formula():
    rng = np.random.default_rng(1)
    y, student, teacher = rng.normal(size=(6, 3)), rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    y_pred = np.concatenate([student, teacher], axis=1).astype("float32")
    got = float(DistillationLoss(0.3, task="regression")(y.astype("float32"), y_pred))
    expected = 0.3 * np.mean((student - y) ** 2) + 0.7 * np.mean((student - teacher) ** 2)
    assert got == pytest.approx(expected, rel=1e-5)


def test_the_teacher_sees_the_augmented_batch_the_student_sees(digits):
    """A student identical to its teacher, pure distillation (alpha 0), strong augmentation: when both
    see the same augmented batch the KL term is exactly zero, so the loss is 0 and no weight moves.
    Teacher outputs computed beforehand on un-augmented images made the loss positive and moved them."""
    from edgeslim.train.config import TrainConfig

    keras.utils.set_random_seed(3)
    teacher = keras.Sequential(
        [
            keras.Input(digits.input_shape),
            layers.Conv2D(8, 3, activation="relu"),
            layers.Flatten(),
            layers.Dense(10, activation="softmax"),
        ]
    )
    student = keras.models.clone_model(teacher)
    student.set_weights(teacher.get_weights())
    before = [w.copy() for w in student.get_weights()]
    train = TrainConfig(
        epochs=1, batch_size=64, optimizer="sgd", learning_rate=0.5, augment_shift=0.3, seed=0
    )
    result = finetune(student, digits, FinetuneConfig(epochs=1, alpha=0.0, train=train), teacher=teacher)
    assert result.metrics["distilled"]
    assert result.history["loss"][0] < 1e-6
    for w0, w1 in zip(before, student.get_weights(), strict=True):
        np.testing.assert_allclose(w0, w1, atol=1e-7)


def test_finetuning_keeps_pruned_weights_at_zero(digits, digits_model):
    from edgeslim.compress import PruneStage

    pruned = PruneStage(sparsity=0.6, schedule="oneshot").apply(digits_model, digits).model
    zeros = {layer.name: np.asarray(layer.kernel) == 0 for layer in pruned.layers if hasattr(layer, "kernel")}
    result = finetune(pruned, digits, FinetuneConfig(epochs=1, distill=False))
    for layer in result.model.layers:
        if layer.name in zeros:
            assert np.all(np.asarray(layer.kernel)[zeros[layer.name]] == 0), layer.name
    assert not result.metrics["distilled"] and "val_accuracy_before" in result.metrics


def test_a_logits_model_is_fine_tuned_and_distilled(digits, digits_model):
    student = keras.Sequential([keras.Input(digits.input_shape), layers.Flatten(), layers.Dense(10)])
    assert not outputs_probabilities(student) and outputs_probabilities(digits_model)
    config = FinetuneConfig(epochs=5, alpha=0.3, train=replace(default_train(), learning_rate=0.02))
    result = finetune(student, digits, config, teacher=digits_model)
    assert result.metrics["distilled"] and "val_accuracy" in result.history
    assert accuracy(student, digits.x_test, digits.y_test) > 0.7
