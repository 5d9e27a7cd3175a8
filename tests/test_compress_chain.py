"""A chain of stages with fine-tuning, written stage by stage; and the `edgeslim compress` command."""

from __future__ import annotations

import json

import pytest


def test_chain_writes_every_stage_and_distils_from_the_input(tmp_path, digits, digits_model_path):
    """`edgeslim compress` is the pipeline without training or export: one orchestrator, one layout."""
    from edgeslim.modelio import load_keras_model, read_recipe
    from edgeslim.pipeline import run_pipeline
    from edgeslim.pipeline.config import validate

    before = digits_model_path.read_bytes()
    stages = [
        {"prune": {"sparsity": 0.5, "mode": "structured", "finetune": {"epochs": 1}}},
        {"separable": {"rank": 2, "finetune": {"epochs": 1}}},
        {"quantize": {"per_channel": False}},
    ]
    config = validate({"model": str(digits_model_path), "compress": stages, "export": {"targets": []}})
    result = run_pipeline(config, tmp_path, progress=False)
    assert digits_model_path.read_bytes() == before  # the user's model is never touched
    assert [s.name for s in result.steps] == ["train", "01-prune", "02-separable", "03-quantize", "report"]
    stages = result.report["stages"]
    for stage in stages[1:]:
        folder = tmp_path / stage["name"]
        record = json.loads((folder / "record.json").read_text())
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["macs"] == record["totals"]["macs_after"]
        assert load_keras_model(folder / "model.keras").count_params() == metrics["params"]
    assert stages[1]["finetune"]["metrics"]["distilled"]  # structural stages are fine-tuned
    assert not stages[3]["finetuned"] and stages[3]["deployed"]["quantization"] == "int8"
    # The recipe travels inside the model file, so a later `edgeslim export` honours it.
    assert read_recipe(tmp_path / "03-quantize" / "model.keras").per_channel is False
    assert stages[-1]["macs"] < stages[0]["macs"] / 2 and stages[-1]["deployed"]["accuracy"] > 0.8


def test_cli_compress(tmp_path, digits_model_path, capsys):
    from edgeslim.cli import main

    out = tmp_path / "run"
    code = main(
        [
            "compress",
            str(digits_model_path),
            "--stage",
            "prune:sparsity=0.25,mode=structured",
            "--stage",
            "lowrank:energy=0.9",
            "--finetune-epochs",
            "1",
            "--out",
            str(out),
            "--json",
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert [item["record"]["stage"] for item in printed] == ["prune", "lowrank"]
    assert all(item["metrics"]["accuracy"] > 0.5 for item in printed)
    assert (out / "01-prune" / "model.keras").is_file() and (out / "02-lowrank" / "record.json").is_file()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--stage", "prune:sparsity=1.5"], "prune.sparsity: must be in [0, 1)"),
        (["--stage", "shrink"], "unknown stage 'shrink'"),
    ],
)
def test_cli_rejects_bad_stages_before_loading_anything(tmp_path, args, message, capsys):
    from edgeslim.cli import main

    code = main(["compress", str(tmp_path / "missing.keras"), *args])
    assert code == 2 and message in capsys.readouterr().err.replace("\n", " ")
