"""The mcu artifact as firmware on an emulated Cortex-M4: mnistnet3 post-training int8 and the compressed
chain, with the firmware's own figures beside the host-side estimates they replace.

    python benchmarks/firmware.py [LABEL=MORE.tflite ...]   # writes its section of benchmarks/RESULTS.md

Each model is exported by ``edgeslim.export`` for target mcu with ``firmware=True`` (board stm32l4r5,
the MLPerf Tiny reference): the C package, as it ships, is linked with TFLite Micro (CMSIS-NN kernels,
the default, built once from the pinned sources) and run on QEMU's mps2-an386 (Cortex-M4) on the first
test samples. Then the same bytes run with TFLite Micro's reference kernels, side by side (and so do the
int8 files given as arguments, e.g. `edgeslim fit` winners). Host-side estimates, as the export computes
them without the firmware: arena = bisection in TFLite Micro's Python interpreter on the 64-bit host +
25 %; flash = model bytes + the board's 128 KB reserve; RAM = that arena + the board's 16 KB reserve.
Timings are medians of ``run_firmware`` on the bytes (compile, two links, two emulated runs of one
inference) with the library cached.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baseline import CACHE, REPO, mnist, trained_mnistnet3  # noqa: E402
from results import markdown_table, update_section  # noqa: E402

from edgeslim.tflm_kernels import kernel_name  # noqa: E402

BOARD = "stm32l4r5"
SAMPLES = 32  # test samples run as firmware and compared with TFLite Micro's Python interpreter
REPEATS = 3
CHAIN_CACHE = CACHE / "firmware_chain.keras"


def compressed_chain(base, data):
    """The chain of benchmarks/compress_mnist.py (prune structured, lowrank, separable, int8 QAT); cached."""
    from compress_mnist import CHAIN

    from edgeslim.compress import parse_stage_spec
    from edgeslim.modelio import load_keras_model, save_keras_model
    from edgeslim.train.finetune import FinetuneConfig, finetune

    recipe_path = CHAIN_CACHE.with_suffix(".json")
    if CHAIN_CACHE.exists() and recipe_path.exists():
        return load_keras_model(CHAIN_CACHE), json.loads(recipe_path.read_text())
    current, recipe = base, None
    for spec, epochs in CHAIN:
        result = parse_stage_spec(spec).run(
            current, data, FinetuneConfig(epochs=epochs), teacher=base, finetuner=finetune
        )
        current, recipe = result.model, result.record.quantization or recipe
        print(f"  chain: {spec}", flush=True)
    save_keras_model(current, CHAIN_CACHE)
    recipe_path.write_text(json.dumps(recipe))
    return current, recipe


def measure(label: str, model, data, quant, out: Path) -> dict:
    from edgeslim.export import export_model
    from edgeslim.export.firmware import cached_library, run_firmware
    from edgeslim.export.mcu_arena import recommended_arena

    started = time.perf_counter()
    (artifact,) = export_model(
        model,
        data,
        "mcu",
        out_dir=out / label,
        board=BOARD,
        quant=quant,
        calib_samples=500,
        firmware=True,
        firmware_samples=SAMPLES,
        strict=False,
    )
    export_s = time.perf_counter() - started
    mcu, sidecar = artifact.sidecar["mcu"], artifact.sidecar
    fw = mcu["firmware"]
    timings = [run_firmware(artifact.path, BOARD, data.x_test[:1]) for _ in range(REPEATS)]
    library = cached_library(fw["cpu"])
    host_arena = recommended_arena(mcu["arena_host_bytes"])
    return {
        "label": label,
        "path": str(artifact.path),
        "model_bytes": sidecar["bytes"],
        "litert_accuracy": sidecar["verification"]["accuracy"],
        "tflm_accuracy": sidecar["verification"]["tflm"]["accuracy"],
        "firmware_accuracy": fw["accuracy"],
        "agreement": fw["interpreter_agreement"],
        "estimate": {
            "arena_min": mcu["arena_host_bytes"],
            "arena_size": host_arena,
            "flash": sidecar["bytes"] + mcu["flash_reserved_bytes"],
            "ram": host_arena + mcu["ram_reserved_bytes"],
        },
        "firmware": fw,
        "arena_size": mcu["arena_size"],
        "ram_needed": mcu["ram_needed_bytes"],
        "fits": mcu["fits"],
        "export_seconds": export_s,
        "build_seconds": statistics.median(t.build_seconds for t in timings),
        "run_seconds": statistics.median(t.run_seconds for t in timings),
        "library_build_seconds": library.info["build_seconds"] if library else None,
    }


KERNEL_SAMPLES = 4  # samples each kernel set runs for the side-by-side comparison


def kernels_side_by_side(label: str, tflite: Path, x) -> dict:
    """The same int8 bytes with CMSIS-NN and with the reference kernels: instructions, flash, arena."""
    from edgeslim.export.firmware import run_firmware

    cmsis = run_firmware(tflite, "cortex-m4", x, kernels="cmsis_nn")
    reference = run_firmware(tflite, "cortex-m4", x, kernels="reference")
    return {
        "label": label,
        "bytes": tflite.stat().st_size,
        "instructions": {
            "reference": reference.instructions_per_inference,
            "cmsis_nn": cmsis.instructions_per_inference,
        },
        "runtime_text": {"reference": reference.runtime_text_bytes, "cmsis_nn": cmsis.runtime_text_bytes},
        "flash": {"reference": reference.flash_bytes, "cmsis_nn": cmsis.flash_bytes},
        "arena_min": {"reference": reference.arena_min_bytes, "cmsis_nn": cmsis.arena_min_bytes},
        "identical": bool(np.array_equal(cmsis.outputs, reference.outputs)),
        "samples": len(x),
    }


def kernels_report(rows: list[dict]) -> str:
    def pair(r: dict, key: str) -> str:
        return f"{r[key]['reference']:,} / {r[key]['cmsis_nn']:,}"

    body = [
        [
            r["label"],
            f"{r['bytes']:,}",
            pair(r, "instructions"),
            f"**{r['instructions']['reference'] / r['instructions']['cmsis_nn']:.1f}x**",
            pair(r, "runtime_text"),
            pair(r, "flash"),
            pair(r, "arena_min"),
            f"{'yes' if r['identical'] else '**no**'} ({r['samples']} samples)",
        ]
        for r in rows
    ]
    headers = ["int8 model", "bytes", "instructions per inference: reference / CMSIS-NN", "fewer",
               "TFLite Micro flash (B)", "whole firmware flash (B)", "smallest arena (B)",
               "outputs identical"]  # fmt: skip
    return markdown_table(headers, body)


def report(rows: list[dict], kernel_rows: list[dict]) -> str:
    def kib(n: int) -> str:
        return f"{n:,} B"

    def ratio(measured: int, estimate: int) -> str:
        return f"{measured / estimate:.2f}"

    header = ["figure"]
    for r in rows:
        header += [f"{r['label']}: host estimate", "firmware", "ratio"]
    lines = [
        ("flash (text + data)", "flash", lambda fw: fw["flash_bytes"]),
        ("arena minimum", "arena_min", lambda fw: fw["arena_min_bytes"]),
        ("kTensorArenaSize (minimum + 25 %)", "arena_size", None),
        ("RAM (data + bss + stack)", "ram", None),
    ]
    body = []
    for name, key, pick in lines:
        row = [name]
        for r in rows:
            fw = r["firmware"]
            measured = pick(fw) if pick else (r["arena_size"] if key == "arena_size" else r["ram_needed"])
            row += [kib(r["estimate"][key]), kib(measured), ratio(measured, r["estimate"][key])]
        body.append(row)
    extra = [
        ("of the flash: model array", lambda r: kib(r["firmware"]["model_bytes"])),
        (
            "of the flash: TFLite Micro runtime and kernels",
            lambda r: kib(r["firmware"]["runtime_text_bytes"]),
        ),
        ("of the flash: C/C++ libraries, start-up, harness", lambda r: kib(_rest(r["firmware"]))),
        ("stack high-water mark", lambda r: kib(r["firmware"]["stack_used_bytes"])),
        (
            "instructions per inference (QEMU -icount)",
            lambda r: f"{r['firmware']['instructions_per_inference']:,}",
        ),
        ("outputs equal to the Python interpreter", lambda r: _agreement(r)),
        (f"accuracy: LiteRT / TFLM (2,000) / firmware ({SAMPLES})", lambda r: _accuracies(r)),
        ("fits board stm32l4r5 (firmware figures)", lambda r: "yes" if r["fits"] else "**no**"),
    ]
    for name, cell in extra:
        row = [name]
        for r in rows:
            row += ["", cell(r), ""]
        body.append(row)
    table = markdown_table(header, body)
    times = markdown_table(
        ["model", "export with firmware (s)", "firmware build (s, median)", "emulated run (s, median)"],
        [
            [r["label"], f"{r['export_seconds']:.0f}", f"{r['build_seconds']:.1f}", f"{r['run_seconds']:.1f}"]
            for r in rows
        ],
    )
    library_s = rows[0]["library_build_seconds"]
    runtime_lo = min(r["firmware"]["runtime_text_bytes"] for r in rows)
    runtime_hi = max(r["firmware"]["runtime_text_bytes"] for r in rows)
    fw = rows[0]["firmware"]
    return f"""## Firmware on an emulated Cortex-M4 (`benchmarks/firmware.py`)

mnistnet3 trained on the fixed MNIST split, exported for target mcu (board {BOARD}) as post-training
int8, and the compressed chain of `benchmarks/compress_mnist.py` (structured prune, lowrank,
separable, int8 QAT). With `firmware=True` the C package, as it ships, is linked with TFLite Micro
({kernel_name(fw["kernels"])}, `{fw["compiler"]}`, `-mcpu={fw["cpu"]}`, soft float, -Os) and run on QEMU's
{fw["machine"]} on the first {SAMPLES} test samples. Host estimates are what the export records
without the firmware: the arena found by bisection in the Python interpreter on this 64-bit host
+ 25 %, the model bytes + the board's 128 KB flash reserve, that arena + its 16 KB RAM reserve.

{table}

The same int8 files with TFLite Micro's reference kernels (`--kernels reference`) against CMSIS-NN (the
default), on the same Cortex-M4 and the same {KERNEL_SAMPLES} test samples:

{kernels_report(kernel_rows)}

Time, with TFLite Micro cached (built once in {library_s:.0f} s on this shared 2-core machine, `-j2`):

{times}

{_arena_text(rows, kernel_rows)} The flash estimate's 128 KB reserve stood for the
runtime, which measures {runtime_lo // 1024}-{runtime_hi // 1024} KB with
CMSIS-NN and the kernels these models use (no printf: the harness reports through semihosting). The
instruction count is QEMU's count of executed instructions (`-icount shift=0`, calibrated against a
loop of known length), not cycles: a Cortex-M4 takes one or more cycles per instruction. The firmware's
accuracy is on 32 samples only.
"""


def _arena_text(rows: list[dict], kernel_rows: list[dict]) -> str:
    """How the target's arena compares with the host's estimate, from this run's figures."""
    parts = []
    for r, k in zip(rows, kernel_rows, strict=False):
        host, target = r["estimate"]["arena_min"], r["firmware"]["arena_min_bytes"]
        reference = k["arena_min"]["reference"]
        parts.append(
            f"{r['label']}: {target:,} B on the target with CMSIS-NN, {reference:,} B with the reference "
            f"kernels, {host:,} B by the host's bisection"
        )
    return (
        "The arena on the target is the reference kernels' arena less the interpreter's bookkeeping (tensor "
        "structs and pointers, half as wide on a 32-bit core), plus the scratch buffers CMSIS-NN's "
        "convolutions ask for (an im2col buffer for a convolution wider than 1x1): "
        + "; ".join(parts)
        + ". The export's 25 % margin over the host's figure covers that scratch here; with `--firmware` "
        "the arena is measured with the kernels that ship."
    )


def _rest(fw: dict) -> int:
    return fw["flash_bytes"] - fw["model_bytes"] - fw["runtime_text_bytes"]


def _agreement(r: dict) -> str:
    a = r["agreement"]
    return f"{a['identical']:.0%} of {a['samples']} byte for byte (max {a['max_diff_steps']} steps)"


def _accuracies(r: dict) -> str:
    return f"{r['litert_accuracy']:.2%} / {r['tflm_accuracy']:.2%} / {r['firmware_accuracy']:.2%}"


def main() -> None:
    from edgeslim.export.firmware import firmware_available

    ok, why = firmware_available(BOARD)
    if not ok:
        sys.exit(f"cannot run the firmware here: {why}")
    data = mnist()
    base, _ = trained_mnistnet3()
    chain, recipe = compressed_chain(base, data)
    out = Path(tempfile.mkdtemp(prefix="firmware_bench_"))
    rows, kernel_rows = [], []
    x = data.x_test[:KERNEL_SAMPLES]
    for label, model, quant in (("mnistnet3 int8", base, "int8"), ("compressed chain", chain, recipe)):
        started = time.perf_counter()
        rows.append(measure(label, model, data, quant, out))
        print(f"{label}: {time.perf_counter() - started:.0f} s", json.dumps(rows[-1], default=str)[:600])
        kernel_rows.append(kernels_side_by_side(label, Path(rows[-1]["path"]), x))
    for extra in sys.argv[1:]:  # LABEL=PATH, or a path
        label, _, given = extra.rpartition("=")
        path = Path(given)
        kernel_rows.append(kernels_side_by_side(label or f"`{path.name}`", path, x))
        print(kernel_rows[-1], flush=True)
    (CACHE / "firmware.json").write_text(
        json.dumps({"rows": rows, "kernels": kernel_rows}, indent=2, default=str)
    )
    update_section("firmware", report(rows, kernel_rows))
    print("wrote benchmarks/RESULTS.md")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
