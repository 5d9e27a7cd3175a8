"""`edgeslim pipeline`, `edgeslim init` and `edgeslim report`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edgeslim.cli.app import app, console, esc, hold_folder, print_json


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the config.")] = Path("edgeslim.yaml"),
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write the default pipeline config, commented, for you to edit."""
    from edgeslim.atomic import write_text
    from edgeslim.errors import EdgeslimError
    from edgeslim.pipeline.config import default_config_text

    if path.exists() and not force:
        raise EdgeslimError(f"{path}: already exists", "pass --force to overwrite it, or choose another path")
    write_text(path, default_config_text())
    console.print(
        f"wrote {esc(path)}; run it with: edgeslim pipeline {esc(path)} --out runs/my-run", highlight=False
    )


@app.command()
def pipeline(
    config: Annotated[
        Path | None, typer.Argument(help="YAML config (default: the embedded digits pipeline).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Run directory (resumes when it exists).")] = Path(
        "runs/pipeline"
    ),
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override a key: train.epochs=3, compress[1].lowrank.energy=0.9 (repeatable)."
        ),
    ] = None,
    dataset: Annotated[str | None, typer.Option(help="Override dataset.name.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Override dataset.data_dir.")] = None,
    model: Annotated[str | None, typer.Option(help="Override model (zoo name or .keras path).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Override train.epochs.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
) -> None:
    """Run train -> compress -> export -> report. Unchanged steps are skipped on a rerun."""
    from edgeslim.cli.logs import move_log
    from edgeslim.pipeline import load_config, run_pipeline
    from edgeslim.pipeline.runner import run_inputs

    overrides = list(set_ or [])
    overrides += [f"dataset.name={dataset}"] if dataset else []
    overrides += [f"dataset.data_dir={data_dir.resolve()}"] if data_dir else []
    overrides += [f"model={model}"] if model else []
    overrides += [f"train.epochs={epochs}"] if epochs is not None else []
    cfg = load_config(config, overrides)
    hold_folder(out, "run", inputs=run_inputs(cfg))
    move_log(out / "logs")
    silent = quiet or json_output
    result = run_pipeline(cfg, out, progress=not silent, notify=note_step if silent else notify_step)
    summary = _summary(result)
    if json_output:
        print_json(summary)
    elif not quiet:
        _print_summary(result.report)
        console.print(
            f"report: {esc(out / 'report' / 'report.html')}  ({result.seconds:.1f} s)", highlight=False
        )
    if result.failures:
        for failure in result.failures:  # verbatim: a hint's `edgeslim[mcu]` is not markup
            console.print(f"[bold red]failed:[/] {esc(failure)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A pipeline run directory.")],
    out: Annotated[Path | None, typer.Option(help="Report folder (default RUN_DIR/report).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print report.json on stdout.")] = False,
    no_plots: Annotated[bool, typer.Option("--no-plots", help="Skip the matplotlib plots.")] = False,
) -> None:
    """Rebuild the report (JSON, Markdown, HTML) from a run directory's records."""
    from edgeslim.cli.logs import move_log
    from edgeslim.ownership import read_mark
    from edgeslim.report import build_report, write_report

    if out is not None:
        hold_folder(out, "report", reading=[run_dir])
    if run_dir.is_dir() and (read_mark(run_dir) or {}).get("kind") == "run":
        hold_folder(run_dir, "run")  # one writer: the report folder belongs to the run
        move_log(run_dir / "logs")
    data = build_report(run_dir)
    written = write_report(data, out or run_dir / "report", plots=not no_plots)
    if json_output:
        print_json(data)
        return
    _print_summary(data)
    for kind, path in written.items():
        if not kind.startswith("plot:"):
            console.print(f"wrote {esc(path)}", highlight=False)


def note_step(step: str, event: str) -> None:
    """Quiet runs too tell the watching parent which step is running (a native crash names it)."""
    from edgeslim.supervisor import note

    if event == "start":
        note(step=step)


def notify_step(step: str, event: str) -> None:
    note_step(step, event)
    if event == "note":
        console.print(f"  [yellow]{esc(step)}[/]", highlight=False)
        return
    style = {"start": "bold cyan", "cached": "dim", "done": "green", "failed": "bold red"}[event]
    label = {"start": "running", "cached": "unchanged, skipped", "done": "done", "failed": "FAILED"}[event]
    console.print(f"[{style}]{esc(step)}: {label}[/]", highlight=False)


def _summary(result: Any) -> dict[str, Any]:
    rep = result.report or {}
    return {
        "run_dir": str(result.run_dir),
        "seconds": result.seconds,
        "steps": [{"name": s.name, "cached": s.cached, "seconds": s.seconds} for s in result.steps],
        "failures": result.failures,
        "baseline_accuracy": rep.get("baseline_accuracy"),
        "stages": [{k: s[k] for k in ("name", "params", "macs", "deployed")} for s in rep.get("stages", [])],
        "artifacts": rep.get("artifacts", []),
    }


def _print_summary(data: dict[str, Any] | None) -> None:
    """A compact terminal summary; report.md/html hold every column."""
    from rich.table import Table

    from edgeslim.report.format import acc, delta, kb, num
    from edgeslim.report.markdown import target_check

    if not data:
        return
    stages = Table(title="stages, each measured in LiteRT")
    for header in ("stage", "params", "multiplications", "bytes", "accuracy", "vs base"):
        stages.add_column(header, justify="left" if header == "stage" else "right")
    for s in data["stages"]:
        d = s["deployed"]
        stages.add_row(
            s["name"],
            num(s["params"]),
            num(s["macs"]),
            kb(d["bytes"]),
            acc(d["accuracy"]),
            delta(s["delta_vs_baseline"]),
        )
    console.print(stages)
    if not data["artifacts"]:
        return
    artifacts = Table(title="exported artifacts")
    for header in ("artifact", "bytes", "accuracy", "agreement", "check"):
        artifacts.add_column(header, justify="left" if header in ("artifact", "check") else "right")
    for a in data["artifacts"]:
        check = f"FAILED: {a['failure']}" if a.get("failure") else target_check(a) or "ok"
        artifacts.add_row(a["name"], kb(a["bytes"]), acc(a["accuracy"]), acc(a.get("agreement")), check)
    console.print(artifacts)
