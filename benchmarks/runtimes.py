"""mnistnet3 on MNIST in every runtime: bytes, accuracy and batch-1 latency per format and mode, and the
overhead of edgeslim.runtime over the raw interpreter on the same file.

    python benchmarks/runtimes.py          # writes its section of benchmarks/RESULTS.md

Every artifact is exported by ``edgeslim.export`` and verified on the 2,000-image test split in its own
runtime (TFLite Micro included). Latency: batch 1, one thread, median of timed calls after warm-up.
Overhead: ``predict`` (float in, quantize, run, dequantize, float out) against the interpreter's own
set/invoke/get loop on input already in the artifact's dtype; alternating rounds, ratio of medians.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baseline import CACHE, mnist, trained_mnistnet3  # noqa: E402
from results import markdown_table, update_section  # noqa: E402

ROUNDS = 5
TARGET_RATIO = 1.05
EXPORTS = [  # (runtime label, target, format, mode)
    ("LiteRT", "cpu", "tflite", "float32"),
    ("LiteRT", "cpu", "tflite", "float16"),
    ("LiteRT", "cpu", "tflite", "dynamic"),
    ("LiteRT", "cpu", "tflite", "int8"),
    ("ONNX Runtime", "cpu", "onnx", "float32"),
    ("ONNX Runtime", "cpu", "onnx", "int8"),
    ("TFLite Micro", "mcu", "tflite", "int8"),
]


def raw_call(path: Path, backend: str, x: np.ndarray) -> Callable[[], Any]:
    """The interpreter's own loop, input pre-converted to the artifact's dtype: the baseline to beat."""
    if backend == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x}
        return lambda: session.run(None, feed)
    if backend == "tflm":
        from edgeslim.runtime.tflm import tflm_interpreter

        interp = tflm_interpreter(path.read_bytes(), 4 * 1024 * 1024)
        detail = interp.get_input_details(0)
        scale, zero = (
            detail["quantization_parameters"]["scales"][0],
            detail["quantization_parameters"]["zero_points"][0],
        )
        xq = np.clip(np.round(x / scale) + zero, -128, 127).astype(detail["dtype"])

        def tflm() -> Any:
            interp.set_input(xq, 0)
            interp.invoke()
            return interp.get_output(0)

        return tflm
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    scale, zero = inp["quantization"]
    xq = (
        np.clip(np.round(x / scale) + zero, -128, 127).astype(inp["dtype"])
        if scale
        else x.astype(inp["dtype"])
    )

    def litert() -> Any:
        interp.set_tensor(inp["index"], xq)
        interp.invoke()
        return interp.get_tensor(out["index"])

    return litert


def median_us(call: Callable[[], Any], runs: int, warmup: int) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        call()
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1000.0


def latency_and_overhead(path: Path, backend: str, x: np.ndarray) -> tuple[float, float, float]:
    """(edgeslim p50 ms, raw p50 ms, ratio) from alternating rounds of the two loops."""
    from edgeslim.runtime import load

    model = load(path, backend=backend, threads=None if backend == "tflm" else 1)
    ours: Callable[[], Any] = lambda: model.predict(x)  # noqa: E731
    raw = raw_call(path, backend, x)
    probe = median_us(ours, 5, 2)
    runs = int(min(400, max(15, 1.5e6 / probe)))  # about 1.5 s of calls per loop and round
    ours_t, raw_t = [], []
    for _ in range(ROUNDS):
        raw_t.append(median_us(raw, runs, max(3, runs // 10)))
        ours_t.append(median_us(ours, runs, max(3, runs // 10)))
    ours_ms, raw_ms = statistics.median(ours_t) / 1000, statistics.median(raw_t) / 1000
    return ours_ms, raw_ms, ours_ms / raw_ms


def main() -> None:
    from edgeslim.export import export_model

    model, metrics = trained_mnistnet3()
    data = mnist()
    out = CACHE / "runtimes"
    shutil.rmtree(out, ignore_errors=True)
    x = data.x_test[:1]
    rows, ratios = [], []
    keras_accuracy = None
    for label, target, fmt, mode in EXPORTS:
        kwargs = {"board": "stm32l4r5"} if target == "mcu" else {"formats": [fmt], "quant": mode}
        started = time.perf_counter()
        [artifact] = export_model(
            model, data, target, out_dir=out / f"{target}-{fmt}-{mode}", strict=False, **kwargs
        )
        seconds = time.perf_counter() - started
        verification = artifact.sidecar["verification"]
        backend = "tflm" if target == "mcu" else verification["backend"]
        measured = verification.get("tflm", verification) if target == "mcu" else verification
        keras_accuracy = measured["keras_accuracy"]
        ours_ms, raw_ms, ratio = latency_and_overhead(artifact.path, backend, x)
        ratios.append(ratio)
        rows.append(
            [
                label,
                fmt,
                mode,
                f"{artifact.sidecar['bytes']:,}",
                f"{measured['accuracy']:.2%}",
                f"{(measured['accuracy'] - keras_accuracy) * 100:+.2f}",
                f"{measured['agreement']:.2%}",
                f"{ours_ms:.3f}",
                f"{raw_ms:.3f}",
                f"{ratio:.3f}",
            ]
        )
        print(
            f"{label:13s} {fmt:6s} {mode:8s} {artifact.sidecar['bytes']:>10,} B  "
            f"acc {measured['accuracy']:.4f}  "
            f"p50 {ours_ms:.3f} ms (raw {raw_ms:.3f}, x{ratio:.3f})  export {seconds:.1f} s",
            flush=True,
        )
    headers = [
        "runtime",
        "format",
        "mode",
        "bytes",
        "accuracy",
        "Δ vs Keras (pt)",
        "agreement",
        "p50 batch-1 ms (edgeslim)",
        "p50 raw interpreter ms",
        "edgeslim / raw",
    ]
    worst = max(ratios)
    text = "\n".join(
        [
            "## Runtimes: mnistnet3 on MNIST in every format (benchmarks/runtimes.py)",
            "",
            f"mnistnet3 ({model.count_params():,} parameters) trained 8 epochs; Keras accuracy "
            f"{keras_accuracy:.2%} on the {len(data.y_test):,}-image test split. "
            "Every row is a file written by "
            "`edgeslim.export` and run on the whole test split in its own runtime (TFLite Micro: the mcu "
            "target's file, stm32l4r5 profile). Latency: batch 1, one thread, median.",
            "",
            markdown_table(headers, rows),
            "",
            "Overhead of `edgeslim.runtime` (float in and out, quantization included) "
            "over the raw interpreter "
            f"loop on the same file: median ratio {statistics.median(ratios):.3f}, worst {worst:.3f} "
            f"(target <= {TARGET_RATIO}: {'met' if worst <= TARGET_RATIO else 'NOT met'}). The fixed cost is "
            "about 10 us a call (quantize, dequantize, checks), so the ratio grows for models much faster "
            "than these. TFLite Micro's latency is its reference kernels on this x86 host, not a "
            "microcontroller's.",
        ]
    )
    update_section("runtimes", text)
    print(text)


if __name__ == "__main__":
    main()
