"""The `edgeslim` command: a thin shell over the Python API (one module per command group)."""

from __future__ import annotations

import importlib
import sys

from edgeslim.cli.app import app, console
from edgeslim.errors import EdgeslimError

# Each module registers its commands on `app` when imported. Adding a command: one new module,
# one line here.
COMMAND_MODULES = [
    "edgeslim.cli.train",
    "edgeslim.cli.inspect",
    "edgeslim.cli.compress",
    "edgeslim.cli.pipeline",
    "edgeslim.cli.deploy",
    "edgeslim.cli.export",
    "edgeslim.cli.run",
]

for _module in COMMAND_MODULES:
    importlib.import_module(_module)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; a user mistake (EdgeslimError) becomes one line on stderr and exit code 2."""
    from edgeslim.cli.stderr_filter import filtered_stderr

    with filtered_stderr():
        return _run(argv)


def _run(argv: list[str] | None) -> int:
    try:
        app(args=argv, standalone_mode=False)
    except EdgeslimError as exc:
        console.print(f"[bold red]error:[/] {exc.message}", highlight=False, soft_wrap=True)
        if exc.hint:
            console.print(f"  [yellow]fix:[/] {exc.hint}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    except SystemExit as exc:
        return int(exc.code or 0)
    except Exception as exc:  # click's own usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return exc.exit_code
        if isinstance(exc, click.exceptions.Abort):
            return 1
        raise
    return 0


def entrypoint() -> None:
    sys.exit(main())


__all__ = ["app", "main"]
