"""The quantize stage: recipes, BatchNorm folding, and quantization-aware training checked in LiteRT."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers
from test_compress_graph import trained

from edgeslim.compress import QuantizeStage, parse_stage_spec
from edgeslim.export import export_model
from edgeslim.layers import handler_for
from edgeslim.layers.fakequant import FakeQuant, quantize_weights_np
from edgeslim.train.config import FinetuneConfig
from edgeslim.train.finetune import accuracy, finetune


def deployed_accuracy(model, data, recipe, out) -> float:
    """Accuracy of the file the exporter ships, in LiteRT (not a private converter)."""
    [artifact] = export_model(model, data, "cpu", out_dir=out, formats=["tflite"], quant=recipe, strict=False)
    return artifact.sidecar["verification"]["accuracy"]


@pytest.mark.parametrize(
    "spec,mode",
    [
        ("quantize", "int8"),
        ("quantize:mode=float16", "float16"),
        ("quantize:mode=dynamic", "dynamic"),
        ("quantize:mode=int16x8", "int16x8"),
    ],
)
def test_the_record_carries_the_recipe(digits, digits_model, spec, mode):
    record = parse_stage_spec(spec).apply(digits_model, digits).record
    assert record.quantization == {
        "mode": mode,
        "per_channel": True,
        "calib_samples": 500,
        "io_dtype": "int8",
        "calibration": "minmax",
    }
    rows = [row for row in record.layers if row.action == "quantized"]
    assert len(rows) == 4 and all(0 <= row.error < 0.05 for row in rows)


def test_batchnorm_folds_exactly(digits, tmp_path):
    model = trained("functional", digits)
    result = QuantizeStage().apply(model, digits)
    names = [layer.name for layer in result.model.layers]
    assert "stem_bn" not in names and "dw_bn" not in names
    assert result.record.row("stem_bn").reason == "folded into stem"
    x = digits.x_test[:200]
    assert np.max(np.abs(model.predict(x, verbose=0) - result.model.predict(x, verbose=0))) < 1e-4
    # A BN after an activation cannot fold; it stays, with the reason.
    seq = QuantizeStage().apply(trained("sequential", digits), digits).record.row("bn1")
    assert seq.action == "skipped" and "relu" in seq.reason
    shipped = deployed_accuracy(result.model, digits, result.record.quantization, tmp_path)
    assert shipped >= accuracy(model, digits.x_test, digits.y_test) - 0.03


def imbalanced_cnn(mnist) -> keras.Model:
    """A small MNIST CNN, then one channel of conv1 scaled up 500x and conv2's weights on it down 500x.

    ReLU commutes with positive scaling, so the float model is the same function, but the per-tensor
    int8 range of conv1's output is now set by that one channel, as BatchNorm folding can leave
    channel ranges in MobileNet-style models (Nagel et al., 2019): the case post-training
    quantization loses, and training with the quantization in the loop can repair.
    """
    from edgeslim.train.config import TrainConfig
    from edgeslim.train.fit import train_model

    model = keras.Sequential(
        [
            keras.Input(mnist.input_shape),
            layers.Conv2D(16, 3, activation="relu", name="conv1"),
            layers.Conv2D(32, 3, activation="relu", name="conv2"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(64, activation="relu", name="dense1"),
            layers.Dense(10, activation="softmax", name="output"),
        ]
    )
    config = TrainConfig(epochs=3, batch_size=64, optimizer="adam", learning_rate=0.002, seed=0)
    model = train_model(model, mnist, config, progress=False).model
    kernel1, bias1, kernel2, *rest = model.get_weights()
    kernel1[..., 0] *= 500.0
    bias1[0] *= 500.0
    kernel2[:, :, 0, :] /= 500.0
    model.set_weights([kernel1, bias1, kernel2, *rest])
    return model


def test_qat_recovers_what_post_training_int8_loses(mnist, tmp_path):
    model = imbalanced_cnn(mnist)
    float_acc = accuracy(model, mnist.x_test, mnist.y_test)
    stage = QuantizeStage(qat=True)
    recipe = stage.recipe()
    ptq = deployed_accuracy(model, mnist, recipe, tmp_path / "ptq")
    assert float_acc - ptq >= 0.015, (float_acc, ptq)  # post-training int8 visibly loses accuracy
    result = stage.run(model, mnist, FinetuneConfig(epochs=2, distill=False), finetuner=finetune)
    qat = deployed_accuracy(result.model, mnist, recipe, tmp_path / "qat")
    assert qat - ptq >= 0.5 * (float_acc - ptq), (float_acc, ptq, qat)  # QAT wins back at least half
    # What comes back is a standard model whose kernels already sit on LiteRT's int8 grid.
    assert {type(layer).__module__.split(".")[0] for layer in result.model.layers} == {"keras"}
    for layer in result.model.layers:
        if hasattr(layer, "kernel"):
            kernel = np.asarray(layer.kernel)
            axes = handler_for(layer).quant_axes(0, True)
            assert np.allclose(quantize_weights_np(kernel, axes), kernel, atol=1e-6)
    info = result.record.extra["qat"]
    assert info["fake_quant_points"] == 5 and info["activation_ranges"]["conv1_fq"][1] > 10


def test_fake_quant_layers_save_and_load_in_safe_mode(tmp_path, digits, digits_model):
    from edgeslim.compress import qat
    from edgeslim.modelio import load_keras_model, save_keras_model

    trainer, _ = qat.build_qat_model(digits_model)
    assert any(isinstance(layer, FakeQuant) for layer in trainer.layers)
    qat.RangeCalibration(trainer, digits.representative(64)).calibrate()
    loaded = load_keras_model(save_keras_model(trainer, tmp_path / "qat.keras"))
    x = digits.x_test[:32]
    assert np.allclose(trainer.predict(x, verbose=0), loaded.predict(x, verbose=0), atol=1e-6)


def test_qat_without_a_finetuner_says_so(digits, digits_model):
    result = QuantizeStage(qat=True).run(digits_model, digits, None)
    assert result.record.extra["qat"]["ran"] is False and "QAT not run" in result.record.notes[0]


def test_qat_runs_by_default_epochs_without_a_finetune_config(digits, digits_model):
    result = QuantizeStage(qat=True, qat_epochs=1).run(digits_model, digits, None, finetuner=finetune)
    assert result.record.extra["qat"]["ran"] and result.record.extra["qat"]["epochs"] == 1
    assert result.record.finetune is not None and "QAT ran" in result.record.notes[0]
