"""The recurrent and reconstruction zoo rows as a user runs them, each command its own `edgeslim` process.

1. Training recipe: `edgeslim train` with the course's Nesterov SGD (0.01) against the rows' own Adam
   recipe, which `train` now picks when no optimizer is named (lstm_rows: test accuracy; autoencoder
   with `--anomaly-class 0`: anomaly AUC). Digits, 8 epochs.
2. Low rank on lstm_rows: `compress --stage lowrank:method=input|recurrent,energy=0.9 --stage quantize`,
   then `export --target mcu` (per channel, and per tensor for the recurrent split): multiplications,
   TFLite Micro accuracy, file bytes and the arena measured by bisection, fused op or unrolled.

    python benchmarks/recurrent_rows.py
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from results import markdown_table, update_section


def edgeslim(*args: str) -> str:
    """One `edgeslim` command in its own process; its stdout (exit code 0 required)."""
    done = subprocess.run([sys.executable, "-m", "edgeslim", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"edgeslim {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def train(work: Path, model: str, name: str, *extra: str) -> dict:
    out = work / name
    edgeslim("train", "--model", model, "--epochs", "8", "--out", str(out), "--quiet", *extra)
    return json.loads((out / "metrics.json").read_text())


def recipes(work: Path) -> list[list[str]]:
    rows = []
    for model, extra, score in (
        ("lstm_rows", (), "test_accuracy"),
        ("autoencoder", ("--anomaly-class", "0"), "test_auc"),
    ):
        sgd = train(work, model, f"{model}-sgd", "--optimizer", "nesterov", "--lr", "0.01", *extra)
        own = train(work, model, f"{model}-own", *extra)
        label = "test accuracy" if score == "test_accuracy" else "anomaly AUC (class 0)"
        rows.append([model, label, f"{sgd[score]:.3f}", f"{own[score]:.3f}"])
    return rows


def lowrank(work: Path) -> list[list[str]]:
    base = work / "lstm_rows-own" / "model.keras"
    rows = []
    variants = (("input (auto's choice)", "input", ()), ("recurrent", "recurrent", ()),
                ("recurrent, per tensor", "recurrent", ("--per-tensor",)))  # fmt: skip
    for i, (label, method, export_flags) in enumerate(variants):
        run = work / f"lr-{method}"
        if not run.exists():
            edgeslim("compress", str(base), "--stage", f"lowrank:method={method},energy=0.9", "--stage",
                     "quantize", "--finetune-epochs", "2", "--out", str(run), "--quiet")  # fmt: skip
        export = work / f"mcu-{i}"
        edgeslim("export", str(run / "02-quantize" / "model.keras"), "--target", "mcu",
                 "--out", str(export), *export_flags)  # fmt: skip
        sidecar = json.loads((export / "model_int8.tflite.json").read_text())
        record = json.loads((run / "01-lowrank" / "record.json").read_text())
        layers = sidecar["format_details"]["recurrent"]["layers"]
        rows.append([
            label,
            f"{record['totals']['macs_before']:,} -> {record['totals']['macs_after']:,}",
            f"{sidecar['verification']['tflm']['accuracy']:.2%}",
            f"{sidecar['bytes']:,}",
            f"{sidecar['mcu']['arena_bytes']:,}",
            ", ".join(sorted({layer["as"] for layer in layers})),
        ])  # fmt: skip
    return rows


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="edgeslim-recurrent-"))
    try:
        recipe_rows = recipes(work)
        lowrank_rows = lowrank(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = "## Recurrent and reconstruction rows (`benchmarks/recurrent_rows.py`)\n\n"
    text += (
        "Digits, 8 epochs, every step an `edgeslim` command in its own process. Training with the course's "
        "Nesterov SGD (0.01) against the row's own recipe (Adam; what `edgeslim train` uses when no "
        "optimizer is named):\n\n"
    )
    text += markdown_table(["model", "figure", "Nesterov SGD 0.01", "own recipe (Adam)"], recipe_rows)
    text += (
        "\n\nLow rank on the trained lstm_rows (`lowrank:method=...,energy=0.9` then int8 with QAT, 2 "
        "fine-tuning epochs each), exported for the mcu target; the arena is the minimum found by "
        "bisection in TFLite Micro:\n\n"
    )
    text += markdown_table(
        ["split", "multiplications", "TFLM accuracy", "bytes", "arena (B)", "recurrence in the file"],
        lowrank_rows,
    )
    text += (
        "\n\nSplitting the recurrent kernel removes more multiplications, but no fused TFLite op computes "
        "a projected recurrence: the layer is unrolled, one copy of its ops per time step, and TFLite "
        "Micro keeps each unrolled FULLY_CONNECTED's per-channel multipliers and shifts in the arena "
        "(per-tensor quantization drops them). That is why `lowrank`'s auto choice keeps an LSTM that "
        "LiteRT can fuse on the input split.\n"
    )
    update_section("recurrent_rows", text)
    print(text)


if __name__ == "__main__":
    main()
