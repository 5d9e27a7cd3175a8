"""`edgeslim fit`: the best model for a board and a tolerated loss, found automatically."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeslim.cli.app import app, console, esc, hold_folder, print_json
from edgeslim.cli.data_options import AnomalyClass, ColorMode, DataDir, DatasetName, ImageSize


@app.command()
def fit(
    model: Annotated[Path, typer.Argument(help="The trained .keras model (it is never modified).")],
    dataset: DatasetName = "digits",
    data_dir: DataDir = None,
    image_size: ImageSize = None,
    color_mode: ColorMode = None,
    anomaly_class: AnomalyClass = None,
    out: Annotated[
        Path, typer.Option(help="Folder for fit.json, the winning model, artifacts, report.")
    ] = Path("runs/fit"),
    board: Annotated[
        str | None, typer.Option(help="Take flash (and, for mcu, RAM) from a board profile.")
    ] = None,
    max_flash: Annotated[str | None, typer.Option(help="Model bytes: 48KB, 0.5MB or a byte count.")] = None,
    max_arena: Annotated[
        str | None, typer.Option(help="mcu: TFLite Micro arena, measured (48KB...).")
    ] = None,
    max_macs: Annotated[int | None, typer.Option(help="Multiplications per inference.")] = None,
    max_latency_ms: Annotated[
        float | None, typer.Option(help="Batch-1 p50 in the target's runtime on this host (host latency).")
    ] = None,
    max_instructions: Annotated[
        int | None,
        typer.Option(help="mcu with --firmware: instructions per inference on the emulated board."),
    ] = None,
    target: Annotated[str, typer.Option(help="cpu, mcu or edgetpu.")] = "cpu",
    max_loss: Annotated[
        float, typer.Option(help="Tolerated accuracy loss in points, on validation data.")
    ] = 1.0,
    techniques: Annotated[str, typer.Option(help="Comma-separated: prune,lowrank,separable,quantize.")] = (
        "prune,lowrank,separable,quantize"
    ),
    max_trials: Annotated[int, typer.Option(help="Compress-fine-tune-export trials at most.")] = 6,
    finetune_epochs: Annotated[int, typer.Option(help="Distillation epochs per trial (then 2 of QAT).")] = 10,
    workers: Annotated[
        int | None, typer.Option(help="Start a local Ray with N CPUs and fan tasks out.")
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="Join a running Ray cluster (ray start --head).")
    ] = None,
    firmware: Annotated[
        bool, typer.Option(help="mcu: measure finalists as firmware on an emulated board.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Random seed (the same seed gives the same plans).")] = 0,
    unsafe_load: Annotated[
        bool, typer.Option(help="Allow a .keras model that carries code (Lambda).")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print fit.json's summary as JSON.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
    cache: Annotated[
        bool,
        typer.Option(
            help="Reuse the cached sensitivity table and earlier fits' trials of this model, data and "
            "edgeslim version (--no-cache measures everything again)."
        ),
    ] = True,
) -> None:
    """Search pruning, low-rank, separable and int8 levels per layer for the most accurate model that fits.

    Exit code 0: a model fits the budget within the loss; 1: none does (the closest candidate and what
    binds are printed); 2: a mistake in the arguments.
    """
    from edgeslim.cli.data_options import load_for_model
    from edgeslim.cli.logs import move_log
    from edgeslim.fit import fit_model, make_budget
    from edgeslim.fit.executor import check_executor
    from edgeslim.modelio import load_keras_model
    from edgeslim.report.fit import summary_line

    check_executor(workers, ray_address)  # a malformed --ray-address is refused before anything loads
    budget = make_budget(
        target, board, max_flash, max_arena, max_macs, max_latency_ms, max_instructions, max_loss
    )
    hold_folder(out, "fit", inputs=[model, data_dir])
    keras_model = load_keras_model(model, unsafe=unsafe_load)
    data = load_for_model(keras_model, dataset, data_dir, seed, image_size, color_mode, anomaly_class)
    move_log(out / "logs")
    notify = None if (quiet or json_output) else (lambda message: console.print(message, highlight=False))
    result = fit_model(
        model,
        data,
        budget,
        out,
        techniques=techniques,
        max_trials=max_trials,
        workers=workers,
        ray_address=ray_address,
        finetune_epochs=finetune_epochs,
        seed=seed,
        firmware=firmware,
        unsafe_load=unsafe_load,
        notify=notify,
        reuse_cache=cache,
    )
    if json_output:
        fit_json = result.report
        print_json({k: fit_json[k] for k in ("fits", "binding", "budget", "best", "seconds")})
    else:
        style = "green" if result.fits else "bold red"
        console.print(f"[{style}]{esc(summary_line(result.report))}[/]", highlight=False)
        console.print(
            f"wrote {esc(out / 'fit.json')} and {esc(out / 'report' / 'report.html')}", highlight=False
        )
    if not result.fits:
        raise typer.Exit(1)
