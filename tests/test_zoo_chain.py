"""A zoo model through the default chain with its fine-tuning, on small real data: MNIST digits
repeated over three colour channels for cifarnet (28x28: its valid convolutions and pooling need about
that much). The helper also halves and pads images to 16x16 for BatchNorm models, which train longer.
Every MLPerf Tiny architecture (ResNet-8 among them) through every stage to firmware: test_mlperf_tiny;
DS-CNN trained on keyword-spotting-shaped data: test_zoo_rows."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from edgeslim.analysis.keras_model import analyze_keras
from edgeslim.compress.registry import build_stage
from edgeslim.export import export_model
from edgeslim.pipeline import load_config
from edgeslim.train.config import FinetuneConfig, TrainConfig
from edgeslim.train.finetune import finetune
from edgeslim.train.fit import train_model
from edgeslim.train.zoo import build_model

SAMPLES = {"train": 2048, "val": 256, "test": 256}  # a model without BatchNorm trains on half (below)
# BatchNorm's moving variance starts at 1 and moves 1 % per step, while these models' early activations
# vary by about 0.005: inference is only right once a few hundred steps have washed the 1 out.
TRAIN = {
    True: TrainConfig(epochs=4, batch_size=16, optimizer="adam", learning_rate=0.002, seed=0),  # with BN
    False: TrainConfig(epochs=3, batch_size=32, optimizer="adam", learning_rate=0.002, seed=0),
}


def small(mnist, side: int, channels: int, train: int):
    def shape(x):
        if side != 28:
            x = np.pad(x[:, ::2, ::2], ((0, 0), (1, 1), (1, 1), (0, 0)))
        return np.repeat(x, channels, axis=-1)

    return replace(
        mnist,
        x_train=shape(mnist.x_train[:train]),
        y_train=mnist.y_train[:train],
        x_val=shape(mnist.x_val[: SAMPLES["val"]]),
        y_val=mnist.y_val[: SAMPLES["val"]],
        x_test=shape(mnist.x_test[: SAMPLES["test"]]),
        y_test=mnist.y_test[: SAMPLES["test"]],
    )


@pytest.mark.parametrize(
    ("name", "side", "channels", "batchnorm"),
    [("cifarnet", 28, 3, False)],
)
def test_the_default_chain_compresses_the_model_and_it_exports(
    name, side, channels, batchnorm, mnist, tmp_path
):
    data = small(mnist, side, channels, SAMPLES["train"] if batchnorm else SAMPLES["train"] // 2)
    model = train_model(build_model(name, data.input_shape, 10), data, TRAIN[batchnorm], progress=False).model
    teacher, current = model, model
    for spec in load_config().stages:
        stage = build_stage(spec.name, **spec.params)
        tune = FinetuneConfig(epochs=1) if spec.finetune else None
        result = stage.run(current, data, tune, teacher=teacher, finetuner=finetune)
        for row in result.record.skipped:
            assert row.reason, (name, spec.name, row.name)
        current = result.model
    before, after = analyze_keras(model), analyze_keras(current)
    assert after.total_macs < before.total_macs and after.total_params < before.total_params
    [artifact] = export_model(current, data, "cpu", out_dir=tmp_path, formats=["tflite"], strict=False)
    verification = artifact.sidecar["verification"]
    assert artifact.sidecar["quantization"] == "int8" and verification["agreement"] >= 0.9
    assert verification["accuracy"] > 0.5  # four short epochs, then four stages: far above chance
