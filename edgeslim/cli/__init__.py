"""The `edgeslim` command: a thin shell over the Python API (one module per command group)."""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator

import typer

from edgeslim.cli.app import app, command_scope, console, esc, held
from edgeslim.cli.logs import captured_output, log_path
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
    "edgeslim.cli.fit",
    "edgeslim.cli.firmware",
]

for _module in COMMAND_MODULES:
    importlib.import_module(_module)

VERBOSE_FLAGS = ("--verbose", "-v")
INTERRUPTED = 130  # the shell's code for a command stopped by Ctrl-C (128 + SIGINT)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code: 0 done, 1 a result that failed, 2 a user mistake.

    ``--verbose`` (anywhere on the line) shows the libraries' own output, which otherwise goes to the
    log file only (see edgeslim.cli.logs).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = bool(os.environ.get("EDGESLIM_VERBOSE")) or any(a in VERBOSE_FLAGS for a in args)
    args = [a for a in args if a not in VERBOSE_FLAGS]
    command = next((a for a in args if not a.startswith("-")), "")
    if not args or "--help" in args:  # typer prints the help itself, to stdout: nothing to capture
        return _run(args)
    # SIGTERM becomes KeyboardInterrupt; the library chatter goes to the log (RUN/logs once moved there).
    with _terminate_as_interrupt(), captured_output(command, verbose=verbose):
        return _run(args)


# Environment failures of the file system: the user's to fix (space, permissions, a path), not bugs.
FILESYSTEM_HINTS = {
    errno.ENOSPC: "free some space on that disk, or write to another one",
    errno.EDQUOT: "free some of your disk quota, or write to another disk",
    errno.EROFS: "that file system is read-only: choose a writable folder",
    errno.EACCES: "choose a folder you may write, or change its permissions",
    errno.EPERM: "choose a folder you may write, or change its permissions",
    errno.ENAMETOOLONG: "choose a shorter path",
    errno.ENOTDIR: "a part of that path is a file, not a folder: choose another path",
    errno.EISDIR: "that path is a folder: name a file",
    errno.ELOOP: "that path loops through symbolic links: choose another path",
    errno.EFBIG: "the file is too large for that file system: write to another one",
}


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM ends a command like Ctrl-C: its finally blocks run (locks, Ray, temporary files)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: list[str]) -> int:
    try:
        with command_scope():  # the folders a command holds are released (or removed, if bare) here
            code = app(args=args, standalone_mode=False, prog_name="edgeslim")
    except OSError as exc:
        if exc.errno not in FILESYSTEM_HINTS:
            _report_bug()
            return 1
        # Some writers (zip, HDF5) raise without a file name: the folder being written is the place.
        where = exc.filename if exc.filename is not None else (f"writing {held[-1]}" if held else "a file")
        _error_line(f"{where}: {exc.strerror or os.strerror(exc.errno)}; fix: {FILESYSTEM_HINTS[exc.errno]}")
        return 2
    except EdgeslimError as exc:
        for line in exc.lines():
            _error_line(line)
        return exc.exit_code
    except typer.TyperException as exc:  # click's usage errors: unknown option, missing argument, bad value
        _usage_error(exc)
        return 0 if type(exc).__name__ == "NoArgsIsHelpError" else int(getattr(exc, "exit_code", 2))
    except (typer.Abort, KeyboardInterrupt):  # Ctrl-C, or SIGTERM, outside typer's own catch
        console.print("interrupted")
        return INTERRUPTED
    except Exception:  # noqa: BLE001 - not a user mistake: a bug of ours, shown in full and to be reported
        _report_bug()
        return 1
    if code == INTERRUPTED:  # typer turns a KeyboardInterrupt inside a command into exit code 130
        console.print("interrupted")
    return int(code) if isinstance(code, int) else 0


def _error_line(message: str) -> None:
    console.print(f"[bold red]error:[/] {esc(message)}", highlight=False, soft_wrap=True)


def _usage_error(exc: typer.TyperException) -> None:
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError":  # `edgeslim` alone: the help, as --help shows it
        from edgeslim.cli.logs import terminal_stdout

        terminal_stdout().write(exc.format_message() + "\n")
        return
    where = ctx.command_path if ctx is not None else "edgeslim"
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    message = " ".join(message.split())  # click wraps long messages over several lines
    _error_line(f"{where}: {message} (see `{where} --help`)")


def _report_bug() -> None:
    text = traceback.format_exc()
    sys.stderr.write(text)  # into the log as well, when one is being written
    console.print(text, highlight=False, markup=False, soft_wrap=True)
    where = log_path()
    console.print(
        "[bold red]internal error:[/] this is a bug in edgeslim, not something you did; please report it "
        "with the traceback above" + (f" and the log {where}" if where else ""),
        highlight=False,
        soft_wrap=True,
    )


def entrypoint() -> None:
    sys.exit(main())


__all__ = ["app", "main"]
