"""Training settings: every knob visible in one validated dataclass (the course's recipes)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from edgeslim.errors import ConfigError
from edgeslim.settings import Rule, check_rules, setting

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")
SCHEDULES = ("constant", "step", "cosine")
# Bounds on what a config, the CLI or the Python API may ask for: generous for any edge model, yet a
# typo (1e29 epochs) or a hostile file stops at validation instead of running for ever.
MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 65_536
MAX_SEED = 2**32 - 1  # what numpy and TensorFlow take
MAX_LEARNING_RATE = 10.0
MAX_TEMPERATURE = 100.0


@dataclass
class TrainConfig:
    epochs: int = setting(8, Rule("int", 1, MAX_EPOCHS))
    batch_size: int = setting(128, Rule("int", 1, MAX_BATCH_SIZE))
    # SGD with Nesterov momentum, as the course trains MNISTnet3
    optimizer: str = setting("nesterov", Rule("str", choices=OPTIMIZERS))
    learning_rate: float = setting(0.01, Rule("float", 0, MAX_LEARNING_RATE, lo_open=True))
    momentum: float = setting(0.9, Rule("float", 0, 1, hi_open=True))
    schedule: str = setting("constant", Rule("str", choices=SCHEDULES))
    # step schedule: multiply the rate by step_gamma every step_epochs
    step_epochs: int = setting(3, Rule("int", 1, MAX_EPOCHS))
    step_gamma: float = setting(0.1, Rule("float", 0, 1, lo_open=True))
    l2: float = setting(0.0, Rule("float", 0, 1))  # L2 weight penalty on kernels, added to the loss
    # patience in epochs on validation loss; 0 turns it off
    early_stopping: int = setting(0, Rule("int", 0, MAX_EPOCHS))
    augment_shift: float = setting(0.0, Rule("float", 0, 0.5, hi_open=True))  # fraction of the image size
    augment_rotation: float = setting(0.0, Rule("float", 0, 0.5))  # fraction of a full turn
    augment_flip: bool = setting(False, Rule("bool"))
    seed: int = setting(0, Rule("int", 0, MAX_SEED))

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, prefix: str = "train") -> None:
        """Every field's type and range; all mistakes in one ConfigError (the Python API gets them too)."""
        problems = check_rules(self, prefix)
        if problems:
            raise ConfigError.several(problems)

    @classmethod
    def from_dict(cls, values: dict[str, Any], prefix: str = "train") -> TrainConfig:
        known = {f.name: f for f in fields(cls)}
        problems = [
            ConfigError(f"{prefix}.{key}: unknown key", f"known keys: {sorted(known)}")
            for key in values
            if key not in known
        ]
        config = cls.__new__(cls)
        for name, f in known.items():
            setattr(config, name, values.get(name, f.default))
        problems += check_rules(config, prefix)
        if problems:
            raise ConfigError.several(problems)
        return config

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_finetune_train() -> TrainConfig:
    # Fine-tuning starts from a good model: a small Adam step that decays to zero keeps what it knows.
    return TrainConfig(epochs=1, batch_size=64, optimizer="adam", learning_rate=5e-4, schedule="cosine")


@dataclass
class FinetuneConfig:
    """Fine-tuning after a compression stage, by default distilled from the model before the chain."""

    epochs: int = setting(2, Rule("int", 0, MAX_EPOCHS))
    distill: bool = setting(True, Rule("bool"))
    alpha: float = setting(0.5, Rule("float", 0, 1))  # weight of the label loss; distillation gets 1 - alpha
    # Zoo teachers end in softmax and are confident: at T = 4 their clipped log-probabilities make the
    # soft targets mostly noise (p^(1/4) lifts 1e-7 to 0.02); T = 2 measured better on MNIST.
    temperature: float = setting(2.0, Rule("float", 0, MAX_TEMPERATURE, lo_open=True))
    keep_sparsity: bool = setting(True, Rule("bool"))  # re-apply the zeros of pruned kernels after every step
    # A pruned or split recurrence errs at every time step and the damage compounds over the sequence:
    # at train.learning_rate (5e-4) a GRU row model pruned to half its units recovered to 89 % in two
    # epochs, at 3e-3 to 94 % (MNIST, from 97.9 %). Models with a recurrent layer fine-tune at this rate.
    recurrent_learning_rate: float = setting(3e-3, Rule("float", 0, 1, lo_open=True))
    train: TrainConfig = field(default_factory=default_finetune_train)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, prefix: str = "finetune") -> None:
        problems = check_rules(self, prefix)
        if not isinstance(self.train, TrainConfig):
            problems.append(ConfigError(f"{prefix}.train: must be a TrainConfig, got {self.train!r}"))
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
        problems = check_rules(config, prefix)
        try:
            config.train = TrainConfig.from_dict(train_values, prefix)
        except ConfigError as exc:
            problems += exc.problems
        if problems:
            raise ConfigError.several(problems)
        return config
