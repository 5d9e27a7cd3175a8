"""`edgeslim fit`: the best model for a board and a tolerated loss, found automatically."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeslim.cli.app import app, console, esc, hold_folder, print_json
from edgeslim.cli.data_options import AnomalyClass, ColorMode, DataDir, DatasetName, ImageSize
from edgeslim.cli.firmware_options import Kernels
from edgeslim.fit.budget import Budget
from edgeslim.fit.options import DEFAULTS


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
    target: Annotated[str, typer.Option(help="cpu, gpu, edgetpu or mcu (export's targets).")] = Budget.target,
    max_loss: Annotated[
        float,
        typer.Option(
            help="Tolerated accuracy loss in points against the input model (see --loss-confidence)."
        ),
    ] = Budget.max_loss,
    loss_confidence: Annotated[
        float,
        typer.Option(help="Confidence that the winner's loss on unseen data is at most --max-loss."),
    ] = DEFAULTS.loss_confidence,
    techniques: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated: prune,lowrank,separable,quantize (default: every one the target takes)."
        ),
    ] = None,
    max_trials: Annotated[
        int, typer.Option(help="Compress-fine-tune-export trials at most.")
    ] = DEFAULTS.max_trials,
    finetune_epochs: Annotated[
        int, typer.Option(help="Distillation epochs per trial (then 2 of QAT).")
    ] = DEFAULTS.finetune_epochs,
    workers: Annotated[
        int | None, typer.Option(help="Start a local Ray with N CPUs and fan tasks out.")
    ] = DEFAULTS.workers,
    ray_address: Annotated[
        str | None, typer.Option(help="Join a running Ray cluster (ray start --head).")
    ] = DEFAULTS.ray_address,
    firmware: Annotated[
        bool, typer.Option(help="mcu: measure finalists as firmware on an emulated board.")
    ] = DEFAULTS.firmware,
    kernels: Kernels = DEFAULTS.kernels,
    seed: Annotated[int, typer.Option(help="Random seed (the same seed, the same plans).")] = DEFAULTS.seed,
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
    ] = DEFAULTS.reuse_cache,
) -> None:
    """Search pruning, low-rank, separable and int8 levels per layer for the most accurate model that fits.

    Exit code 0: a model fits the budget within the loss; 1: none does (the closest candidate and what
    binds are printed); 2: a mistake in the arguments.
    """
    from edgeslim.cli.data_options import load_for_model
    from edgeslim.cli.logs import move_log
    from edgeslim.fit import FitOptions, fit_model, make_budget
    from edgeslim.fit.executor import check_executor
    from edgeslim.modelio import load_keras_model
    from edgeslim.report.fit import firmware_line, loss_lines, summary_line

    options = FitOptions(
        techniques=None if techniques is None else tuple(t.strip() for t in techniques.split(",")),
        max_trials=max_trials,
        finetune_epochs=finetune_epochs,
        loss_confidence=loss_confidence,
        firmware=firmware,
        kernels=kernels,
        seed=seed,
        workers=workers,
        ray_address=ray_address,
        reuse_cache=cache,
    )
    options.validate()
    check_executor(workers, ray_address)  # a malformed --ray-address is refused before anything loads
    budget = make_budget(
        target, board, max_flash, max_arena, max_macs, max_latency_ms, max_instructions, max_loss
    )
    hold_folder(out, "fit", inputs=[model, data_dir])
    keras_model = load_keras_model(model, unsafe=unsafe_load)
    data = load_for_model(keras_model, dataset, data_dir, seed, image_size, color_mode, anomaly_class)
    move_log(out / "logs")
    notify = None if (quiet or json_output) else (lambda message: console.print(message, highlight=False))
    result = fit_model(model, data, budget, out, options, unsafe_load=unsafe_load, notify=notify)
    if json_output:
        fit_json = result.report
        print_json({k: fit_json[k] for k in ("fits", "binding", "budget", "best", "seconds")})
    else:
        style = "green" if result.fits else "bold red"
        console.print(f"[{style}]{esc(summary_line(result.report))}[/]", highlight=False)
        for line in [*loss_lines(result.report), firmware_line(result.report)]:
            if line:
                console.print(esc(line), highlight=False)
        console.print(
            f"wrote {esc(out / 'fit.json')} and {esc(out / 'report' / 'report.html')}", highlight=False
        )
    if not result.fits:
        raise typer.Exit(1)
