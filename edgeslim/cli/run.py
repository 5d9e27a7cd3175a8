"""`edgeslim eval` and `edgeslim bench`: an exported artifact in its own runtime, without TensorFlow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeslim.cli.app import app, console, print_json


@app.command("eval")
def eval_command(
    artifact: Annotated[Path, typer.Argument(help="An exported .tflite or .onnx file.")],
    dataset: Annotated[str, typer.Option(help="digits, mnist, fashion_mnist or npz.")] = "digits",
    data_dir: Annotated[Path | None, typer.Option(help="IDX folder (mnist) or .npz file (npz).")] = None,
    backend: Annotated[
        str | None, typer.Option(help="litert, tflm or onnxruntime (default: by file type).")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads.")] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N test samples.")] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print accuracy, samples and backend as JSON.")
    ] = False,
) -> None:
    """Accuracy of ARTIFACT on the dataset's test split, in the artifact's own runtime."""
    from edgeslim.data import load_dataset
    from edgeslim.runtime import evaluate, load

    model = load(artifact, backend=backend, threads=threads)
    data = load_dataset(dataset, data_dir)
    result = evaluate(model, data.x_test, data.y_test, limit=limit)
    result["artifact"] = str(artifact)
    if json_output:
        print_json(result)
        return
    console.print(
        f"{artifact.name}: accuracy [bold]{result['accuracy']:.2%}[/] "
        f"on {result['samples']} {data.name} test "
        f"samples ({result['backend']}, {result['seconds']:.2f} s)",
        highlight=False,
    )


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
