"""A chain of stages with fine-tuning, written stage by stage; and the `edgeslim compress` command."""

from __future__ import annotations

import json

import pytest

from edgeslim.compress import parse_stage_spec
from edgeslim.compress.chain import run_chain
from edgeslim.train.finetune import FinetuneConfig


def test_chain_writes_every_stage_and_distils_from_the_input(tmp_path, digits, digits_model):
    from edgeslim.modelio import load_keras_model

    stages = [
        parse_stage_spec(s) for s in ("prune:sparsity=0.5,mode=structured", "separable:rank=2", "quantize")
    ]
    before = [w.copy() for w in digits_model.get_weights()]
    results = run_chain(
        digits_model, digits, stages, FinetuneConfig(epochs=1), out_dir=tmp_path, progress=False
    )
    assert all((a == b).all() for a, b in zip(before, digits_model.get_weights(), strict=True))
    assert [r.record.stage for r in results] == ["prune", "separable", "quantize"]
    for index, result in enumerate(results, start=1):
        folder = tmp_path / f"{index:02d}-{result.record.stage}"
        record = json.loads((folder / "record.json").read_text())
        metrics = json.loads((folder / "metrics.json").read_text())
        assert record["stage"] == result.record.stage and metrics["macs"] == record["totals"]["macs_after"]
        assert load_keras_model(folder / "model.keras").count_params() == metrics["params"]
    assert results[0].record.finetune["metrics"]["distilled"]  # structural stages are fine-tuned
    assert results[2].record.finetune is None and results[2].record.quantization["mode"] == "int8"
    summary = json.loads((tmp_path / "chain.json").read_text())
    assert summary["stages"][-1]["metrics"]["macs"] < summary["input"]["macs"] / 2
    assert summary["stages"][-1]["metrics"]["test_accuracy"] > 0.8


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
