"""`edgeslim eval` and `edgeslim bench`: an exported artifact in its own runtime, without TensorFlow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edgeslim.cli.app import app, console, print_json
from edgeslim.cli.data_options import AnomalyClass, ColorMode, DataDir, DatasetName, ImageSize


@app.command("eval")
def eval_command(
    artifact: Annotated[Path, typer.Argument(help="An exported .tflite or .onnx file.")],
    dataset: DatasetName = "digits",
    data_dir: DataDir = None,
    image_size: ImageSize = None,
    color_mode: ColorMode = None,
    backend: Annotated[
        str | None, typer.Option(help="litert, tflm or onnxruntime (default: by file type).")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads.")] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N test samples.")] = None,
    anomaly_class: AnomalyClass = None,
    json_output: Annotated[
        bool,
        typer.Option("--json", help="Print the task's metrics (accuracy; or mse, mae, auc) as JSON."),
    ] = False,
) -> None:
    """The task's metrics of ARTIFACT on the dataset's test split, in the artifact's own runtime:
    accuracy for a classifier, MSE for regression and reconstruction (and the anomaly AUC)."""
    from edgeslim.cli.data_options import load_for_artifact
    from edgeslim.runtime import evaluate, load

    model = load(artifact, backend=backend, threads=threads)
    data = load_for_artifact(model, dataset, data_dir, image_size, color_mode, anomaly_class)
    result = evaluate(model, data.x_test, data.y_test, limit=limit, task=data.task, anomaly=data.anomaly)
    result["artifact"] = str(artifact)
    if json_output:
        print_json(result)
        return
    console.print(
        f"{artifact.name}: {_scores(result)} "
        f"on {result['samples']} {data.name} test "
        f"samples ({result['backend']}, {result['seconds']:.2f} s)",
        highlight=False,
    )


def _scores(result: dict[str, Any]) -> str:
    if "accuracy" in result:
        return f"accuracy [bold]{result['accuracy']:.2%}[/]"
    auc = f", anomaly AUC [bold]{result['auc']:.3f}[/]" if result.get("auc") is not None else ""
    return f"MSE [bold]{result['mse']:.4g}[/]{auc}"


@app.command("bench")
def bench_command(
    artifact: Annotated[Path, typer.Argument(help="An exported .tflite or .onnx file.")],
    threads: Annotated[int | None, typer.Option(help="CPU threads.")] = None,
    batch: Annotated[int, typer.Option(help="Rows per call.")] = 1,
    warmup: Annotated[int, typer.Option(help="Untimed calls first.")] = 20,
    runs: Annotated[int, typer.Option(help="Timed calls.")] = 200,
    backend: Annotated[
        str | None, typer.Option(help="litert, tflm or onnxruntime (default: by file type).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Latency (p50, p90, p99) and throughput of ARTIFACT after warm-up."""
    from edgeslim.runtime import benchmark, load

    model = load(artifact, backend=backend, threads=threads)
    result = benchmark(model, batch=batch, warmup=warmup, runs=runs)
    result["artifact"] = str(artifact)
    if json_output:
        print_json(result)
        return
    console.print(
        f"{artifact.name} ({result['backend']}, batch {batch}, threads {threads or 'default'}): "
        f"p50 {result['p50_ms']:.3f} ms, p90 {result['p90_ms']:.3f} ms, p99 {result['p99_ms']:.3f} ms, "
        f"{result['throughput_per_s']:,.0f} samples/s",
        highlight=False,
    )
