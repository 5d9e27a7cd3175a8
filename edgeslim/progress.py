"""Progress reporting as a small protocol, so that training and the stages report without knowing the CLI.

Whoever runs the work passes a :class:`ProgressReporter` in (the CLI a rich bar on its console, a
notebook its own, a script nothing); ``progress=True`` asks for the plain rich bar below, on stderr.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class ProgressReporter(Protocol):
    """One task at a time: ``start`` it with a total, ``advance`` it, ``update`` its status, ``stop``."""

    def start(self, description: str, total: int) -> None: ...

    def advance(self, steps: int = 1) -> None: ...

    def update(self, status: str, completed: int | None = None) -> None: ...

    def stop(self) -> None: ...


class RichReporter:
    """A rich progress bar: description, bar, done/total, the latest status, time left."""

    def __init__(self, console: Any | None = None) -> None:
        from rich.console import Console

        self.console = console if console is not None else Console(stderr=True)  # stdout stays for --json
        self._progress: Any = None
        self._task: Any = None

    def start(self, description: str, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(description, total=total, status="")

    def advance(self, steps: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, steps)

    def update(self, status: str, completed: int | None = None) -> None:
        if self._progress is not None:
            self._progress.update(self._task, status=status, completed=completed)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def reporter_for(progress: bool | ProgressReporter | None) -> ProgressReporter | None:
    """``True``: the plain rich bar; ``False``/``None``: no reporting; a reporter: itself."""
    if progress is True:
        return RichReporter()
    if progress is False or progress is None:
        return None
    if isinstance(progress, ProgressReporter):
        return progress
    raise TypeError(f"progress must be a bool or a ProgressReporter, got {type(progress).__name__}")
