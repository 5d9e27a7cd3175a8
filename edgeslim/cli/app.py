"""The Typer application that every command module registers on.

Command modules import only typer/rich at module level; TensorFlow, Keras and the runtimes are
imported inside the command functions, so `edgeslim --help` stays fast and TensorFlow-free.
"""

from __future__ import annotations

import json
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
