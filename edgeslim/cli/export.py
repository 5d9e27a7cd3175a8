"""`edgeslim export`: convert a .keras model for a target, write artifacts and sidecars, verify each."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edgeslim.cli.app import app, console, esc, hold_folder, print_json
from edgeslim.cli.data_options import AnomalyClass, ColorMode, DataDir, DatasetName, ImageSize
from edgeslim.cli.firmware_options import Kernels
from edgeslim.export.boards import board_names
from edgeslim.export.options import DEFAULTS, ExportOptions


@app.command("export")
def export_command(
    model: Annotated[Path, typer.Argument(help="The .keras model to export.")],
    target: Annotated[str, typer.Option(help="cpu, gpu, edgetpu or mcu.")] = "cpu",
    formats: Annotated[
        list[str] | None, typer.Option("--format", help="tflite or onnx (repeatable); default: the target's.")
    ] = None,
    quant: Annotated[
        str | None,
        typer.Option(
            help="float32, float16, dynamic, int8 or int16x8; default: the recipe a quantize stage saved "
            "in the model, where the target takes it, else the target's."
        ),
    ] = None,
    dataset: DatasetName = "digits",
    data_dir: DataDir = None,
    image_size: ImageSize = None,
    color_mode: ColorMode = None,
    anomaly_class: AnomalyClass = None,
    out: Annotated[Path, typer.Option(help="Output folder for the artifacts and sidecars.")] = Path(
        "exports"
    ),
    board: Annotated[
        str | None,
        typer.Option(help=f"mcu: {', '.join(board_names())}, or a JSON file."),
    ] = DEFAULTS.board,
    calib_samples: Annotated[
        int | None,
        typer.Option(
            help="Representative training samples for calibration (default: the model's recipe, else 200)."
        ),
    ] = None,
    io_dtype: Annotated[
        str | None,
        typer.Option(help="Full-int8 input/output type: int8 or uint8 (default: the model's recipe)."),
    ] = None,
    per_channel: Annotated[
        bool | None,
        typer.Option(
            "--per-channel/--per-tensor", help="int8 scales (default: the model's recipe, else per channel)."
        ),
    ] = None,
    calibration: Annotated[
        str, typer.Option(help="ONNX int8 calibration: minmax, entropy or percentile.")
    ] = DEFAULTS.calibration,
    floor: Annotated[
        float, typer.Option("--agreement-floor", help="Minimum argmax agreement with Keras.")
    ] = DEFAULTS.agreement_floor,
    verify: Annotated[bool, typer.Option(help="Run each artifact on the test set in its runtime.")] = (
        DEFAULTS.verify
    ),
    verify_samples: Annotated[
        int | None, typer.Option(help="Cap on the test samples used to verify.")
    ] = None,
    unsafe_load: Annotated[
        bool, typer.Option(help="Allow a .keras model that carries code (Lambda).")
    ] = False,
    firmware: Annotated[
        bool,
        typer.Option(
            help="mcu: build the C package into firmware and run it on an emulated Cortex-M (QEMU): "
            "measured flash, arena and instructions."
        ),
    ] = False,
    firmware_samples: Annotated[
        int, typer.Option(help="mcu with --firmware: test samples run on the emulated board.")
    ] = DEFAULTS.firmware_samples,
    kernels: Kernels = DEFAULTS.kernels,
    json_output: Annotated[bool, typer.Option("--json", help="Print the artifacts as JSON.")] = False,
) -> None:
    """Export MODEL for a deployment target and verify every file in its own runtime."""
    from edgeslim.cli.data_options import load_for_model
    from edgeslim.export import ExportVerificationError, export_model
    from edgeslim.modelio import load_keras_model

    options = ExportOptions(
        formats=tuple(formats) if formats else None,
        quant=quant,
        board=board,
        calib_samples=calib_samples,
        io_dtype=io_dtype,
        per_channel=per_channel,
        calibration=calibration,
        agreement_floor=floor,
        verify=verify,
        verify_samples=verify_samples,
        firmware=firmware,
        firmware_samples=firmware_samples,
        kernels=kernels,
    )
    options.validate(cli=True)  # before anything is read or written
    hold_folder(out, "export", inputs=[model, data_dir])
    keras_model = load_keras_model(model, unsafe=unsafe_load)
    data = load_for_model(keras_model, dataset, data_dir, 0, image_size, color_mode, anomaly_class)
    try:
        artifacts = export_model(keras_model, data, target, out, options, source_path=model)
    except ExportVerificationError as exc:
        _report(exc.artifacts, json_output)
        raise
    _report(artifacts, json_output)


def _report(artifacts: list[Any], json_output: bool) -> None:
    if json_output:
        print_json([a.to_dict() for a in artifacts])
        return
    from rich.table import Table

    table = Table(title="exported artifacts")
    for column in ("file", "bytes", "accuracy", "keras", "agreement", "p50 ms", "passed", "notes"):
        table.add_column(column)
    for a in artifacts:
        v = a.sidecar.get("verification") or {}
        table.add_row(
            str(a.path),
            f"{a.sidecar['bytes']:,}",
            _pct(v.get("accuracy")),
            _pct(v.get("keras_accuracy")),
            _pct(v.get("agreement")),
            f"{v['latency_ms_p50']:.3f}" if "latency_ms_p50" in v else "-",
            {True: "yes", False: "[red]NO[/]"}.get(v.get("passed"), "-"),
            _notes(a.sidecar),
        )
    console.print(table)
    overrides = next(
        (a.sidecar["recipe_overrides"] for a in artifacts if a.sidecar.get("recipe_overrides")), []
    )
    if overrides:
        console.print(
            f"note: this export overrides the model's saved quantization recipe: {esc('; '.join(overrides))}",
            highlight=False,
            soft_wrap=True,
        )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _notes(sidecar: dict[str, Any]) -> str:
    if "edgetpu" in sidecar:
        e = sidecar["edgetpu"]
        label = "predicted" if e["prediction"] else "compiler"
        first = e["first_unmapped"]
        where = f"; CPU from #{first['index']} {first['op']}" if first else ""
        return f"Edge TPU {e['mapped_ops']}/{e['total_ops']} ops ({label}){where}"
    if "mcu" in sidecar:
        m = sidecar["mcu"]
        tflm = (sidecar.get("verification") or {}).get("tflm")
        acc = f", TFLM {tflm['accuracy']:.2%}" if tflm and tflm.get("accuracy") is not None else ""
        scheme = m.get("per_channel_cost") or {}
        hint = f"; {scheme['hint']}" if scheme.get("hint") else ""
        return f"{m['board']}: arena {m['arena_size']:,} B, C package {m['c_package_dir']}{acc}{hint}"
    details = sidecar.get("format_details") or {}
    return f"opset {details['onnx_opset']}" if details.get("onnx_opset") else ""
