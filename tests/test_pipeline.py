"""The main job end to end: the embedded default pipeline, a MNIST config, resume, and config errors."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml
from processes import wait_until_unlocked

from edgeslim.cli import main
from edgeslim.errors import ConfigError


def test_default_pipeline_writes_every_step(default_run):
    run_dir, result = default_run
    assert not result.failures, result.failures
    names = [s.name for s in result.steps]
    assert names == [
        "train",
        "01-prune",
        "02-lowrank",
        "03-separable",
        "04-quantize",
        "exports/cpu",
        "exports/mcu",
        "exports/edgetpu",
        "report",
    ]
    for step in ("00-train", "01-prune", "02-lowrank", "03-separable", "04-quantize"):
        assert (run_dir / step / "model.keras").is_file() and (run_dir / step / "step.json").is_file()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["config"]["model"] == "digits_cnn" and manifest["tool_versions"]["tensorflow"]
    from edgeslim.atomic import sha256_file

    for entry in manifest["artifacts"]:
        assert sha256_file(run_dir / entry["path"]) == entry["sha256"]
    assert not list(run_dir.rglob(".tmp-*")), "a temporary file was left behind"
    for name in ("report.json", "report.md", "report.html", "plots/accuracy_vs_bytes.png"):
        assert (run_dir / "report" / name).is_file()


def test_default_pipeline_compresses_and_keeps_accuracy(default_run):
    run_dir, result = default_run
    report = result.report
    first, last = report["stages"][0], report["stages"][-1]
    assert first["deployed"]["accuracy"] >= 0.9
    assert last["macs"] < first["macs"] / 2
    assert last["deployed"]["bytes"] < first["deployed"]["bytes"] / 4
    assert last["deployed"]["accuracy"] >= first["deployed"]["accuracy"] - 0.05
    cpu = [a for a in report["artifacts"] if a["target"] == "cpu"]
    assert cpu and all(a["passed"] for a in cpu)


def test_rerun_skips_every_step(default_run, tmp_path):
    run_dir, first = default_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    from edgeslim.pipeline import load_config, run_pipeline

    start = time.perf_counter()
    again = run_pipeline(load_config(), copy, progress=False)
    assert all(step.cached for step in again.steps), [s.name for s in again.steps if not s.cached]
    assert time.perf_counter() - start < first.seconds / 3


def test_changing_stage_k_reruns_k_and_after(default_run, tmp_path):
    run_dir, _ = default_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    from edgeslim.pipeline import load_config, run_pipeline

    config = load_config(overrides=["compress[3].quantize.calib_samples=100"])
    again = run_pipeline(config, copy, progress=False)
    cached = {s.name: s.cached for s in again.steps}
    assert cached["train"] and cached["01-prune"] and cached["02-lowrank"] and cached["03-separable"]
    assert not cached["04-quantize"] and not cached["exports/cpu"]


def test_killed_run_resumes_cleanly(default_run, tmp_path):
    """Kill a run in the middle of a stage, then rerun: finished steps are reused, the rest completes."""
    run_dir, _ = default_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    argv = [
        sys.executable,
        "-m",
        "edgeslim",
        "pipeline",
        "--out",
        str(copy),
        "--set",
        "compress[2].separable.rank=1",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "03-separable: running" in line:
            time.sleep(1.0)  # well inside the stage's fine-tuning
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    # The watched child (edgeslim.supervisor) dies with it, its threads a moment later.
    wait_until_unlocked(copy)
    marker = json.loads((copy / "03-separable" / "step.json").read_text())
    from edgeslim.pipeline import load_config, run_pipeline

    config = load_config(overrides=["compress[2].separable.rank=1"])
    again = run_pipeline(config, copy, progress=False)
    steps = {s.name: s for s in again.steps}
    assert steps["02-lowrank"].cached and not steps["03-separable"].cached
    assert steps["03-separable"].key != marker["key"]
    assert not again.failures
    assert not list(copy.rglob(".tmp-*"))


def test_mnist_config(mnist_dir, tmp_path):
    config = tmp_path / "mnist.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "dataset": {"name": "mnist", "data_dir": str(mnist_dir)},
                "model": "lenet5",
                "train": {"epochs": 1, "batch_size": 64, "optimizer": "adam", "learning_rate": 0.002},
                "compress": [
                    {"prune": {"mode": "structured", "sparsity": 0.25, "finetune": {"epochs": 1}}},
                    {"quantize": {"mode": "int8", "calib_samples": 100}},
                ],
                "export": {"targets": ["cpu"]},
                "report": {"formats": ["json", "md"], "plots": False},
            }
        )
    )
    out = tmp_path / "run"
    assert main(["pipeline", str(config), "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["dataset"]["name"] == "mnist" and report["dataset"]["test"] == 2000
    assert report["stages"][0]["deployed"]["accuracy"] > 0.85
    int8 = [a for a in report["artifacts"] if a["quantization"] == "int8" and a["format"] == "tflite"]
    assert int8 and int8[0]["accuracy"] > 0.85


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["compress[1].lowrank.energy=1.5"], "compress[1].lowrank.energy: must be"),
        (["train.epochs=0"], "train.epochs: must be a positive integer"),
        (["train.epochs=three"], "train.epochs: must be an integer"),
        (["train.learning_rat=0.1"], "train.learning_rat: unknown key"),
        (["export.targets=[cpu, fpga]"], "export.targets[1]: must be one of"),
        (["export.board=arduino-uno"], "export.board: unknown board"),
        (["model=resnet1000"], "model: unknown model"),
        (["dataset.seed=x"], "dataset.seed: must be an integer"),
        (["compress[0].prune.finetune.alpha=2"], "compress[0].prune.finetune.alpha: must be"),
        (["report.formats=[pdf]"], "report.formats[0]: must be one of"),
    ],
)
def test_config_errors_name_the_key(overrides, message):
    from edgeslim.pipeline import load_config

    with pytest.raises(ConfigError) as info:
        load_config(overrides=overrides)
    assert message in str(info.value)


def test_config_errors_from_a_file_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: {name: digits}\nmodel: digits_cnn\ntrain: {epochs: 1}\nsurprise: 1\n")
    assert main(["pipeline", str(bad), "--out", str(tmp_path / "run")]) == 2
    assert "surprise: unknown section" in capsys.readouterr().err
    assert not (tmp_path / "run").exists(), "no work may start before the config is valid"
    broken = tmp_path / "broken.yaml"
    broken.write_text("dataset: [unclosed\n")
    assert main(["pipeline", str(broken)]) == 2
    assert main(["pipeline", str(tmp_path / "missing.yaml")]) == 2


def test_init_writes_the_default_config(tmp_path, capsys):
    path = tmp_path / "edgeslim.yaml"
    assert main(["init", str(path)]) == 0
    from edgeslim.pipeline import load_config

    assert load_config(path).stages[0].name == "prune"
    assert main(["init", str(path)]) == 2  # never overwrite silently


def test_the_example_configs_validate(mnist_dir):
    from pathlib import Path

    from edgeslim.pipeline import load_config

    config = load_config(Path(__file__).resolve().parent.parent / "examples" / "mnist.yaml")
    assert Path(config.dataset["data_dir"]).resolve() == mnist_dir.resolve()
    assert [s.name for s in config.stages] == ["prune", "lowrank", "separable", "quantize"]


def test_a_trained_keras_model_needs_no_train_section(digits_model_path, tmp_path):
    config = tmp_path / "trained.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": str(digits_model_path),
                "compress": [{"quantize": {"mode": "int8", "calib_samples": 64}}],
                "export": {"targets": ["cpu"]},
                "report": {"formats": ["json"], "plots": False},
            }
        )
    )
    out = tmp_path / "run"
    before = digits_model_path.read_bytes()
    assert main(["pipeline", str(config), "--out", str(out), "--quiet"]) == 0
    assert digits_model_path.read_bytes() == before, "the user's model file must never change"
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["stages"][0]["deployed"]["accuracy"] >= 0.9
    assert not (out / "00-train" / "history.json").exists()  # measured as given, not retrained


def test_a_tampered_artifact_is_rebuilt(default_run, tmp_path):
    run_dir, _ = default_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    victim = next((copy / "exports" / "cpu").glob("*.onnx"))
    victim.write_bytes(victim.read_bytes()[:100])  # e.g. a disk error or a hand edit
    from edgeslim.pipeline import load_config, run_pipeline

    again = run_pipeline(load_config(), copy, progress=False)
    steps = {s.name: s.cached for s in again.steps}
    assert steps["04-quantize"] and not steps["exports/cpu"]
    assert len(victim.read_bytes()) > 100


def test_a_rerun_step_leaves_no_stale_files(default_run, tmp_path):
    run_dir, _ = default_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    assert (copy / "04-quantize" / "deployed" / "model_int8.tflite").is_file()
    from edgeslim.pipeline import load_config, run_pipeline

    config = load_config(
        overrides=[
            "compress[3].quantize.mode=float16",
            "compress[3].quantize.qat=false",
            "export.targets=[cpu]",
        ]
    )
    run_pipeline(config, copy, progress=False)
    deployed = sorted(p.name for p in (copy / "04-quantize" / "deployed").iterdir())
    assert deployed == ["model_float16.tflite", "model_float16.tflite.json"]
    manifest = json.loads((copy / "manifest.json").read_text())
    assert not [a for a in manifest["artifacts"] if "model_int8" in a["path"] and a["step"] == "04-quantize"]
