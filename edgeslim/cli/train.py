"""`edgeslim train`: train a zoo model (or your own .keras) on a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edgeslim.cli.app import app, console, esc, hold_folder, print_json
from edgeslim.cli.data_options import ColorMode, DataDir, DatasetName, ImageSize


@app.command()
def train(
    model: Annotated[
        str,
        typer.Option(
            help="Zoo name (mnistnet1-3, lenet5, cifarnet, dscnn, mobilenet_v1_025, resnet8, digits_cnn, "
            "lstm_rows, "
            "autoencoder) or a path to a .keras model."
        ),
    ] = "digits_cnn",
    dataset: DatasetName = "digits",
    data_dir: DataDir = None,
    image_size: ImageSize = None,
    color_mode: ColorMode = None,
    out: Annotated[Path, typer.Option(help="Run folder: model.keras, history.json, metrics.json.")] = Path(
        "runs/train"
    ),
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 8,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 128,
    optimizer: Annotated[
        str | None,
        typer.Option(
            help="sgd, momentum, nesterov or adam (default nesterov; adam for lstm_rows, autoencoder)."
        ),
    ] = None,
    lr: Annotated[
        float | None, typer.Option(help="Learning rate (default 0.01; with a zoo model's adam, its own).")
    ] = None,
    momentum: Annotated[float, typer.Option(help="Momentum for momentum/nesterov.")] = 0.9,
    schedule: Annotated[str, typer.Option(help="constant, step or cosine.")] = "constant",
    l2: Annotated[float, typer.Option(help="L2 weight penalty on kernels.")] = 0.0,
    early_stopping: Annotated[int, typer.Option(help="Patience on validation loss (0: off).")] = 0,
    augment_shift: Annotated[float, typer.Option(help="Random shift, fraction of the size.")] = 0.0,
    augment_rotation: Annotated[float, typer.Option(help="Random rotation, fraction of a turn.")] = 0.0,
    augment_flip: Annotated[bool, typer.Option(help="Random horizontal flips.")] = False,
    seed: Annotated[int, typer.Option(help="Random seed (training is repeatable on CPU).")] = 0,
    anomaly_class: Annotated[
        int | None,
        typer.Option(
            help="Anomaly detection: train a reconstruction model (autoencoder) on the other classes; "
            "the test split's reconstruction error is scored as anomaly AUC."
        ),
    ] = None,
    unsafe_load: Annotated[
        bool, typer.Option(help="Allow a .keras model that carries code (Lambda).")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Train a model and write RUN/model.keras, RUN/history.json and RUN/metrics.json."""
    from edgeslim.cli.logs import move_log
    from edgeslim.progress import RichReporter
    from edgeslim.train.config import TrainConfig
    from edgeslim.train.run import train_inputs, train_to_dir
    from edgeslim.train.zoo_names import zoo_optimizer

    given = {k: v for k, v in {"optimizer": optimizer, "learning_rate": lr}.items() if v is not None}
    config = TrainConfig(
        **(zoo_optimizer(model, optimizer) | given),  # type: ignore[arg-type]
        epochs=epochs,
        batch_size=batch_size,
        momentum=momentum,
        schedule=schedule,
        l2=l2,
        early_stopping=early_stopping,
        augment_shift=augment_shift,
        augment_rotation=augment_rotation,
        augment_flip=augment_flip,
        seed=seed,
    )
    hold_folder(out, "train", inputs=train_inputs(model, data_dir))
    move_log(out / "logs")
    run = train_to_dir(
        model,
        dataset,
        out,
        config,
        data_dir=data_dir,
        unsafe=unsafe_load,
        progress=None if quiet or json_output else RichReporter(console),
        anomaly_class=anomaly_class,
        image_size=image_size,
        color_mode=color_mode,
    )
    if json_output:
        print_json(run.metrics)
        return
    m = run.metrics
    console.print(
        f"[green]trained[/] {m['model']} on {m['dataset']['name']}: {_scores(m)}, "
        f"{m['params']:,} parameters, {m['macs']:,} multiplications, {m['seconds_per_epoch']:.1f} s/epoch"
    )
    console.print(f"wrote {esc(run.model_path)}", highlight=False)


def _scores(metrics: dict[str, Any]) -> str:
    """The task's test figures: accuracy for classification; MSE (and anomaly AUC) otherwise."""
    if "test_accuracy" in metrics:
        return f"test accuracy [bold]{metrics['test_accuracy']:.2%}[/]"
    parts = [f"test MSE [bold]{metrics['test_mse']:.4g}[/]"]
    if metrics.get("test_auc") is not None:
        parts.append(f"anomaly AUC [bold]{metrics['test_auc']:.3f}[/]")
    return ", ".join(parts)
