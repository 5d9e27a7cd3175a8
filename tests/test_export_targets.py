"""Targets pick formats and modes and refuse what they cannot run; the agreement floor; the CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from edgeslim.atomic import sha256_file
from edgeslim.cli import main
from edgeslim.errors import EdgeslimError
from edgeslim.export import TARGETS, ExportVerificationError, export_model, parse_quant


def test_registry_lists_the_four_targets():
    assert set(TARGETS) == {"cpu", "gpu", "edgetpu", "mcu"}


def test_cpu_default_is_int8_tflite_and_onnx(digits_model_path, digits, tmp_path):
    artifacts = export_model(
        digits_model_path, digits, "cpu", out_dir=tmp_path, calib_samples=32, verify_samples=120
    )
    assert sorted(a.path.name for a in artifacts) == ["model_int8.onnx", "model_int8.tflite"]
    for artifact in artifacts:
        assert artifact.passed and artifact.sidecar["verification"]["samples"] == 120
        # Exported from a file: the sidecar hashes that file.
        assert artifact.sidecar["source_sha256"] == sha256_file(digits_model_path)
        assert artifact.sidecar["source_hash_of"] == "file"
        assert artifact.to_dict()["path"] == str(artifact.path)


def test_gpu_default_is_float16_and_refuses_integer_modes(digits_model, digits, tmp_path):
    artifacts = export_model(digits_model, digits, "gpu", out_dir=tmp_path, verify_samples=120)
    assert sorted(a.path.name for a in artifacts) == ["model_float16.onnx", "model_float16.tflite"]
    assert all(a.sidecar["target"] == "gpu" and a.passed for a in artifacts)
    with pytest.raises(EdgeslimError, match="target gpu does not take tflite int8"):
        export_model(digits_model, digits, "gpu", out_dir=tmp_path / "x", quant="int8")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": "tpu"}, "unknown target 'tpu'"),
        ({"target": "cpu", "formats": ["pb"]}, "unknown export format 'pb'"),
        ({"target": "cpu", "quant": "int4"}, "quant mode 'int4' is unknown"),
        ({"target": "cpu", "quant": {"mode": "int8", "bits": 4}}, "unknown key"),
        ({"target": "cpu", "io_dtype": "int16"}, r"io_dtype: must be one of \['int8', 'uint8'\]"),
        ({"target": "edgetpu", "formats": ["onnx"]}, "target edgetpu does not take format onnx"),
        ({"target": "edgetpu", "quant": "float16"}, "target edgetpu does not take tflite float16"),
        ({"target": "mcu", "quant": "dynamic"}, "target mcu does not take tflite dynamic"),
        ({"target": "mcu", "io_dtype": "uint8"}, "target mcu needs int8 input and output"),
        ({"target": "cpu", "agreement_floor": 1.5}, "agreement_floor"),
    ],
)
def test_targets_refuse_what_they_cannot_run(digits_model, digits, tmp_path, kwargs, message):
    with pytest.raises(EdgeslimError, match=message):
        export_model(digits_model, digits, out_dir=tmp_path, **kwargs)
    assert not tmp_path.exists() or not list(tmp_path.iterdir())  # nothing written


def test_export_options_hold_every_default_once(digits_model_path, tmp_path, capsys):
    """One home: `edgeslim export`'s defaults, the pipeline config's and export_model's are ExportOptions';
    a bad value is named as each entry point spells it, before anything is written."""
    import inspect

    from edgeslim.cli.export import export_command
    from edgeslim.errors import ConfigError
    from edgeslim.export import ExportOptions
    from edgeslim.pipeline import load_config

    defaults = ExportOptions()
    cli = {name: p.default for name, p in inspect.signature(export_command).parameters.items()}
    cli["agreement_floor"] = cli.pop("floor")
    for name in ("board", "calib_samples", "io_dtype", "per_channel", "calibration", "agreement_floor",
                 "verify", "verify_samples", "firmware", "firmware_samples"):  # fmt: skip
        assert cli[name] == getattr(defaults, name), name
    config = load_config()
    assert config.export["firmware_samples"] == defaults.firmware_samples == 32
    assert config.export["calib_samples"] is defaults.calib_samples is None  # the recipe's, else 200
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["export.firmware_samples=0", "export.calibration=mean"])
    assert sorted(p.message.split(":")[0] for p in info.value.problems) == [
        "export.calibration",
        "export.firmware_samples",
    ]
    with pytest.raises(ConfigError, match="^verify_samples: must be a positive integer"):
        ExportOptions().updated(verify_samples=0)
    with pytest.raises(TypeError, match="no setting 'floor'"):
        ExportOptions().updated(floor=0.5)
    out = tmp_path / "x"
    code = main(["export", str(digits_model_path), "--calib-samples", "0", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("error:") == 1 and "--calib-samples" in err, err
    assert not out.exists()


def test_dataset_must_match_the_model(digits_model, digits, tmp_path):
    small = dataclasses.replace(digits, x_train=digits.x_train[:, :4, :4], x_test=digits.x_test[:, :4, :4])
    with pytest.raises(EdgeslimError, match=r"shape \(4, 4, 1\)"):
        export_model(digits_model, small, "cpu", out_dir=tmp_path)


def test_recipe_strings_and_dicts_parse_alike():
    assert parse_quant("INT8", calib_samples=7).calib_samples == 7
    assert parse_quant({"mode": "fp16"}).mode == "float16"
    assert parse_quant(None) is None


@pytest.fixture(scope="module")
def bad_calibration(digits):
    """Calibrated on blank images only: the int8 input range collapses and real digits saturate it."""
    return dataclasses.replace(digits, x_train=np.zeros_like(digits.x_train))


def test_artifact_below_the_floor_is_written_and_reported(digits_model, bad_calibration, tmp_path):
    kwargs = {"formats": ["tflite"], "quant": "int8", "calib_samples": 16, "verify_samples": 200}
    with pytest.raises(ExportVerificationError, match="below the 98% agreement floor") as caught:
        export_model(digits_model, bad_calibration, "cpu", out_dir=tmp_path / "strict", **kwargs)
    [artifact] = caught.value.artifacts
    assert artifact.path.is_file()
    on_disk = json.loads(artifact.sidecar_path.read_text())
    assert on_disk["verification"]["passed"] is False and on_disk["verification"]["agreement"] < 0.98
    # strict=False: the same result comes back for the caller to check.
    [lenient] = export_model(
        digits_model, bad_calibration, "cpu", out_dir=tmp_path / "lenient", strict=False, **kwargs
    )
    assert lenient.passed is False


def test_cli_export_prints_json_and_keeps_stdout_clean(digits_model_path, tmp_path, capfd):
    argv = [
        "export",
        str(digits_model_path),
        "--target",
        "cpu",
        "--format",
        "tflite",
        "--quant",
        "int8",
        "--dataset",
        "digits",
        "--out",
        str(tmp_path),
        "--calib-samples",
        "16",
        "--verify-samples",
        "100",
        "--json",
    ]
    assert main(argv) == 0
    out = capfd.readouterr().out
    [artifact] = json.loads(out)  # the converter's C++ chatter went to stderr, not into the JSON
    assert artifact["path"].endswith("model_int8.tflite") and artifact["verification"]["passed"]


def test_cli_export_reports_a_user_mistake_with_exit_code_2(digits_model_path, tmp_path, capfd):
    assert main(["export", str(digits_model_path), "--target", "tpu", "--out", str(tmp_path)]) == 2
    assert "unknown target 'tpu'" in capfd.readouterr().err
