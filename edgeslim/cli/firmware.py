"""`edgeslim firmware`: any int8 `.tflite` built into firmware and run on an emulated Cortex-M board.

The model need not come from edgeslim: an MLPerf Tiny reference file, or one another tool made, goes
through the same harness as `edgeslim export --target mcu --firmware` (TFLite Micro, QEMU with
-icount). Without TensorFlow: the file is read and checked by the runtime's own loader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from edgeslim.cli.app import app, console, esc, hold_folder, print_json
from edgeslim.cli.data_options import AnomalyClass, ColorMode, DataDir, ImageSize
from edgeslim.cli.firmware_options import Kernels
from edgeslim.errors import EdgeslimError
from edgeslim.export.firmware.machines import MACHINES
from edgeslim.tflm_kernels import DEFAULT_KERNELS, KERNELS, check_kernels

DEFAULT_LIMIT = 32  # samples from a dataset: enough for the median and the task's verdict, in seconds


@app.command("firmware")
def firmware_command(
    model: Annotated[Path, typer.Argument(help="A .tflite file TFLite Micro runs (int8, or float).")],
    board: Annotated[
        str, typer.Option(help=f"The emulated board: {', '.join(MACHINES)}, or a board profile.")
    ] = "cortex-m4",
    dataset: Annotated[
        str | None,
        typer.Option(help="Run the test samples of this dataset (digits, mnist, npz, folder, ...)."),
    ] = None,
    data_dir: DataDir = None,
    image_size: ImageSize = None,
    color_mode: ColorMode = None,
    anomaly_class: AnomalyClass = None,
    inputs: Annotated[
        Path | None,
        typer.Option(help="Run these samples: a .npy array (N, *input shape), float or the input's type."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Samples to run at most.")] = DEFAULT_LIMIT,
    out: Annotated[
        Path | None, typer.Option(help="Write firmware.json and outputs.npy (raw outputs) into this folder.")
    ] = None,
    kernels: Kernels = DEFAULT_KERNELS,
    json_output: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Build MODEL into firmware for an emulated Cortex-M and run it: flash, RAM, the smallest arena,
    instructions per inference, and the outputs (checked against TFLite Micro's Python interpreter).
    Without --dataset or --inputs: one inference on zeros."""
    from edgeslim.export.firmware import resolve_machine, run_firmware
    from edgeslim.runtime import load

    if dataset is not None and inputs is not None:
        raise EdgeslimError("--dataset and --inputs both name samples", "give one of them")
    machine = resolve_machine(board)
    check_kernels(kernels, "--kernels")
    if out is not None:
        hold_folder(out, "firmware", inputs=[model, data_dir, inputs])
    runtime = load(model)  # checks the file (a damaged one is refused here, never crashes the run)
    x, y, data = _samples(runtime, dataset, data_dir, image_size, color_mode, anomaly_class, inputs, limit)
    tflite = model.read_bytes()  # once: the firmware and the interpreter run the same bytes
    result = run_firmware(tflite, machine.name, x, kernels=kernels)
    report: dict[str, Any] = {"model": str(model), "board": machine.name, **result.to_dict()}
    report["check"] = _check(tflite, result, x, y, data)
    if out is not None:
        from edgeslim.atomic import write_bytes, write_json

        write_json(out / "firmware.json", report)
        buffer = _npy(result.outputs)
        write_bytes(out / "outputs.npy", buffer)
    if json_output:
        print_json(report)
        return
    _print(model, machine.description, report)


def _samples(
    runtime: Any,
    dataset: str | None,
    data_dir: Path | None,
    image_size: str | None,
    color_mode: str | None,
    anomaly_class: int | None,
    inputs: Path | None,
    limit: int,
) -> tuple[np.ndarray | None, np.ndarray | None, Any]:
    """(inputs, targets, dataset): from --dataset, from --inputs (no targets), or none (zeros)."""
    if inputs is not None:
        return _read_npy(inputs)[:limit], None, None
    if dataset is None:
        return None, None, None
    from edgeslim.cli.data_options import load_for_artifact

    data = load_for_artifact(runtime, dataset, data_dir, image_size, color_mode, anomaly_class)
    return data.x_test[:limit], np.asarray(data.y_test[:limit]), data


def _read_npy(path: Path) -> np.ndarray:
    if path.suffix.lower() != ".npy" or not path.is_file():
        raise EdgeslimError(f"{path}: no such .npy file", "save the samples with numpy.save(path, array)")
    try:
        x = np.load(path, allow_pickle=False)  # never unpickle: a .npy can carry code
    except ValueError as exc:
        raise EdgeslimError(
            f"{path}: not a numeric .npy array ({exc})", "save a plain numeric array"
        ) from None
    if x.dtype.kind not in "iuf" or x.ndim == 0 or not np.isfinite(x.astype(np.float64)).all():
        raise EdgeslimError(
            f"{path}: the samples must be a finite int or float array, got {x.dtype} {x.shape}",
            "save a plain numeric array of shape (N, *input shape)",
        )
    return x


def _check(
    data: bytes, result: Any, x: np.ndarray | None, y: np.ndarray | None, dataset: Any
) -> dict[str, Any]:
    """The outputs against TFLite Micro's Python interpreter (when installed), by the task's rule."""
    from edgeslim.export.firmware import raw_inputs
    from edgeslim.export.firmware.agreement import interpreter_outputs, task_check
    from edgeslim.runtime.tflite_file import read_tflite

    info = read_tflite(data, "firmware")
    raw = raw_inputs(info, x)
    if raw is None:
        raw = np.zeros(
            (1, *info.tensors[info.inputs[0]].shape[1:]), info.tensors[info.inputs[0]].type.lower()
        )
    try:
        reference = interpreter_outputs(data, raw, 2 * result.arena_min_bytes + 16 * 1024)
    except ImportError:
        return {"interpreter": "not installed (pip install 'edgeslim[mcu]')"}
    task = None if dataset is None else dataset.task
    anomaly = None if dataset is None or dataset.anomaly is None else dataset.anomaly[: len(raw)]
    return task_check(info, result.outputs, reference, y, task, anomaly)


def _profile_lines(profile: dict[str, Any]) -> list[str]:
    """Where the time goes: the layers that take the most instructions."""
    if not profile.get("complete"):
        return [f"  per-operator profile: not taken ({profile['why']})"] if profile.get("why") else []
    lines = [f"  where the time goes (the operators {profile['ops_share']:.1%} of one inference):"]
    for layer in sorted(profile["layers"], key=lambda r: -r["instructions"])[:5]:
        per = layer["instructions_per_multiplication"]
        lines.append(
            f"    {esc(layer['layer'])} ({', '.join(layer['ops'])}): {layer['instructions']:,} "
            f"({layer['share']:.0%})" + (f", {per:.1f} per multiplication" if per else "")
        )
    return lines


def _npy(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _print(model: Path, description: str, r: dict[str, Any]) -> None:
    check, n = r["check"], r["check"].get("samples", r["samples"])
    ram = r["ram_bytes"] + r["stack_used_bytes"]
    lines = [
        f"{esc(model.name)} on {esc(description)}, {KERNELS[r['kernels']]}",
        f"  flash {r['flash_bytes']:,} B: the model {r['model_bytes']:,} B, "
        f"TFLite Micro {r['runtime_text_bytes']:,} B, the rest start-up, C library and harness",
        f"  RAM {ram:,} B: data + bss {r['ram_bytes']:,} B (the arena linked at its minimum), "
        f"stack {r['stack_used_bytes']:,} B",
        f"  tensor arena {r['arena_min_bytes']:,} B: the smallest that allocates on the target",
        f"  instructions per inference {r['instructions_per_inference']:,} (median of {r['samples']})",
        *_profile_lines(r.get("profile") or {}),
    ]
    if "identical" in check:
        lines.append(
            f"  outputs equal TFLite Micro's Python interpreter byte for byte on {check['identical']:.0%} "
            f"of {n} samples"
        )
    else:
        lines.append(f"  outputs not compared: TFLite Micro's Python interpreter is {check['interpreter']}")
    metrics = check.get("metrics") or {}
    if metrics.get("accuracy") is not None:
        lines.append(f"  accuracy {metrics['accuracy']:.2%} on {n} test samples")
    elif metrics.get("mse") is not None:
        auc = f", anomaly AUC {metrics['auc']:.3f}" if metrics.get("auc") is not None else ""
        lines.append(f"  MSE {metrics['mse']:.4g}{auc} on {n} test samples")
    console.print("\n".join(lines), highlight=False, soft_wrap=True)
