"""The four MLPerf Tiny reference architectures from the zoo, measured as edgeslim deploys them, side by
side with MLPerf Tiny's own int8 reference files run through the same firmware.

Random weights (seed 0), BatchNorm statistics of random data, random calibration data: sizes, arenas
and instruction counts do not depend on what the weights learned; accuracies do, so none is quoted.
Each architecture is exported int8 to the mcu target with --firmware (TFLite Micro with CMSIS-NN, the
default, on QEMU's Cortex-M4), then run again with the reference kernels. Each reference `.tflite` of
mlcommons/tiny (benchmark/training/*/trained_models/) runs through `edgeslim firmware`'s code the same
two ways: give the folder holding the four files (named as in the repository) as the first argument;
without it, only edgeslim's exports are measured.

    python benchmarks/mlperf_tiny.py [FOLDER_WITH_REFERENCE_TFLITE_FILES]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from results import markdown_table, update_section

# name, zoo builder, input shape, classes, the reference int8 file (mlcommons/tiny), and MLPerf Tiny v0.5's
# reference latency on the Nucleo-L4R5ZI (Cortex-M4 at 120 MHz) in ms: the published results' reference
# submission, which ran these files with TFLite Micro and CMSIS-NN.
MODELS = [
    ("keyword spotting", "dscnn", (49, 10, 1), 12, "kws_ref_model.tflite", 181.9),
    ("visual wake words", "mobilenet_v1_025", (96, 96, 3), 2, "vww_96_int8.tflite", 600.5),
    ("image classification", "resnet8", (32, 32, 3), 10, "pretrainedResnet_quant.tflite", 704.3),
    ("anomaly detection", "autoencoder", (640,), 0, "ad01_int8.tflite", 10.05),
]
L4R5ZI_HZ = 120e6


def dataset(shape: tuple[int, ...], classes: int):  # noqa: ANN201 - an edgeslim Dataset
    from edgeslim.data.dataset import Dataset

    rng = np.random.default_rng(0)
    x = rng.random((260, *shape), dtype=np.float32)
    if classes == 0:  # the autoencoder reconstructs its input
        return Dataset("random", x[:200], x[:200], x[200:230], x[200:230], x[230:], x[230:], [],
                       task="reconstruction")  # fmt: skip
    y = rng.integers(0, classes, len(x))
    names = [f"c{i}" for i in range(classes)]
    return Dataset("random", x[:200], y[:200], x[200:230], y[200:230], x[230:], y[230:], names)


def ours(builder: str, shape: tuple[int, ...], classes: int, out: Path) -> dict:
    from edgeslim.analysis.keras_model import analyze_keras
    from edgeslim.export import export_model
    from edgeslim.train.zoo import build_model, settle_batchnorm

    model = build_model(builder, shape, classes)
    stats = analyze_keras(model)
    data = dataset(shape, classes)
    settle_batchnorm(model, data.x_train[:128])
    [artifact] = export_model(
        model, data, "mcu", out_dir=out, board="stm32l4r5", calib_samples=100, verify=False, firmware=True,
        firmware_samples=4,
    )  # fmt: skip
    mcu = artifact.sidecar["mcu"]
    fw = mcu["firmware"]
    return {
        "params": stats.total_params,
        "macs": stats.total_macs,
        "deployed_macs": stats.deployed_macs,
        "bytes": artifact.sidecar["bytes"],
        "arena_host": mcu["arena_host_bytes"],
        "arena_target": mcu["arena_bytes"],
        "flash": fw["flash_bytes"],
        "instructions": fw["instructions_per_inference"],
        "instructions_reference": _instructions(artifact.path, "reference"),
        "kernels": fw["kernels"],
        "per_channel": (mcu.get("per_channel_cost") or {}).get("flash_bytes", 0),
    }


def _instructions(path: Path, kernels: str) -> int:
    from edgeslim.export.firmware import run_firmware

    return run_firmware(path, "cortex-m4", kernels=kernels).instructions_per_inference


def reference(path: Path) -> dict:
    """MLPerf Tiny's own int8 file through the same harness: CMSIS-NN, then the reference kernels."""
    from edgeslim.export.firmware import run_firmware

    result = run_firmware(path, "cortex-m4")
    return {
        "bytes": path.stat().st_size,
        "arena_target": result.arena_min_bytes,
        "flash": result.flash_bytes,
        "instructions": result.instructions_per_inference,
        "instructions_reference": _instructions(path, "reference"),
    }


def _both(mine: dict, ref: dict | None, key: str) -> str:
    """edgeslim's figure, then the MLPerf file's where it was measured."""
    return f"{mine[key]:,}" + (f" / {ref[key]:,}" if ref else "")


def _millions(n: float) -> str:
    return f"{n / 1e6:.2f} M"


def _kernels(r: dict) -> str:
    """Reference kernels -> CMSIS-NN, and the ratio."""
    ratio = r["instructions_reference"] / r["instructions"]
    return f"{_millions(r['instructions_reference'])} -> {_millions(r['instructions'])} ({ratio:.1f}x)"


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgeslim-mlperf-") as tmp:
        for task, builder, shape, classes, ref_name, latency_ms in MODELS:
            mine = ours(builder, shape, classes, Path(tmp) / builder)
            ref = reference(folder / ref_name) if folder and (folder / ref_name).is_file() else None
            print(task, mine, ref, flush=True)
            cycles = latency_ms * 1e-3 * L4R5ZI_HZ
            rows.append([
                f"{task} (`{builder}`, {'x'.join(map(str, shape))})",
                f"{mine['params']:,}",
                f"{mine['macs']:,} / {mine['deployed_macs']:,}",
                _both(mine, ref, "bytes"),
                f"{mine['arena_host']:,} / " + _both(mine, ref, "arena_target"),
                _both(mine, ref, "flash"),
                _kernels(mine),
                _kernels(ref) if ref else "",
                f"{latency_ms} ms = {_millions(cycles)} cycles"
                + (f" ({ref['instructions'] / cycles:.2f})" if ref else ""),
                f"{mine['per_channel']:,}",
            ])  # fmt: skip
    headers = [
        "model",
        "parameters",
        "multiplications: all / deployed (BN folded)",
        "int8 bytes: edgeslim / MLPerf file",
        "arena (CMSIS-NN): host / Cortex-M4 / MLPerf file on M4",
        "firmware flash (CMSIS-NN): edgeslim / MLPerf file",
        "instructions, edgeslim's export: reference kernels -> CMSIS-NN",
        "instructions, MLPerf file: reference kernels -> CMSIS-NN",
        "MLPerf Tiny v0.5 reference, Nucleo-L4R5ZI at 120 MHz (MLPerf file's CMSIS-NN instructions / cycles)",
        "per-channel cost in the file (B)",
    ]
    text = "## MLPerf Tiny reference architectures (`benchmarks/mlperf_tiny.py`)\n\n"
    text += (
        "The zoo's `dscnn`, `mobilenet_v1_025`, `resnet8` and `autoencoder` at MLPerf Tiny's input shapes, "
        "random weights (seed 0), BatchNorm statistics and calibration from random data: parameters "
        "equal the reference models' "
        "(24,908; 221,794; 78,666; 269,992). Each is exported int8 (per channel) to the mcu target with "
        "`--firmware` (TFLite Micro with CMSIS-NN, the default, on QEMU's Cortex-M4, `-icount`), then run "
        "again with `--kernels reference`. The MLPerf columns run MLPerf Tiny's own int8 files "
        "(mlcommons/tiny, `benchmark/training/*/trained_models/`: `kws_ref_model.tflite`, "
        "`vww_96_int8.tflite`, `pretrainedResnet_quant.tflite`, `ad01_int8.tflite`) through the same "
        "harness (`edgeslim firmware FILE [--kernels reference]`). Beside them, MLPerf Tiny v0.5's published "
        "reference latencies on the Nucleo-L4R5ZI (Cortex-M4 at 120 MHz, TFLite Micro with CMSIS-NN) turned "
        "into cycles. **Instructions are not cycles**: QEMU counts executed instructions; a Cortex-M4 takes "
        "one or more cycles for each (loads, multiplies and taken branches take more, flash wait states add "
        "to them), so the ratio in brackets is normally below 1. The anomaly-detection "
        "reference file is per tensor: per-channel int8 costs its arena 14.9 KB more (the sidecar's "
        "`per_channel_cost` says so).\n\n"
    )
    text += markdown_table(headers, rows)
    update_section("mlperf_tiny", text)
    print(text)


if __name__ == "__main__":
    main()
