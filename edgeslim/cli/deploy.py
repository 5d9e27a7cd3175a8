"""`edgeslim deploy`: assemble what to copy to the device from a pipeline run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeslim.cli.app import app, console


@app.command()
def deploy(
    run_dir: Annotated[Path, typer.Argument(help="A pipeline run directory.")],
    target: Annotated[str, typer.Option(help="rpi, coral or mcu.")] = "rpi",
    out: Annotated[Path, typer.Option(help="Bundle folder to write.")] = Path("bundle"),
    artifact: Annotated[
        str | None, typer.Option(help="Pick an artifact by file name (default: the smallest verified one).")
    ] = None,
) -> None:
    """Write a deploy bundle: the artifact, its sidecar, run.py and a README (or the mcu C package)."""
    from edgeslim.deploy import make_bundle

    bundle = make_bundle(run_dir, target, out, artifact=artifact)
    console.print(f"wrote {bundle}:")
    for path in sorted(bundle.rglob("*")):
        if path.is_file():
            console.print(f"  {path.relative_to(bundle)}  ({path.stat().st_size:,} bytes)")
