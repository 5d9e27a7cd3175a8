"""The Typer application that every command module registers on.

Command modules import only typer/rich at module level; TensorFlow, Keras and the runtimes are
imported inside the command functions, so `edgeslim --help` stays fast and TensorFlow-free.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

app = typer.Typer(
    name="edgeslim",
    help="Compress Keras 3 models and deploy them to Raspberry Pi, Coral Edge TPU and microcontrollers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

console = Console(stderr=True)  # progress and tables go to stderr; --json output owns stdout


def print_json(obj: Any) -> None:
    from edgeslim.atomic import _json_default
    from edgeslim.cli.logs import terminal_stdout

    out = terminal_stdout()
    out.write(json.dumps(obj, indent=2, default=_json_default) + "\n")
    out.flush()


def stdout_console() -> Console:
    """A console on the real stdout, for a command's own tables (inspect)."""
    from edgeslim.cli.logs import terminal_stdout

    return Console(file=terminal_stdout(), width=140)


# The folders the running command owns stay locked until the command ends (main() closes this).
_scopes: list[contextlib.ExitStack] = []
held: list[Path] = []  # the folders the last command claimed: where a nameless write error happened


def hold_folder(out: Path, kind: str, **checks: Any) -> Path:
    """Claim ``out`` for this command (see edgeslim.ownership) and hold its lock until the command ends."""
    from edgeslim.ownership import owned

    manager = owned(out, kind, **checks)
    held.append(Path(out))
    if not _scopes:  # called outside main() (an embedding program): held until the process ends
        return manager.__enter__()
    return _scopes[-1].enter_context(manager)


@contextlib.contextmanager
def command_scope() -> Iterator[None]:
    held.clear()
    with contextlib.ExitStack() as scope:
        _scopes.append(scope)
        try:
            yield
        finally:
            _scopes.pop()


def esc(value: object) -> str:
    """``value`` as literal text in a console line: paths and hints may hold brackets (``edgeslim[mcu]``)."""
    from rich.markup import escape

    return escape(str(value))
