"""Which models fit which emulated board: the firmware linked in each board's own memory map, run on it.

    python benchmarks/boards.py [LABEL=MODEL_int8.tflite ...]   # writes its section of benchmarks/RESULTS.md

Models: a tiny dense digits model (64 -> 12 -> 10, trained here), the default pipeline's mcu export
(``edgeslim pipeline`` run here, digits), and any int8 ``.tflite`` given (e.g. the compressed MNIST chain
of ``benchmarks/firmware.py`` or an ``edgeslim fit`` winner). Each runs as firmware with CMSIS-NN on
every board of ``edgeslim.export.firmware.MACHINES`` whose library builds here; the arena is the
smallest that allocates on the target plus the export's 25 % margin, as the mcu export ships it. A
model that does not fit shows the linker's verdict (which memory, by how much). The outputs of each
run are compared with TFLite Micro's Python interpreter, byte for byte.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baseline import REPO, mnist  # noqa: E402
from results import markdown_table, update_section  # noqa: E402

SAMPLES = 4


def tiny_model(out: Path) -> Path:
    import keras

    from edgeslim.data import load_dataset
    from edgeslim.export import export_model

    digits = load_dataset("digits")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input(digits.input_shape), keras.layers.Flatten(), keras.layers.Dense(12, activation="relu"),
         keras.layers.Dense(10, activation="softmax")]
    )  # fmt: skip
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(digits.x_train, digits.y_train, epochs=20, verbose=0)
    [artifact] = export_model(model, digits, "mcu", out_dir=out / "tiny", calib_samples=100)
    return artifact.path


def default_pipeline(out: Path) -> Path:
    run = out / "pipeline"
    done = subprocess.run([sys.executable, "-m", "edgeslim", "pipeline", "--out", str(run), "--quiet"],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"the default pipeline failed: {done.stderr[-1500:]}")
    return run / "exports" / "mcu" / "model_int8.tflite"


def samples_for(path: Path) -> np.ndarray:
    from edgeslim.data import load_dataset
    from edgeslim.runtime.tflite_file import read_tflite

    info = read_tflite(path.read_bytes())
    shape = tuple(info.tensors[info.inputs[0]].shape[1:])
    data = load_dataset("digits") if shape == (8, 8, 1) else mnist()
    return data.x_test[:SAMPLES]


def run_on(path: Path, board: str, x: np.ndarray) -> dict:
    from edgeslim.errors import EdgeslimError
    from edgeslim.export.firmware import raw_inputs, run_firmware
    from edgeslim.export.firmware.agreement import interpreter_outputs
    from edgeslim.export.mcu_arena import ARENA_MARGIN
    from edgeslim.runtime.tflite_file import read_tflite

    data = path.read_bytes()
    try:
        result = run_firmware(data, board, x, arena_margin=ARENA_MARGIN)
    except EdgeslimError as exc:
        return {"fits": False, "why": exc.message}
    raw = raw_inputs(read_tflite(data), x)
    same = np.array_equal(result.outputs, interpreter_outputs(data, raw, 4 * 1024 * 1024))
    return {"fits": True, "identical": same, **result.to_dict()}


def cell(r: dict) -> str:
    if not r["fits"]:
        why = r["why"]
        if ": over " in why:  # the linker's verdict
            return f"**no**: over {why.split(': over ')[-1]}"
        arena = re.search(r"stack \(([\d,]+) B\)$", why)
        if arena:  # the tensors did not fit the arena the board's RAM leaves
            return f"**no**: its tensors need more than the {arena.group(1)} B of arena the RAM leaves"
        return f"**no**: {why}"
    same = "" if r["identical"] else " **outputs differ**"
    instructions = r["instructions_per_inference"] / 1e6
    return (
        f"flash {r['flash_bytes']:,}, RAM {r['ram_bytes']:,} + stack {r['stack_used_bytes']:,}; "
        f"arena {r['arena_min_bytes']:,}; {instructions:.2f} M instr{same}"
    )


def main() -> None:
    from edgeslim.export.firmware import MACHINES, cached_library, ensure_library, firmware_available

    out = Path(tempfile.mkdtemp(prefix="edgeslim-boards-"))
    models = {"tiny dense (digits)": tiny_model(out), "default pipeline (digits)": default_pipeline(out)}
    for arg in sys.argv[1:]:
        label, _, path = arg.partition("=")
        models[label] = Path(path)
    boards, builds = [], {}
    for name, machine in MACHINES.items():
        ok, why = firmware_available(name)
        if not ok:
            print(f"{name}: skipped ({why})", flush=True)
            continue
        started = time.perf_counter()
        was_cached = cached_library(machine.cpu) is not None
        library = ensure_library(machine.cpu, log=print)
        builds[machine.cpu] = library.info["build_seconds"] if was_cached else time.perf_counter() - started
        boards.append(name)
    results = {
        label: {b: run_on(path, b, samples_for(path)) for b in boards} for label, path in models.items()
    }
    for label in models:
        print(label, json.dumps({b: cell(r) for b, r in results[label].items()}), flush=True)
    header = ["board (QEMU machine, core: flash / RAM)", *[f"{label}, {models[label].stat().st_size:,} B"
                                                           for label in models]]  # fmt: skip
    rows = []
    for b in boards:
        m = MACHINES[b]
        head = f"`{b}` ({m.machine}, {m.cpu}: {m.flash_bytes // 1024:,} KB / {m.ram_bytes // 1024:,} KB)"
        rows.append([head, *[cell(results[label][b]) for label in models]])
    build_rows = [[cpu, f"{seconds:.0f}"] for cpu, seconds in sorted(builds.items())]
    text = "## Models on boards (`benchmarks/boards.py`)\n\n"
    text += (
        "Each model built into firmware with TFLite Micro and CMSIS-NN for the board's core, linked in the "
        "board's own memory map (flash and RAM from `machines.json`, the stack's reserve kept free) and "
        f"run on QEMU's machine for it on {SAMPLES} test samples, the arena at the smallest that allocates "
        "on the target + 25 %, as the mcu export ships it. Figures in bytes: flash = text + data, RAM = "
        "data + bss (the arena included) + the measured stack; instructions per inference (QEMU `-icount`, "
        "not cycles). Where a model does not fit, the linker's verdict. Every run that fits gave outputs "
        "identical to TFLite Micro's Python interpreter unless marked.\n\n"
    )
    text += markdown_table(header, rows) + "\n\n"
    text += "TFLite Micro (CMSIS-NN) build per core, once, on this 2-core machine (`-j2`):\n\n"
    text += markdown_table(["core", "build (s)"], build_rows) + "\n"
    update_section("boards", text)
    print(text)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
