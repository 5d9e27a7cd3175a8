"""The front door: every command answers a mistake with exit 2 and one line per mistake; paths resolve
where the user wrote them; the console shows edgeslim's own lines only; and the correctness fixes
(QAT in the default pipeline, a report from the manifest, the recipe honoured by export, a lossless
prune that stays lossless), each checked the way a user meets it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import yaml

from edgeslim.cli import main
from edgeslim.errors import ConfigError

MISTAKES = {
    "unknown flag": [
        ["train", "--bogus"], ["inspect", "m.keras", "--bogus"], ["compress", "m.keras", "--bogus"],
        ["pipeline", "--bogus"], ["deploy", "run", "--bogus"], ["export", "m.keras", "--bogus"],
        ["eval", "m.tflite", "--bogus"], ["bench", "m.tflite", "--bogus"], ["report", "run", "--bogus"],
        ["init", "--bogus"], ["fit", "m.keras", "--bogus"],
    ],
    "missing argument": [["export"], ["inspect"], ["eval"], ["bench"], ["deploy"], ["report"], ["fit"],
                         ["compress", "m.keras"]],
    "bad type": [["bench", "x.tflite", "--threads", "x"], ["train", "--epochs", "many"],
                 ["fit", "m.keras", "--max-trials", "x"], ["pipeline", "--epochs", "1.5"]],
    "bad choice": [["train", "--optimizer", "lion", "--epochs", "1"], ["train", "--dataset", "imagenet"],
                   ["pipeline", "--dataset", "imagenet"], ["compress", "m.keras", "--stage", "shrink"]],
    "bad value": [["compress", "m.keras", "--stage", "prune:sparsity=nan"],
                  ["pipeline", "--set", "compress[a].x=1"], ["pipeline", "--set", "train.epochs=["],
                  ["pipeline", "--set", "compress[0].prune.sparsity=.inf"], ["pipeline", "--set", "novalue"],
                  ["export", "m.keras", "--target", "mcu", "--firmware", "--firmware-samples", "0"],
                  ["pipeline", "--set", "export.firmware_samples=0"]],
}  # fmt: skip


def _check_one_line_per_mistake(code: int, err: str) -> list[str]:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err and lines and all(line.startswith("error:") for line in lines), err
    return lines


@pytest.mark.parametrize(
    "argv", [a for group in MISTAKES.values() for a in group], ids=lambda a: " ".join(a)[:40]
)
def test_every_command_answers_a_mistake_with_exit_2_and_one_line(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(argv)
    lines = _check_one_line_per_mistake(code, capsys.readouterr().err)
    assert len(lines) <= 3, lines


def test_a_config_with_several_mistakes_reports_them_all(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "train": {"epochs": 0, "optimizer": "lion"},
                "compress": [{"prune": 0.5}, {"lowrank": {"energy": 1.5}}],
                "export": {"targets": ["tpu"], "agreement_floor": float("nan")},
                "colour": "red",
            }
        )
    )
    lines = _check_one_line_per_mistake(main(["pipeline", str(config)]), capsys.readouterr().err)
    text = "\n".join(lines)
    for expected in (
        "colour: unknown section",
        "train.epochs",
        "train.optimizer",
        "compress[0].prune: its parameters must be a mapping, got 0.5",
        "compress[1].lowrank.energy",
        "export.targets[0]",
        "export.agreement_floor",
    ):
        assert expected in text, (expected, text)


def test_a_board_profile_with_text_sizes_is_refused_clearly(tmp_path, capsys):
    board = tmp_path / "board.json"
    profile = {"name": "b", "description": "d", "cpu": "m4", "ram_bytes": "256k", "flash_bytes": 1}
    board.write_text(json.dumps(profile | {"ram_reserved_bytes": 0, "flash_reserved_bytes": 0}))
    lines = _check_one_line_per_mistake(
        main(["pipeline", "--set", f"export.board={board}"]), capsys.readouterr().err
    )
    assert "ram_bytes must be a whole number of bytes, got '256k'" in lines[0]


def test_config_paths_resolve_against_the_config_file_and_cli_paths_against_the_cwd(tmp_path, monkeypatch):
    from edgeslim.pipeline import load_config

    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    board = dict(name="mine", description="d", cpu="m4", ram_bytes=65536, flash_bytes=262144,
                 ram_reserved_bytes=0, flash_reserved_bytes=0)  # fmt: skip
    (folder / "boards").mkdir()
    (folder / "boards" / "mine.json").write_text(json.dumps(board))
    config = folder / "edgeslim.yaml"
    config.write_text(yaml.safe_dump({"dataset": {"name": "mnist", "data_dir": "data"},
                                      "model": "digits_cnn", "train": {"epochs": 1},
                                      "export": {"board": "boards/mine.json"}}))  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "cli-data").mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    loaded = load_config(config)
    assert loaded.dataset["data_dir"] == str(folder / "data")
    assert loaded.export["board"] == str(folder / "boards" / "mine.json")
    overridden = load_config(config, ["dataset.data_dir=cli-data"])
    assert overridden.dataset["data_dir"] == str(elsewhere / "cli-data")
    with pytest.raises(ConfigError, match="no such file"):
        load_config(config, ["export.board=boards/mine.json"])  # on the command line: from the cwd


SMALL = {
    "dataset": {"name": "digits"},
    "model": "digits_cnn",
    "train": {"epochs": 2, "batch_size": 32, "optimizer": "adam", "learning_rate": 0.003},
    "compress": [{"quantize": {"mode": "int8", "qat": True, "qat_epochs": 1, "calib_samples": 64}}],
    "export": {"targets": ["cpu", "mcu"]},
    "report": {"formats": ["json"], "plots": False},
}
CHATTER = (
    "WARNING",
    "I0000",
    "INFO:",
    "fully_quantize",
    "XNNPACK",
    "absl",
    "oneDNN",
    "retracing",
    "tensorflow",
)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("small")
    config = folder / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    run = subprocess.run(
        [sys.executable, "-m", "edgeslim", "pipeline", str(config), "--out", str(folder / "run")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    return folder, config, run


def test_the_console_shows_only_edgeslims_own_lines(small_run):
    folder, _, run = small_run
    assert run.returncode == 0, run.stderr[-3000:]
    shown = run.stdout + run.stderr
    assert not [line for line in shown.splitlines() if any(word in line for word in CHATTER)], shown
    log = (folder / "run" / "logs" / "edgeslim.log").read_text()
    assert "fully_quantize" in log or "XNNPACK" in log  # the chatter went to the run's log


def test_verbose_shows_the_libraries_output(small_run):
    folder, config, _ = small_run
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeslim",
            "pipeline",
            str(config),
            "--out",
            str(folder / "verbose"),
            "--verbose",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert again.returncode == 0
    assert any(word in again.stderr for word in ("fully_quantize", "XNNPACK", "I0000"))


def test_qat_runs_in_the_pipeline_and_the_report_says_so(small_run):
    folder, _, _ = small_run
    report = json.loads((folder / "run" / "report" / "report.json").read_text())
    quantize = report["stages"][-1]
    assert quantize["stage"] == "quantize" and quantize["qat"]["ran"] and quantize["qat"]["epochs"] == 1
    assert quantize["finetuned"] and any("QAT ran" in note for note in quantize["notes"])


def test_the_report_lists_only_the_steps_of_this_run(small_run, tmp_path):
    folder, _, _ = small_run
    run = tmp_path / "run"
    shutil.copytree(folder / "run", run)
    shutil.copytree(run / "01-quantize", run / "02-lowrank")  # left over from an earlier, longer run
    shutil.copytree(run / "exports" / "cpu", run / "exports" / "gpu")
    assert main(["report", str(run), "--no-plots"]) == 0
    report = json.loads((run / "report" / "report.json").read_text())
    assert [s["name"] for s in report["stages"]] == ["00-train", "01-quantize"]
    assert {a["target"] for a in report["artifacts"]} == {"cpu", "mcu"}
    assert all(name.split("/")[0] != "gpu" for name in report["pareto"])


def test_compress_then_export_honours_the_recipe(digits_model_path, tmp_path, capsys):
    out = tmp_path / "compressed"
    assert main(["compress", str(digits_model_path), "--stage", "quantize:per_channel=false,io_dtype=uint8",
                 "--out", str(out), "--quiet"]) == 0  # fmt: skip
    model = out / "01-quantize" / "model.keras"
    assert main(["export", str(model), "--target", "cpu", "--format", "tflite", "--out", str(tmp_path / "e"),
                 "--verify-samples", "64", "--json"]) == 0  # fmt: skip
    sidecar = json.loads((tmp_path / "e" / "model_int8.tflite.json").read_text())
    assert sidecar["quant_recipe"]["per_channel"] is False and sidecar["quant_recipe"]["io_dtype"] == "uint8"
    assert sidecar["inputs"][0]["dtype"] == "uint8"
    assert main(["export", str(model), "--target", "cpu", "--format", "tflite", "--per-channel",
                 "--out", str(tmp_path / "pc"), "--verify-samples", "64", "--json"]) == 0  # fmt: skip
    per_channel = json.loads((tmp_path / "pc" / "model_int8.tflite.json").read_text())
    assert per_channel["bytes"] > sidecar["bytes"]  # a per-channel file carries a scale per channel
    assert (
        per_channel["recipe_overrides"] == ["per_channel: False -> True"]
        and sidecar["recipe_overrides"] == []
    )
    # Naming the mode changes the mode only: the saved per-tensor scheme and uint8 I/O stay.
    assert main(["export", str(model), "--target", "cpu", "--format", "tflite", "--quant", "int8",
                 "--out", str(tmp_path / "q"), "--verify-samples", "64"]) == 0  # fmt: skip
    named = json.loads((tmp_path / "q" / "model_int8.tflite.json").read_text())
    assert named["quant_recipe"] == sidecar["quant_recipe"] and named["bytes"] == sidecar["bytes"]
    assert main(["export", str(model), "--target", "cpu", "--format", "tflite", "--quant", "float16",
                 "--out", str(tmp_path / "f"), "--verify-samples", "64"]) == 0  # fmt: skip
    assert "overrides the model's saved quantization recipe: mode: int8 -> float16" in capsys.readouterr().err


def test_removing_dead_filters_is_lossless(digits):
    from edgeslim.compress import PruneStage

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="output")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    kernel, bias = model.get_layer("conv1").get_weights()
    kernel[..., ::2], bias[::2] = 0.0, 0.0  # four filters that never fire
    bias[1::2] = 0.5  # the live filters have biases the refit must not shrink
    model.get_layer("conv1").set_weights([kernel, bias])
    x_test = digits.x_test[:64]
    for compensate in ("lstsq", "mean", "none"):
        result = PruneStage(mode="structured", sparsity=0.5, layers="conv1", compensate=compensate).apply(
            model, digits
        )
        assert result.model.get_layer("conv1").filters == 4
        difference = np.max(
            np.abs(model.predict(x_test, verbose=0) - result.model.predict(x_test, verbose=0))
        )
        assert difference < 1e-5, (compensate, difference)
