"""How a fit searches: every setting's default and accepted values, once.

The CLI's option defaults, the pipeline config's ``fit:`` section and ``fit_model`` read them here, so
the three never disagree (the budget's own defaults, target and ``max_loss``, are ``Budget``'s).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from edgeslim.errors import ConfigError
from edgeslim.settings import Rule, check_rules, setting
from edgeslim.tflm_kernels import DEFAULT_KERNELS, KERNELS, firmware_only
from edgeslim.train.config import MAX_EPOCHS, MAX_SEED

MAX_TRIALS = 1_000
MAX_WORKERS = 1_024


@dataclass(frozen=True)
class FitOptions:
    # None: every technique the target takes (check_techniques, from export's registry)
    techniques: tuple[str, ...] | None = None
    max_trials: int = setting(6, Rule("int", 1, MAX_TRIALS))
    # Distillation epochs per trial (then QAT); the search doubles them once when the loss binds. A
    # compressed model's epochs are cheap beside its export, and they are what the loss rule needs: on
    # mnistnet3 at 16 KB the same plan lost 1.15 pt on the test split after 10, 0.70 after 20 and 0.25
    # after 40 (86 s, 97 s, 161 s a trial on 2 cores).
    finetune_epochs: int = setting(40, Rule("int", 1, MAX_EPOCHS))
    # The loss rule: the winner loses at most max_loss with this confidence (search.py says how).
    loss_confidence: float = setting(0.9, Rule("float", 0.5, 1, hi_open=True))
    # mcu: measure the trials and the winner as firmware on an emulated board
    firmware: bool = setting(False, Rule("bool"))
    # firmware: TFLite Micro's kernels the trials are measured with (CMSIS-NN: what products ship)
    kernels: str = setting(DEFAULT_KERNELS, Rule("str", choices=tuple(KERNELS)))
    seed: int = setting(0, Rule("int", 0, MAX_SEED))  # the same seed gives the same plans
    # None: in-process; N: a private local Ray of N CPUs; ray_address: join a running cluster
    workers: int | None = setting(None, Rule("int", 1, MAX_WORKERS, optional=True))
    ray_address: str | None = setting(None, Rule("str", optional=True))
    # Reuse the cached sensitivity table and earlier fits' trials of this model, data and edgeslim
    reuse_cache: bool = setting(True, Rule("bool"))

    def validate(self, cli: bool = True) -> None:
        """Every field against its rule, the mistakes named as the CLI (``--max-trials``) or the config
        (``fit.max_trials``) spells them, all in one ConfigError."""
        name = (lambda field: "--" + field.replace("_", "-")) if cli else None
        problems = check_rules(self, "fit", name)
        if self.kernels in KERNELS and self.kernels != DEFAULT_KERNELS and not self.firmware:
            spell = name or (lambda field: f"fit.{field}")
            problems.append(firmware_only(spell("kernels"), spell("firmware")))
        if problems:
            raise ConfigError.several(problems)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


DEFAULTS = FitOptions()


def config_rules() -> dict[str, Any]:
    """The config schema's entries for these settings: each field's rule (techniques: a name list)."""
    return {f.name: f.metadata.get("rule", (str, list, type(None))) for f in fields(FitOptions)}
