"""The one exception type for user mistakes.

The CLI turns an :class:`EdgeslimError` into a one-line message and exit code 2; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations


class EdgeslimError(Exception):
    """A problem the user can fix: a bad file, name, parameter or shape.

    ``message`` says what is wrong (naming the file or field), ``hint`` says what to do.
    """

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)


class ConfigError(EdgeslimError):
    """A bad value in a config file or a stage parameter; the message names the key path."""
