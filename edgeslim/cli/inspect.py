"""`edgeslim inspect`: per-layer parameters, multiplications and sparsity (Keras), or ops (.tflite/.onnx).

A tf.keras ``.h5`` (and anything that is not .keras/.tflite/.onnx, a SavedModel folder among them) goes
through the Keras loader, which translates the first and names what to do with the rest; what it
translated is printed as ``note:`` lines (``notes`` in --json).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edgeslim.cli.app import app, console, esc, print_json, stdout_console


@app.command()
def inspect(
    model: Annotated[Path, typer.Argument(help="A .keras, tf.keras .h5, .tflite or .onnx file.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    unsafe_load: Annotated[
        bool, typer.Option(help="Allow a .keras/.h5 model that carries code (Lambda).")
    ] = False,
) -> None:
    """Show a model's layers: type, output shape, parameters, multiplications, sparsity, with totals."""
    from edgeslim.analysis.inspect import inspect_file

    if model.suffix.lower() in (".keras", ".tflite", ".onnx"):
        info = inspect_file(model, unsafe=unsafe_load)
    else:
        info = _inspect_keras(model, unsafe_load)
    if json_output:
        print_json(info)
    elif info["format"] == "keras":
        _print_keras(info)
    else:
        _print_ops(info)


def _inspect_keras(path: Path, unsafe: bool) -> dict[str, Any]:
    from edgeslim.analysis.keras_model import analyze_keras
    from edgeslim.modelio import load_keras_model, load_notes

    model = load_keras_model(path, unsafe=unsafe)
    return {**analyze_keras(model).to_dict(), "format": "keras", "notes": list(load_notes(model))}


def _print_keras(info: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"{info['name']} (keras)", show_footer=True)
    table.add_column("layer", footer="total")
    table.add_column("type")
    table.add_column("output shape")
    table.add_column("params", justify="right", footer=f"{info['total_params']:,}")
    table.add_column("multiplications", justify="right", footer=f"{info['total_macs']:,}")
    table.add_column("sparsity", justify="right", footer=f"{info['sparsity']:.1%}")
    for layer in info["layers"]:
        shape = "x".join("?" if d is None else str(d) for d in layer["output_shape"][1:])
        table.add_row(
            layer["name"],
            layer["type"],
            shape,
            f"{layer['params']:,}",
            f"{layer['macs']:,}",
            f"{layer['sparsity']:.1%}",
        )
    stdout_console().print(table)
    folded = [layer for layer in info["layers"] if layer.get("folded_into")]
    if folded:
        stdout_console().print(
            f"deployed: {info['deployed_macs']:,} multiplications, once the {len(folded)} BatchNorm layers "
            "that follow a conv or dense layer are folded into it (as quantization and the converters do)",
            highlight=False,
            soft_wrap=True,
        )
    for note in info.get("notes", []):
        console.print(f"note: {esc(note)}", highlight=False, soft_wrap=True)


def _print_ops(info: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"{info.get('name', '')} ({info['format']})")
    table.add_column("#", justify="right")
    table.add_column("op")
    table.add_column("inputs")
    table.add_column("outputs")
    for op in info.get("ops", []):
        table.add_row(
            str(op.get("index", "")),
            str(op.get("op", "")),
            _short(op.get("inputs")),
            _short(op.get("outputs")),
        )
    out = stdout_console()
    out.print(table)
    summary = {k: info[k] for k in ("total_params", "param_bytes", "op_counts", "tensor_dtypes") if k in info}
    for key, value in summary.items():
        out.print(f"{key}: {value}")
    if not info.get("ops"):
        console.print("no ops listed")


def _short(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)
