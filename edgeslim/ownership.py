"""Folders edgeslim owns: it writes only into them, and never over the user's own files.

A folder edgeslim creates (a run, a training run, a fit, an export, a bundle) carries a small marker,
``.edgeslim``, saying which command made it. A command refuses an output folder that exists, is not
empty and has no marker, one that another kind of command made, one that contains the command's own
input, and one inside a folder it is reading: git's refusal to overwrite work, not rsync's trust.
Names read from a marker or a manifest must resolve inside the folder that holds them (``member``),
so a tampered file can never make edgeslim read, copy or delete anything outside.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from edgeslim import __version__
from edgeslim.atomic import write_json
from edgeslim.errors import EdgeslimError

MARK = ".edgeslim"


def read_mark(folder: Path) -> dict | None:
    """The marker of a folder edgeslim made, or None (no marker, or not one of ours)."""
    try:
        mark = json.loads((folder / MARK).read_text())
    except (OSError, ValueError):
        return None
    return mark if isinstance(mark, dict) and isinstance(mark.get("kind"), str) else None


def claim(
    out: str | os.PathLike[str],
    kind: str,
    *,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    reading: Iterable[str | os.PathLike[str] | None] = (),
    replace: bool = False,
    option: str = "--out",
) -> Path:
    """Make ``out`` a folder of edgeslim's ``kind`` (creating it), or refuse with one line.

    ``inputs``: files or folders the command reads; ``out`` must not contain them (nor be them).
    ``reading``: folders the command reads from; ``out`` must not lie inside them.
    ``replace``: an existing folder of the same kind is the caller's to replace (deploy --force);
    without it such a folder is refused when ``kind`` is a bundle (the others resume or update theirs).
    """
    out = Path(out)
    where = f"{option} {out}"
    if out.is_symlink():
        raise EdgeslimError(
            f"{where}: is a symbolic link (to {os.readlink(out)})",
            "pass the folder it points to, or a new folder name",
        )
    resolved = out.resolve()
    for item in filter(None, inputs):
        source = Path(item).resolve()
        if source == resolved or resolved in source.parents:
            raise EdgeslimError(
                f"{where}: contains this command's input {item}", "choose an output folder outside it"
            )
    for item in filter(None, reading):
        folder = Path(item).resolve()
        if folder == resolved or folder in resolved.parents:
            raise EdgeslimError(
                f"{where}: is inside {item}, which this command reads",
                "choose an output folder outside it",
            )
    if out.exists() and not out.is_dir():
        raise EdgeslimError(f"{where}: is a file, not a folder", "choose a folder name (new or empty)")
    if out.is_dir():
        _check_existing(out, kind, where, replace)
    out.mkdir(parents=True, exist_ok=True)
    if read_mark(out) is None:
        write_json(out / MARK, {"kind": kind, "edgeslim": __version__, "created": time.strftime("%FT%T")})
    return out


def _check_existing(out: Path, kind: str, where: str, replace: bool) -> None:
    mark = read_mark(out)
    if mark is None:
        if any(out.iterdir()):
            names = sorted(p.name for p in out.iterdir())
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            raise EdgeslimError(
                f"{where}: exists and holds files edgeslim did not write ({shown})",
                "choose a new or empty folder; edgeslim never writes into a folder it did not make",
            )
        return
    if mark["kind"] != kind:
        raise EdgeslimError(
            f"{where}: holds an edgeslim {mark['kind']}, not a {kind}",
            f"choose another folder for the {kind}",
        )
    if kind == "bundle" and not replace:
        raise EdgeslimError(
            f"{where}: holds an earlier bundle", "pass --force to replace it, or choose another folder"
        )


def member(folder: Path, name: object) -> Path | None:
    """``folder/name`` when ``name`` is a relative path that stays inside ``folder`` (links resolved)
    and is not itself a link; None for anything a tampered record could use to point outside."""
    if not isinstance(name, str) or not name or "\x00" in name or os.path.isabs(name):
        return None
    path = folder / name
    try:
        inside = path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):  # a link loop
        return None
    return path if inside and not path.is_symlink() else None


@contextlib.contextmanager
def owned(out: str | os.PathLike[str], kind: str, **checks: Any) -> Iterator[Path]:
    """``claim`` the folder, then hold its lock (one writer) for the block."""
    from edgeslim.runlock import LOCK_NAME, locked

    created = not Path(out).exists()
    path = claim(out, kind, **checks)
    try:
        with locked(path):
            yield path
    except BaseException as exc:
        if created:  # a folder this command made and left with nothing in it: gone, as if never made
            # A user's mistake is said on the terminal; a bug's log stays for the report it asks for.
            _remove_if_bare(path, LOCK_NAME, keep_log=not isinstance(exc, EdgeslimError | OSError))
        raise


def _remove_if_bare(path: Path, lock_name: str, keep_log: bool) -> None:
    log = path / "logs" / "edgeslim.log"
    ours = {path / MARK, path / lock_name, *([] if keep_log else [log])}
    if any(p not in ours for p in path.rglob("*") if p.is_file() or p.is_symlink()):
        return  # something was written there: it stays, and so does the marker that owns it
    for p in ours:
        p.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        (path / "logs").rmdir()
    with contextlib.suppress(OSError):
        path.rmdir()
