"""edgeslim.runtime, eval, bench and inspect in a process where importing TensorFlow or Keras raises."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edgeslim.export import export_model

# Installed as sitecustomize, so it also covers the child processes the runtime starts (its probes).
BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    class _Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "keras", "tf_keras", "tf2onnx", "tensorflow_core"):
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, _Block())
    """
)

CHILD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    try:
        import tensorflow  # noqa: F401
        sys.exit("tensorflow imported despite the block")
    except ImportError:
        pass
    from edgeslim.runtime import load, evaluate, benchmark
    from edgeslim.analysis.tflite_model import analyze_tflite
    from edgeslim.analysis.onnx_model import analyze_onnx
    from edgeslim.cli import main

    tflite, onnx, npz = sys.argv[1:4]
    data = np.load(npz)
    out = {}
    for path in (tflite, onnx):
        model = load(path)
        out[path] = {
            "backend": model.backend,
            "shape": list(model.predict(data["x_test"][:5]).shape),
            "accuracy": evaluate(model, data["x_test"], data["y_test"])["accuracy"],
            "p50": benchmark(model, warmup=1, runs=5)["p50_ms"],
        }
    out["ops"] = [len(analyze_tflite(tflite)["ops"]), len(analyze_onnx(onnx)["ops"])]
    out["eval_rc"] = main(["eval", tflite, "--dataset", "npz", "--data-dir", npz, "--json"])
    out["bench_rc"] = main(["bench", onnx, "--runs", "5", "--json"])
    out["leaked"] = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf2onnx"))
    print("RESULT " + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def artifacts(digits_model, digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("tf-free")
    found = export_model(digits_model, digits, "cpu", out_dir=out, verify_samples=100, calib_samples=16)
    return {a.path.suffix: a for a in found}


def test_runtime_runs_where_tensorflow_cannot_be_imported(artifacts, digits, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    # Bare copies without sidecars: the runtime probes them in a child process, which must stay TF-free too.
    tflite, onnx = tmp_path / "m.tflite", tmp_path / "m.onnx"
    shutil.copy(artifacts[".tflite"].path, tflite)
    shutil.copy(artifacts[".onnx"].path, onnx)
    npz = tmp_path / "digits.npz"
    np.savez(npz, x_train=digits.x_train, y_train=digits.y_train, x_test=digits.x_test, y_test=digits.y_test)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), repo]))
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tflite), str(onnx), str(npz)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(row for row in done.stdout.splitlines() if row.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    assert result["leaked"] == []
    assert result[str(tflite)]["backend"] == "litert" and result[str(onnx)]["backend"] == "onnxruntime"
    for path in (tflite, onnx):
        assert result[str(path)]["shape"] == [5, 10]
        assert result[str(path)]["accuracy"] > 0.9 and result[str(path)]["p50"] > 0
    assert result["eval_rc"] == 0 and result["bench_rc"] == 0 and min(result["ops"]) > 0
    # The CLI's JSON went to stdout next to the RESULT line.
    assert '"accuracy"' in done.stdout and '"p50_ms"' in done.stdout
