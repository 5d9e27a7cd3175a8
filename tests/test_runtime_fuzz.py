"""Truncated and bit-flipped .tflite and .onnx files: load/predict must raise RuntimeModelError, never crash.

The loop runs in a child process, so that a segfault fails this test instead of killing pytest.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from edgeslim.export import export_model

COPIES = 50  # per format: half truncations, half bit flips

CHILD = textwrap.dedent(
    r"""
    import json, random, shutil, sys
    from pathlib import Path
    import numpy as np
    from edgeslim.runtime import RuntimeModelError, load

    config = json.loads(sys.argv[1])
    work = Path(config["work"])
    rng = random.Random(0)
    report = {"raised": 0, "ran": 0, "with_sidecar_raised": 0, "copies": 0, "crashes_caught": 0, "other": []}
    x = np.random.default_rng(0).random((3, 8, 8, 1), dtype=np.float32)

    def mutate(data, k):
        b = bytearray(data)
        if k % 2 == 0:
            return bytes(b[: rng.randrange(len(b))])
        for _ in range(rng.choice([1, 2, 8, 32])):
            # Half the flips hit the structure at either end, where offsets, shapes and options live.
            i = rng.randrange(len(b)) if rng.random() < 0.5 else rng.choice(
                [rng.randrange(min(len(b), 2048)), len(b) - 1 - rng.randrange(min(len(b), 2048))])
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b)

    for source, backend, copies in config["files"]:
        source = Path(source)
        data = source.read_bytes()
        for k in range(copies):
            report["copies"] += 1
            copy = work / f"{k}-{backend}{source.suffix}"
            copy.write_bytes(mutate(data, k))
            # Beside its original sidecar: the recorded sha256 catches every change.
            shutil.copy(source.with_name(source.name + ".json"), copy.with_name(copy.name + ".json"))
            try:
                load(copy, backend=backend).predict(x)
                report["other"].append(f"{copy.name}: loaded despite a mismatching sidecar")
            except RuntimeModelError:
                report["with_sidecar_raised"] += 1
            # Alone: the format checks and the child-process probe must turn any damage into an error.
            copy.with_name(copy.name + ".json").unlink()
            try:
                out = load(copy, backend=backend).predict(x)
                assert out.shape == (3, 10), out.shape
                report["ran"] += 1  # a flip in the weights leaves a valid, different model
            except RuntimeModelError as exc:
                report["raised"] += 1
                report["crashes_caught"] += "crashed" in exc.message  # a native crash, seen by the probe
            except Exception as exc:
                report["other"].append(f"{copy.name}: {type(exc).__name__}: {exc}")
    print(json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def sources(digits_model, digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzz-src")
    [tfl, onnx] = export_model(digits_model, digits, "cpu", out_dir=out, verify=False, calib_samples=16)
    return {tfl.path.suffix: tfl.path, onnx.path.suffix: onnx.path}


def test_corrupt_copies_raise_clean_errors(sources, tmp_path):
    files = [
        [str(sources[".tflite"]), "litert", COPIES],
        [str(sources[".onnx"]), "onnxruntime", COPIES],
        [str(sources[".tflite"]), "tflm", 20],  # TFLite Micro has no verifier: the probe is what saves it
    ]
    config = json.dumps({"work": str(tmp_path), "files": files})
    done = subprocess.run([sys.executable, "-c", CHILD, config], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"the fuzz loop died (exit {done.returncode}): {done.stderr[-2000:]}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["other"] == []
    assert report["copies"] == 2 * COPIES + 20
    assert report["with_sidecar_raised"] == report["copies"]
    assert report["raised"] + report["ran"] == report["copies"]
    assert report["raised"] >= COPIES  # every truncation at least


def test_a_file_that_crashes_tflite_micro_raises_instead(sources, tmp_path):
    """Rewire the first convolution to read a weight tensor: valid indices, so every format check passes,
    but TFLite Micro dies natively (SIGFPE) preparing it. The probe must turn that into an error."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(sources[".tflite"].read_bytes()), 0)
    graph = model.subgraphs[0]
    fc_code = next(
        i for i, c in enumerate(model.operatorCodes) if max(c.builtinCode, c.deprecatedBuiltinCode) == 9
    )  # FULLY_CONNECTED
    fc_weights = next(op.inputs[1] for op in graph.operators if op.opcodeIndex == fc_code)
    graph.operators[0].inputs[0] = fc_weights
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    broken = tmp_path / "rewired.tflite"
    broken.write_bytes(bytes(builder.Output()))

    unprotected = (
        "import numpy as np\nfrom edgeslim.runtime import load\n"
        f"load({str(broken)!r}, backend='tflm', probe=False).predict(np.zeros((1, 8, 8, 1), np.float32))"
    )
    done = subprocess.run([sys.executable, "-c", unprotected], capture_output=True, text=True, timeout=120)
    if done.returncode >= 0:
        pytest.skip(f"this TFLite Micro build no longer crashes on the file (exit {done.returncode})")
    from edgeslim.runtime import RuntimeModelError, load

    with pytest.raises(RuntimeModelError, match="crashed"):
        load(broken, backend="tflm")  # probed in a child first: the crash costs the child only
