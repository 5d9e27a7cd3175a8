"""Training settings: every knob visible in one validated dataclass (the course's recipes)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from edgeslim.errors import ConfigError

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")
SCHEDULES = ("constant", "step", "cosine")


@dataclass
class TrainConfig:
    epochs: int = 8
    batch_size: int = 128
    optimizer: str = "nesterov"  # SGD with Nesterov momentum, as the course trains MNISTnet3
    learning_rate: float = 0.01
    momentum: float = 0.9
    schedule: str = "constant"
    step_epochs: int = 3  # step schedule: multiply the rate by step_gamma every step_epochs
    step_gamma: float = 0.1
    l2: float = 0.0  # L2 weight penalty on kernels, added to the loss
    early_stopping: int = 0  # patience in epochs on validation loss; 0 turns it off
    augment_shift: float = 0.0  # fraction of the image size
    augment_rotation: float = 0.0  # fraction of a full turn
    augment_flip: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, prefix: str = "train") -> None:
        checks = [
            (self.epochs > 0, "epochs", "must be a positive integer"),
            (self.batch_size > 0, "batch_size", "must be a positive integer"),
            (self.optimizer in OPTIMIZERS, "optimizer", f"must be one of {list(OPTIMIZERS)}"),
            (self.learning_rate > 0, "learning_rate", "must be > 0"),
            (0 <= self.momentum < 1, "momentum", "must be in [0, 1)"),
            (self.schedule in SCHEDULES, "schedule", f"must be one of {list(SCHEDULES)}"),
            (self.step_epochs > 0, "step_epochs", "must be > 0"),
            (0 < self.step_gamma <= 1, "step_gamma", "must be in (0, 1]"),
            (self.l2 >= 0, "l2", "must be >= 0"),
            (self.early_stopping >= 0, "early_stopping", "must be >= 0"),
            (0 <= self.augment_shift < 0.5, "augment_shift", "must be in [0, 0.5)"),
            (0 <= self.augment_rotation <= 0.5, "augment_rotation", "must be in [0, 0.5]"),
        ]
        problems = [
            ConfigError(f"{prefix}.{key}: {expected}, got {getattr(self, key)!r}")
            for ok, key, expected in checks
            if not ok
        ]
        if problems:
            raise ConfigError.several(problems)

    @classmethod
    def from_dict(cls, values: dict[str, Any], prefix: str = "train") -> TrainConfig:
        known = {f.name: f for f in fields(cls)}
        problems = check_types(values, {name: f.type for name, f in known.items()}, prefix)
        if problems:
            raise ConfigError.several(problems)
        config = cls.__new__(cls)
        for name, f in known.items():
            setattr(config, name, values.get(name, f.default))
        config.validate(prefix)
        return config

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_types(values: dict[str, Any], types: dict[str, str], prefix: str) -> list[ConfigError]:
    """Unknown keys and values of the wrong type (``types``: key -> "int", "float", "bool" or "str")."""
    problems = []
    for key, value in values.items():
        expected = types.get(key)
        if expected is None:
            problems.append(ConfigError(f"{prefix}.{key}: unknown key", f"known keys: {sorted(types)}"))
        elif not _is_type(value, expected):
            what = {"bool": "true or false", "int": "an integer", "float": "a finite number"}.get(
                expected, "a string"
            )
            problems.append(ConfigError(f"{prefix}.{key}: must be {what}, got {value!r}"))
    return problems


def _is_type(value: Any, expected: str) -> bool:
    if expected == "bool":
        return isinstance(value, bool)
    if expected == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "float":
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, str)


def default_finetune_train() -> TrainConfig:
    # Fine-tuning starts from a good model: a small Adam step that decays to zero keeps what it knows.
    return TrainConfig(epochs=1, batch_size=64, optimizer="adam", learning_rate=5e-4, schedule="cosine")


@dataclass
class FinetuneConfig:
    """Fine-tuning after a compression stage, by default distilled from the model before the chain."""

    epochs: int = 2
    distill: bool = True
    alpha: float = 0.5  # weight of the label loss; the distillation term gets 1 - alpha
    # Zoo teachers end in softmax and are confident: at T = 4 their clipped log-probabilities make the
    # soft targets mostly noise (p^(1/4) lifts 1e-7 to 0.02); T = 2 measured better on MNIST.
    temperature: float = 2.0
    keep_sparsity: bool = True  # re-apply the zeros of pruned kernels after every step
    train: TrainConfig = field(default_factory=default_finetune_train)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, prefix: str = "finetune") -> None:
        checks = [
            (_is_type(self.epochs, "int") and self.epochs >= 0, "epochs", "an integer >= 0"),
            (isinstance(self.distill, bool), "distill", "true or false"),
            (_is_type(self.alpha, "float") and 0 <= self.alpha <= 1, "alpha", "a number in [0, 1]"),
            (_is_type(self.temperature, "float") and self.temperature > 0, "temperature", "a number > 0"),
            (isinstance(self.keep_sparsity, bool), "keep_sparsity", "true or false"),
        ]
        problems = [
            ConfigError(f"{prefix}.{key}: must be {expected}, got {getattr(self, key)!r}")
            for ok, key, expected in checks
            if not ok
        ]
        if problems:
            raise ConfigError.several(problems)

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
        train_values = default_finetune_train().to_dict() | {k: v for k, v in values.items() if k not in own}
        train_values["epochs"] = 1
        config = cls.__new__(cls)
        for f in fields(cls):
            if f.name != "train":
                setattr(config, f.name, values.get(f.name, f.default))
        problems: list[ConfigError] = []
        try:
            config.validate(prefix)
        except ConfigError as exc:
            problems += exc.problems
        try:
            config.train = TrainConfig.from_dict(train_values, prefix)
        except ConfigError as exc:
            problems += exc.problems
        if problems:
            raise ConfigError.several(problems)
        return config
