"""The one exception type for user mistakes.

The CLI turns an :class:`EdgeslimError` into one line per mistake (what is wrong, what to do) and exit
code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence


class EdgeslimError(Exception):
    """A problem the user can fix: a bad file, name, parameter or shape.

    ``message`` says what is wrong (naming the file or field), ``hint`` says what to do.
    """

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        self.problems: list[EdgeslimError] = [self]
        super().__init__(f"{message} ({hint})" if hint else message)

    def lines(self) -> list[str]:
        """One line per mistake: ``message; fix: hint``."""
        return [p.message + (f"; fix: {p.hint}" if p.hint else "") for p in self.problems]


class MissingTool(EdgeslimError):
    """Something this machine lacks (an extra, a compiler, an emulator, TFLite Micro's sources).

    Not a property of the model: a pipeline step that stops on it leaves no marker, so the step runs
    again once the tool is installed, instead of replaying the failure from its cache.
    """


class ConfigError(EdgeslimError):
    """A bad value in a config file or a stage parameter; the message names the key path."""

    @classmethod
    def several(cls, problems: Sequence[EdgeslimError]) -> ConfigError:
        """All the mistakes a validation found, reported together (the first one as the message)."""
        first = problems[0]
        error = cls(first.message, first.hint)
        error.problems = list(problems)
        return error


class Problems:
    """Collects the mistakes of a validation, so the user sees all of them at once.

    ``with problems.collect(prefix):`` records a ConfigError raised inside (each of its problems, the
    key path prefixed) and carries on; ``raise_if_any()`` raises them together.
    """

    def __init__(self) -> None:
        self.items: list[EdgeslimError] = []

    def add(self, message: str, hint: str | None = None) -> None:
        self.items.append(ConfigError(message, hint))

    def collect(self, prefix: str = "") -> _Collector:
        return _Collector(self, prefix)

    def raise_if_any(self) -> None:
        if self.items:
            raise ConfigError.several(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)


class _Collector:
    def __init__(self, problems: Problems, prefix: str) -> None:
        self.problems, self.prefix = problems, prefix

    def __enter__(self) -> _Collector:
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> bool:
        if isinstance(exc, ConfigError):
            for p in exc.problems:
                self.problems.add(self.prefix + p.message, p.hint)
            return True
        return False
