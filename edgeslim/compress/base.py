"""The one interface every compression technique implements: a Stage, its StageRecord and StageResult.

A stage is configured with plain keyword parameters (validated in the constructor), never mutates the
model it is given, and says per layer what it changed, or why it left a layer alone.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

from edgeslim.errors import ConfigError, Problems
from edgeslim.limits import MAX_COUNT

if TYPE_CHECKING:
    import keras

    from edgeslim.data.dataset import Dataset
    from edgeslim.train.config import FinetuneConfig

# Fine-tuning is a service the caller passes in (edgeslim.train.finetune.finetune has this shape):
# finetuner(model, dataset, config, teacher=..., progress=..., callbacks=...) -> result with
# ``history`` and ``metrics``; it trains ``model`` in place.
Finetuner = Callable[..., Any]

# "resized": only the layer's inputs shrank (a consumer of pruned channels).
ACTIONS = ("pruned", "resized", "factorized", "replaced", "folded", "quantized", "skipped", "kept")


@dataclass
class LayerChange:
    """One row of a record: what a stage did to one layer of its input model."""

    name: str
    type: str
    action: str
    params_before: int = 0
    params_after: int = 0
    macs_before: int = 0
    macs_after: int = 0
    sparsity: float | None = None
    rank: int | None = None
    error: float | None = None  # relative reconstruction error (Frobenius norm of the weight difference)
    reason: str = ""  # why a layer was skipped, or a note on how it was changed
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageRecord:
    stage: str
    params: dict[str, Any]
    layers: list[LayerChange] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    finetune: dict[str, Any] | None = None
    quantization: dict[str, Any] | None = None  # only the quantize stage: the recipe the export applies
    extra: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the user should know (QAT skipped, and why)

    @property
    def changed(self) -> list[LayerChange]:
        return [row for row in self.layers if row.action not in ("skipped", "kept")]

    @property
    def skipped(self) -> list[LayerChange]:
        return [row for row in self.layers if row.action == "skipped"]

    def row(self, name: str) -> LayerChange:
        for row in self.layers:
            if row.name == name:
                return row
        raise KeyError(f"no layer {name!r} in the {self.stage} record")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageRecord:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["layers"] = [LayerChange(**row) for row in data.get("layers", [])]
        return cls(**values)


@dataclass
class StageResult:
    model: keras.Model
    record: StageRecord


@dataclass(kw_only=True)
class Stage(ABC):
    """A compression technique: parameters in, ``apply(model, dataset) -> StageResult`` out."""

    name: ClassVar[str] = ""
    structural: ClassVar[bool] = True  # changes weights or layers, so fine-tuning may follow

    def __post_init__(self) -> None:
        # Every bad parameter is reported at once: `fail` records while validating.
        self._problems = Problems()
        self._validating = True
        try:
            self.validate()
        except ConfigError as exc:
            self._problems.items += exc.problems
        except (TypeError, ValueError):
            if not self._problems:  # no bad value was reported, so this is a bug of ours
                raise
        finally:
            self._validating = False
        self._problems.raise_if_any()

    def validate(self) -> None:  # noqa: B027 - a stage without parameters has nothing to check
        """Raise ConfigError naming ``<stage>.<param>`` for any bad parameter."""

    def get_config(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def param_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @abstractmethod
    def apply(self, model: keras.Model, dataset: Dataset) -> StageResult:
        """Return a new model (the input is never modified) and the record of what changed."""

    def run(
        self,
        model: keras.Model,
        dataset: Dataset,
        finetune: FinetuneConfig | None = None,
        teacher: keras.Model | None = None,
        progress: Any = False,
        finetuner: Finetuner | None = None,
    ) -> StageResult:
        """``apply``, then fine-tune the result with ``finetuner`` (distilling from ``teacher``, by
        default the input model) when ``finetune`` asks for epochs and the stage changed something."""
        result = self.apply(model, dataset)
        if finetune is not None and finetune.epochs > 0 and self.structural and result.record.changed:
            start = time.perf_counter()
            trained = require(finetuner)(
                result.model,
                dataset,
                finetune,
                teacher=teacher if teacher is not None else model,
                progress=progress,
            )
            result.record.finetune = finetune_summary(trained, finetune)
            result.model = plain_copy(result.model)
            result.record.seconds += time.perf_counter() - start
        return result

    # Parameter checks shared by every stage: the message always names `<stage>.<param>`.
    def fail(self, param: str, expected: str, value: Any) -> None:
        from edgeslim.settings import shown  # a value of 400 digits is cut, the line stays one line

        error = ConfigError(f"{self.name}.{param}: must be {expected}, got {shown(value)}")
        if getattr(self, "_validating", False):
            self._problems.items.append(error)
            return
        raise error

    def check_number(
        self,
        param: str,
        lo: float | None = None,
        hi: float | None = None,
        lo_open: bool = False,
        hi_open: bool = False,
        integer: bool = False,
        optional: bool = False,
    ) -> None:
        value = getattr(self, param)
        if value is None and optional:
            return
        lo_b, hi_b = ("(" if lo_open else "["), (")" if hi_open else "]")
        if integer:
            hi = MAX_COUNT if hi is None else hi  # every count is bounded: 1e29 epochs would run forever
            expected = f"a positive integer <= {hi}" if lo == 1 else f"an integer in [{lo:g}, {hi}]"
        else:
            expected = f"in {lo_b}{lo:g}, {hi:g}{hi_b}" if hi is not None else f"a number >= {lo:g}"
        ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
        # NaN passes every < and >; an int too large for a float is simply too large
        finite = ok_type and (isinstance(value, int) or math.isfinite(value))
        if isinstance(value, bool) or not ok_type or not finite:
            self.fail(param, expected, value)
            return
        too_low = lo is not None and (value <= lo if lo_open else value < lo)
        too_high = hi is not None and (value >= hi if hi_open else value > hi)
        if too_low or too_high:
            self.fail(param, expected, value)

    def check_choice(self, param: str, choices: tuple[str, ...]) -> None:
        value = getattr(self, param)
        if value is None and "none" in choices:  # a spec's "none" parses to None
            setattr(self, param, value := "none")
        if value not in choices:
            self.fail(param, f"one of {list(choices)}", value)

    def check_bool(self, param: str) -> None:
        if not isinstance(getattr(self, param), bool):
            self.fail(param, "true or false", getattr(self, param))


@dataclass(kw_only=True)
class LayerStage(Stage):
    """A stage that works layer by layer; ``layers``/``exclude`` restrict it by name ("a|b" in a spec)."""

    layers: str | list[str] | None = None
    exclude: str | list[str] | None = None

    def validate(self) -> None:
        for param in ("layers", "exclude"):
            value = getattr(self, param)
            if value is not None and not isinstance(value, str | list | tuple):
                self.fail(param, "layer names separated by '|' (or a list)", value)

    def names(self, param: str) -> set[str]:
        value = getattr(self, param)
        if value is None:
            return set()
        if isinstance(value, dict):
            return {str(k) for k in value}
        items = value.split("|") if isinstance(value, str) else list(value)
        return {
            str(item).strip().rpartition(":")[0] or str(item).strip() for item in items if str(item).strip()
        }

    def per_layer_values(self, param: str, valid: Callable[[float], bool], expected: str) -> dict[str, float]:
        """A per-layer override, ``"dense1:0.75|conv2:0.5"`` or a mapping, checked value by value."""
        value = getattr(self, param)
        if value is None:
            return {}
        if isinstance(value, str):
            items: dict[str, Any] = {}
            for part in filter(None, (p.strip() for p in value.split("|"))):
                name, sep, number = part.rpartition(":")
                items[name] = parse_number(number) if sep else None
        elif isinstance(value, dict):
            items = dict(value)
        else:
            self.fail(param, f"a mapping or {expected}", value)
            return {}
        for name, v in items.items():
            number = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            if not name or not number or not valid(v):
                self.fail(param, expected, value)
                return {}
        return items

    def check_names(self, model_layers: list[str], params: tuple[str, ...] = ("layers", "exclude")) -> None:
        """Fail on a layer name the model lacks (a typo would silently do nothing)."""
        for param in params:
            unknown = sorted(self.names(param) - set(model_layers))
            if unknown:
                raise ConfigError(
                    f"{self.name}.{param}: no layer named {unknown[0]!r} in the model",
                    f"layers: {model_layers}",
                )

    def selected(self, layer_name: str) -> bool:
        include = self.names("layers")
        return (not include or layer_name in include) and layer_name not in self.names("exclude")


def parse_number(text: str) -> float | str:
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


def require(finetuner: Finetuner | None) -> Finetuner:
    if finetuner is None:
        raise TypeError(
            "fine-tuning needs a finetuner: pass finetuner=edgeslim.train.finetune.finetune (or your own)"
        )
    return finetuner


def plain_copy(model: keras.Model) -> keras.Model:
    """The trained model without its training state (optimizer, distillation loss): what a stage hands on."""
    from edgeslim.layers.graph import ModelGraph

    return ModelGraph(model).rebuild()


def finetune_summary(trained: Any, config: FinetuneConfig) -> dict[str, Any]:
    return {"config": config.to_dict(), "history": trained.history, "metrics": trained.metrics}
