"""`edgeslim compress`: run compression stages in order, each fine-tuned, and write every stage's result.

It is the pipeline without training and export: the same run directory (00-train measures the input
model, NN-<stage>/ holds each stage's model, record and LiteRT measurement), manifest and report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeslim.cli.app import app, console, esc, hold_folder, print_json
from edgeslim.cli.data_options import AnomalyClass, ColorMode, DataDir, DatasetName, ImageSize
from edgeslim.cli.pipeline import note_step, notify_step


@app.command()
def compress(
    model: Annotated[
        Path, typer.Argument(help="The trained .keras model to compress (it is never modified).")
    ],
    stage: Annotated[
        list[str],
        typer.Option(
            "--stage",
            help="NAME[:key=value,...], repeatable, run in order: prune, lowrank, separable, quantize. "
            "E.g. prune:sparsity=0.5,mode=structured  lowrank:energy=0.95  separable:rank=2  "
            "quantize:mode=int8",
        ),
    ],
    dataset: DatasetName = "digits",
    data_dir: DataDir = None,
    image_size: ImageSize = None,
    color_mode: ColorMode = None,
    anomaly_class: AnomalyClass = None,
    out: Annotated[
        Path, typer.Option(help="Run folder: NN-<stage>/model.keras, record.json, metrics.json, report/.")
    ] = Path("runs/compress"),
    finetune_epochs: Annotated[int, typer.Option(help="Fine-tuning epochs after each stage (0: none).")] = 2,
    distill: Annotated[bool, typer.Option(help="Distil from the input model while fine-tuning.")] = True,
    alpha: Annotated[float, typer.Option(help="Distillation: weight of the label loss.")] = 0.5,
    temperature: Annotated[float, typer.Option(help="Distillation temperature T.")] = 2.0,
    lr: Annotated[float, typer.Option(help="Fine-tuning learning rate (Adam, cosine decay).")] = 5e-4,
    batch_size: Annotated[int, typer.Option(help="Fine-tuning batch size.")] = 64,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    unsafe_load: Annotated[
        bool, typer.Option(help="Allow a .keras model that carries code (Lambda).")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the stages' records as JSON.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
) -> None:
    """Compress MODEL with the given stages; every stage's model and record land in OUT."""
    from edgeslim.cli.logs import move_log
    from edgeslim.compress.registry import split_stage_spec
    from edgeslim.errors import ConfigError
    from edgeslim.pipeline import run_pipeline
    from edgeslim.pipeline.config import validate
    from edgeslim.pipeline.runner import run_inputs

    finetune = {
        "epochs": finetune_epochs,
        "distill": distill,
        "alpha": alpha,
        "temperature": temperature,
        "learning_rate": lr,
        "batch_size": batch_size,
        "seed": seed,
    }
    stages = []
    for spec in stage:
        name, params = split_stage_spec(spec)
        stages.append({name: {**params, **({"finetune": finetune} if finetune_epochs else {})}})
    raw = {
        "dataset": {
            "name": dataset,
            "data_dir": str(data_dir.resolve()) if data_dir else None,
            "seed": seed,
            "anomaly_class": anomaly_class,
            "image_size": image_size,
            "color_mode": color_mode,
        },
        "model": {"source": str(model.resolve()), "unsafe_load": unsafe_load}
        if unsafe_load
        else str(model.resolve()),
        "compress": stages,
        "export": {"targets": []},
    }
    try:
        config = validate(raw)  # every stage parameter is checked before anything heavy loads
    except ConfigError as exc:  # name the stage by its --stage spec, not its place in a config file
        for problem in exc.problems:
            problem.message = (
                problem.message.split("].", 1)[-1]
                if problem.message.startswith("compress[")
                else problem.message
            )
        raise
    hold_folder(out, "run", inputs=run_inputs(config))
    move_log(out / "logs")
    silent = quiet or json_output
    result = run_pipeline(config, out, progress=not silent, notify=note_step if silent else notify_step)
    report = result.report or {}
    if json_output:
        print_json(
            [{"record": _record(out, s), "metrics": s.get("deployed")} for s in report.get("stages", [])[1:]]
        )
        return
    _print_table(report)
    console.print(f"wrote {esc(out)}  (report: {esc(out / 'report' / 'report.html')})", highlight=False)


def _record(out: Path, stage: dict) -> dict:
    import json

    return json.loads((out / stage["name"] / "record.json").read_text())


def _print_table(report: dict) -> None:
    from rich.table import Table

    from edgeslim.report.format import acc, kb, num

    table = Table(title="compression chain (each stage measured in LiteRT)")
    for column in ("stage", "accuracy", "params", "multiplications", "bytes", "changed", "skipped"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for s in report.get("stages", []):
        changes = s.get("changes") or []
        table.add_row(
            s["name"],
            acc(s["deployed"]["accuracy"]),
            num(s["params"]),
            num(s["macs"]),
            kb(s["deployed"]["bytes"]),
            str(sum(c["action"] not in ("skipped", "kept") for c in changes)),
            str(sum(c["action"] == "skipped" for c in changes)),
        )
    console.print(table)
    for s in report.get("stages", []):
        for c in s.get("changes") or []:
            if c["action"] == "skipped":
                console.print(
                    f"  [dim]{esc(s['stage'])}: {esc(c['name'])} skipped: {esc(c['reason'])}[/]",
                    highlight=False,
                )
        for note in s.get("notes") or []:
            console.print(f"  [yellow]{esc(s['stage'])}: {esc(note)}[/]", highlight=False)
