"""A tampered or damaged sidecar is refused before the artifact is used: one line naming the sidecar, the
field and what the artifact itself says, from the runtime and from `edgeslim eval` / `bench`."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeslim.cli import main
from edgeslim.errors import EdgeslimError
from edgeslim.export import export_model
from edgeslim.runtime import RuntimeModelError, evaluate, load


@pytest.fixture(scope="module")
def files(digits_model, digits, tmp_path_factory) -> dict[str, Path]:
    """The digits model as an int8 .tflite (quantized inputs and outputs) and an int8 .onnx, once."""
    out = tmp_path_factory.mktemp("trust_sidecar")
    artifacts = export_model(
        digits_model,
        digits,
        "cpu",
        out_dir=out,
        formats=["tflite", "onnx"],
        quant="int8",
        verify_samples=100,
        calib_samples=32,
    )
    return {a.path.suffix: a.path for a in artifacts}


def _tampered(files: dict[str, Path], suffix: str, folder: Path, change: Callable[[dict], Any]) -> Path:
    """A copy of the artifact and its sidecar, the sidecar changed by ``change`` (or replaced by its
    return value when that is a string: raw text)."""
    folder.mkdir(exist_ok=True)
    path = folder / files[suffix].name
    shutil.copy(files[suffix], path)
    sidecar = json.loads(Path(f"{files[suffix]}.json").read_text())
    replaced = change(sidecar)
    text = replaced if isinstance(replaced, str) else json.dumps(sidecar)
    Path(f"{path}.json").write_text(text)
    return path


def _set(path: str, value: Any) -> Callable[[dict], None]:
    """Set a dotted field (``inputs.0.scale``) of the sidecar."""

    def change(sidecar: dict) -> None:
        *parents, last = path.split(".")
        node: Any = sidecar
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[int(last) if isinstance(node, list) else last] = value(node[last]) if callable(value) else value

    return change


# (name, change, what the message must say after "<sidecar>: ") for either artifact
TAMPERED = [
    (
        "shape",
        _set("inputs.0.shape", [None, 28, 28, 1]),
        r"inputs\[0\]\.shape is \[None, 28, 28, 1\], but the artifact .* says \[None, 8, 8, 1\]",
    ),
    ("rank", _set("outputs.0.shape", [None, 10, 1]), r"outputs\[0\]\.shape is .* says \[None, 10\]"),
    ("dtype", _set("inputs.0.dtype", "uint8"), r"inputs\[0\]\.dtype is uint8, but the artifact"),
    (
        "classes",
        _set("class_names", ["a", "b", "c"]),
        r"class_names is 3 names, but the artifact .* says 10 outputs",
    ),
    ("nan scale", _set("inputs.0.scale", math.nan), r"inputs\[0\]\.scale is nan, expected a finite number"),
    (
        "zero scale",
        _set("outputs.0.scale", 0.0),
        r"outputs\[0\]\.scale is 0\.0, expected a finite quantization scale > 0",
    ),
    (
        "prep zero",
        _set("preprocessing.scale", 0),
        r"preprocessing\.scale is 0, expected a finite number other than 0",
    ),
    ("prep inf", _set("preprocessing.offset", math.inf), r"preprocessing\.offset is inf"),
    (
        "prep text",
        _set("preprocessing.scale", "1/255"),
        r'preprocessing\.scale is "1/255", expected a finite number',
    ),
    (
        "raw dtype",
        _set("preprocessing.raw_dtype", "uint9"),
        r'preprocessing\.raw_dtype is "uint9", expected a numpy dtype',
    ),
    ("inputs text", _set("inputs", "abc"), r'inputs is "abc", expected a list'),
    ("input number", _set("inputs", [5]), r"inputs\[0\] is 5, expected an object"),
    (
        "input count",
        lambda s: s["inputs"].append(s["inputs"][0]),
        r"the sidecar lists 2 inputs, the artifact .* has 1",
    ),
    ("names text", _set("class_names", "0123456789"), r'class_names is "0123456789", expected a list'),
    ("verification", _set("verification", "passed"), r'verification is "passed", expected an object'),
    ("task", _set("verification.task", "magic"), r'verification\.task is "magic", expected one of'),
    ("sha256", _set("sha256", 12), r"sha256 is 12, expected a string"),
    ("array", lambda s: "[1, 2, 3]", r"the sidecar must hold a JSON object"),
    ("not json", lambda s: '{"inputs": [', r"the sidecar is not readable JSON"),
]
TFLITE_ONLY = [  # the .tflite records its own quantization, which the sidecar must repeat
    (
        "scale x2",
        _set("inputs.0.scale", lambda v: v * 2),
        r"inputs\[0\]\.scale is .*, but the artifact .* says 0\.00",
    ),
    (
        "zero point",
        _set("outputs.0.zero_point", lambda v: v + 1),
        r"outputs\[0\]\.zero_point is -127, but the artifact .* says -128",
    ),
]


@pytest.mark.parametrize(
    ("suffix", "case"),
    [(".tflite", c) for c in TAMPERED + TFLITE_ONLY] + [(".onnx", c) for c in TAMPERED],
    ids=lambda v: v if isinstance(v, str) else v[0],
)
def test_the_runtime_refuses_a_tampered_sidecar(files, tmp_path, suffix, case):
    name, change, message = case
    path = _tampered(files, suffix, tmp_path / "t", change)
    with pytest.raises(RuntimeModelError) as caught:
        load(path)
    error = caught.value
    assert isinstance(error, EdgeslimError) and "\n" not in error.message
    assert error.message.startswith(f"{path}.json: "), error.message
    assert re.search(message, error.message), (message, error.message)
    assert "re-export" in error.hint and "delete the sidecar" in error.hint


def test_the_untouched_sidecar_and_no_sidecar_both_load(files, digits, tmp_path):
    for path in files.values():
        model = load(path)
        assert model.class_names == digits.class_names and model.preprocessing["scale"] == pytest.approx(
            1 / 16
        )
    # What the hint promises: without the sidecar the artifact's own metadata runs it (no class names).
    bare = _tampered(files, ".tflite", tmp_path / "bare", _set("class_names", ["a"]))
    Path(f"{bare}.json").unlink()
    model = load(bare)
    assert model.class_names is None and model.inputs == load(files[".tflite"]).inputs
    assert evaluate(model, digits.x_test, digits.y_test)["accuracy"] > 0.9


@pytest.mark.parametrize(
    ("command", "case"),
    [
        ("eval", TAMPERED[0]),
        ("eval", TAMPERED[4]),
        ("eval", TFLITE_ONLY[0]),
        ("eval", TAMPERED[-1]),
        ("bench", TAMPERED[3]),
    ],
    ids=lambda v: v if isinstance(v, str) else v[0],
)
def test_eval_and_bench_print_one_line_and_exit_2(files, tmp_path, capsys, command, case):
    name, change, message = case
    path = _tampered(files, ".tflite", tmp_path / "t", change)
    argv = [command, str(path)] + (["--dataset", "digits"] if command == "eval" else ["--runs", "3"])
    assert main(argv) == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in captured.err + captured.out, captured.err
    assert errors[0].startswith(f"error: {path}.json: ") and "; fix: re-export" in errors[0]
    assert "accuracy" not in captured.out


def test_eval_in_a_fresh_process_as_a_user_runs_it(files, tmp_path):
    path = _tampered(files, ".onnx", tmp_path / "t", _set("inputs.0.shape", [None, 28, 28, 1]))
    done = subprocess.run(
        [sys.executable, "-m", "edgeslim", "eval", str(path), "--dataset", "digits"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"error: {path}.json: inputs[0].shape is [None, 28, 28, 1]" in done.stderr


def test_labels_outside_the_model_outputs_are_refused_in_evaluation(files, digits, tmp_path, capsys):
    y = digits.y_test.copy()
    y[5] = 12
    with pytest.raises(EdgeslimError, match=r"label 12 \(sample 5\) is not one of the model's 10 classes"):
        evaluate(load(files[".onnx"]), digits.x_test, y)
    # The same through `edgeslim eval` on a 13-class .npz: the data loads, the model cannot score it.
    x_train = np.concatenate([digits.x_train, digits.x_train[:30]])
    y_train = np.concatenate([digits.y_train, np.repeat([10, 11, 12], 10)])
    npz = tmp_path / "thirteen.npz"
    np.savez(npz, x_train=x_train, y_train=y_train, x_test=digits.x_test, y_test=y)
    assert main(["eval", str(files[".tflite"]), "--dataset", "npz", "--data-dir", str(npz)]) == 2
    assert "not one of the model's 10 classes" in capsys.readouterr().err
