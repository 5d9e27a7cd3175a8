"""Training settings: every knob visible in one validated dataclass (the course's recipes)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
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
        for ok, key, expected in checks:
            if not ok:
                raise ConfigError(f"{prefix}.{key}: {expected}, got {getattr(self, key)!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any], prefix: str = "train") -> TrainConfig:
        known = {f.name: f for f in fields(cls)}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"{prefix}.{key}: unknown key", f"known keys: {sorted(known)}")
            expected = known[key].type
            if expected == "bool" and not isinstance(value, bool):
                raise ConfigError(f"{prefix}.{key}: must be true or false, got {value!r}")
            if expected == "int" and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"{prefix}.{key}: must be an integer, got {value!r}")
            if expected == "float" and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ConfigError(f"{prefix}.{key}: must be a number, got {value!r}")
            if expected == "str" and not isinstance(value, str):
                raise ConfigError(f"{prefix}.{key}: must be a string, got {value!r}")
        config = cls.__new__(cls)
        for name, f in known.items():
            setattr(config, name, values.get(name, f.default))
        config.validate(prefix)
        return config

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
