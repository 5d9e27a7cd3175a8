"""`edgeslim deploy`: assemble what to copy to the device from a pipeline run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeslim.cli.app import app, console, esc


@app.command()
def deploy(
    run_dir: Annotated[Path, typer.Argument(help="A pipeline run directory.")],
    target: Annotated[str, typer.Option(help="rpi, coral or mcu.")] = "rpi",
    out: Annotated[Path, typer.Option(help="Bundle folder to write.")] = Path("bundle"),
    artifact: Annotated[
        str | None, typer.Option(help="Pick an artifact by file name (default: the smallest verified one).")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Replace an earlier bundle of edgeslim's in OUT (only the files it wrote).")
    ] = False,
) -> None:
    """Write a deploy bundle: the artifact, its sidecar, run.py and a README (or the mcu C package).

    OUT must be a new or empty folder, or an earlier bundle (with --force); edgeslim never writes into
    a folder it did not make."""
    from edgeslim.deploy import make_bundle
    from edgeslim.ownership import MARK
    from edgeslim.runlock import LOCK_NAME

    bundle = make_bundle(run_dir, target, out, artifact=artifact, force=force)
    console.print(f"wrote {esc(bundle)}:", highlight=False)
    for path in sorted(bundle.rglob("*")):
        if path.is_file() and path.name not in (MARK, LOCK_NAME):
            console.print(
                f"  {esc(path.relative_to(bundle))}  ({path.stat().st_size:,} bytes)", highlight=False
            )
