"""One setting's rule and default, side by side: what every options dataclass (training, export, fit)
is made of, and how each is checked with its mistakes named by key path or CLI option.

Imports neither TensorFlow nor Keras, and nothing else of edgeslim's but its errors.
"""

from __future__ import annotations

import math
import reprlib
from dataclasses import dataclass, field, fields
from typing import Any

from edgeslim.errors import ConfigError

TYPE_WORDS = {"bool": "true or false", "int": "an integer", "float": "a finite number", "str": "a string"}


@dataclass(frozen=True)
class Rule:
    """What one setting accepts: its kind (int, float, bool, str), a range or the allowed choices.

    An int is never a bool; a float takes ints, never NaN or infinity. ``optional`` also takes None.
    """

    kind: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[str, ...] = ()
    optional: bool = False

    def expected(self) -> str:
        """The accepted values in words: ``a positive integer <= 10000``, ``a number in [0, 1)``."""
        if self.choices:
            return f"one of {list(self.choices)}"
        if self.kind == "int" and self.lo is not None:
            upper = f" <= {_num(self.hi)}" if self.hi is not None else ""
            if self.lo == 1 and not self.lo_open:
                return f"a positive integer{upper}"
            return f"an integer >= {_num(self.lo)}" + (f" and{upper}" if upper else "")
        if self.kind == "float" and self.lo is not None:
            if self.hi is None:
                return f"a number {'>' if self.lo_open else '>='} {_num(self.lo)}"
            if self.lo_open and self.lo == 0 and not self.hi_open:
                return f"a number > 0 and <= {_num(self.hi)}"
            lb, rb = ("(" if self.lo_open else "["), (")" if self.hi_open else "]")
            return f"a number in {lb}{_num(self.lo)}, {_num(self.hi)}{rb}"
        return TYPE_WORDS[self.kind]

    def problem(self, value: Any) -> str | None:
        """None when ``value`` is accepted, else ``must be <what>, got <value>``."""
        if value is None and self.optional:
            return None
        if not is_type(value, self.kind):
            expected = f"one of {list(self.choices)}" if self.choices else TYPE_WORDS[self.kind]
            return f"must be {expected}, got {shown(value)}"
        if self.choices and value not in self.choices:
            return f"must be one of {list(self.choices)}, got {shown(value)}"
        too_low = self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)
        too_high = self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi)
        if too_low or too_high:
            return f"must be {self.expected()}, got {shown(value)}"
        return None


def _num(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


_SHORT = reprlib.Repr()  # Python 3.11's Repr takes no arguments
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxlong, _SHORT.maxother = 2, 60, 40, 60
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 4


def shown(value: Any) -> str:
    """A short repr of ``value`` for a message: long strings, numbers and nested lists are cut, at a cost
    bounded by the cut (never the whole of a huge or self-sharing value), so a message stays one line."""
    return _SHORT.repr(value)


def setting(default: Any, rule: Rule) -> Any:
    """A dataclass field with its default and its rule, side by side (the one home of both)."""
    return field(default=default, metadata={"rule": rule})


def check_rules(config: Any, prefix: str, name: Any = None) -> list[ConfigError]:
    """Every field of a dataclass instance against its rule, one ConfigError per mistake, each naming
    its key as ``prefix.field`` or as ``name(field)`` spells it (e.g. a CLI option)."""
    problems = []
    for f in fields(config):
        rule = f.metadata.get("rule")
        message = rule.problem(getattr(config, f.name)) if rule is not None else None
        if message:
            key = name(f.name) if name is not None else f"{prefix}.{f.name}"
            problems.append(ConfigError(f"{key}: {message}"))
    return problems


def is_type(value: Any, expected: str) -> bool:
    """``value`` is of kind ``expected``; a huge int is a finite number (no float conversion to overflow)."""
    if expected == "bool":
        return isinstance(value, bool)
    if expected == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "float":
        if isinstance(value, bool):
            return False
        return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
    return isinstance(value, str)
