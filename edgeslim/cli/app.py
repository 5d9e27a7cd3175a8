"""The Typer application that every command module registers on.

Command modules import only typer/rich at module level; TensorFlow, Keras and the runtimes are
imported inside the command functions, so `edgeslim --help` stays fast and TensorFlow-free.
"""

from __future__ import annotations

import json
import sys
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

    sys.stdout.write(json.dumps(obj, indent=2, default=_json_default) + "\n")
    sys.stdout.flush()
