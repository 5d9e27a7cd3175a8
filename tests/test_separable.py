"""Depthwise-separable substitution: exact at full rank, cheaper at low rank, repaired by distillation."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

from edgeslim.analysis.keras_model import analyze_keras
from edgeslim.compress import SeparableStage
from edgeslim.layers import Call, handler_for
from edgeslim.layers.conv import separable_factors
from edgeslim.train.config import FinetuneConfig
from edgeslim.train.finetune import accuracy, finetune


def max_output_difference(a: keras.Model, b: keras.Model, x: np.ndarray) -> float:
    return float(np.max(np.abs(a.predict(x, verbose=0) - b.predict(x, verbose=0))))


@pytest.mark.parametrize("which", ["mnist", "digits"])
def test_full_rank_substitution_is_exact(which, request):
    data = request.getfixturevalue(which)
    model = request.getfixturevalue(f"{which}_model")
    result = SeparableStage(rank=25, require_saving=False).apply(model, data)
    replaced = [row for row in result.record.layers if row.action == "replaced"]
    assert len(replaced) == 2  # both convolutions of lenet5 / digits_cnn
    for row in replaced:
        assert row.rank == row.detail["exact_rank"] and row.error < 1e-6
    # The whole model's output, before any fine-tuning, on real images.
    assert max_output_difference(model, result.model, data.x_test[:500]) < 1e-4


def test_strides_padding_dilation_bias_activation_are_kept():
    inputs = keras.Input((12, 12, 3))
    x = layers.Conv2D(10, 3, strides=2, padding="same", activation="relu", name="strided")(inputs)
    x = layers.Conv2D(12, 3, dilation_rate=2, padding="same", use_bias=False, name="dilated")(x)
    x = layers.Conv2D(4, (3, 2), padding="valid", activation="tanh", name="rect")(x)
    model = keras.Model(inputs, layers.GlobalAveragePooling2D()(x))
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    result = SeparableStage(rank=9, require_saving=False).apply(model, None)
    new = result.model
    assert new.get_layer("strided_dw").strides == (2, 2) and new.get_layer("strided_dw").padding == "same"
    assert new.get_layer("dilated_dw").dilation_rate == (2, 2) and not new.get_layer("dilated_pw").use_bias
    assert new.get_layer("rect_pw").activation.__name__ == "tanh"
    assert new.get_layer("rect_dw").kernel.shape == (3, 2, 12, 4)  # r capped at min(K_h K_w, D_out) = 4
    x = rng.random((16, 12, 12, 3)).astype("float32")
    assert max_output_difference(model, new, x) < 1e-4


def test_closed_form_is_the_best_rank_r_approximation_per_channel():
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(3, 3, 4, 16)).astype("float32")
    conv = layers.Conv2D(16, 3)
    conv.build((None, 8, 8, 4))
    conv.set_weights([kernel, np.zeros(16, "float32")])
    plan = handler_for(conv).separation(Call(((None, 8, 8, 4),), ((None, 6, 6, 16),)))
    for r in (1, 3, 9):
        depthwise, pointwise = separable_factors(kernel, r)
        error = plan.error(r)
        rebuilt = np.einsum("hwcj,cjo->hwco", depthwise, pointwise.reshape(4, r, 16))
        for c in range(4):
            s = np.linalg.svd(kernel[:, :, c, :].reshape(9, 16), compute_uv=False)
            residual = np.linalg.norm((kernel - rebuilt)[:, :, c, :])
            assert residual == pytest.approx(np.sqrt(np.sum(s[r:] ** 2)), rel=1e-4, abs=1e-5)
        assert error == pytest.approx(
            np.linalg.norm(kernel - rebuilt) / np.linalg.norm(kernel), rel=1e-4, abs=1e-6
        )


def test_low_rank_cuts_multiplications_and_reports_each_layer(mnist, mnist_model):
    result = SeparableStage(rank=2).apply(mnist_model, mnist)
    record = result.record
    assert (
        analyze_keras(result.model).total_macs == record.totals["macs_after"] < record.totals["macs_before"]
    )
    conv2 = record.row("conv2")  # 5x5x6x16 on 10x10: 2 depthwise kernels per channel + pointwise
    assert conv2.action == "replaced" and conv2.rank == 2
    assert conv2.macs_before == 100 * 25 * 6 * 16 and conv2.macs_after == 100 * (25 * 6 * 2 + 12 * 16)
    assert 0 < conv2.error < 1 and 0 < conv2.detail["output_error"] < 1.5
    assert "no spatial kernel to separate" in record.row("dense1").reason


def test_distillation_repairs_a_rank_one_substitution(digits, digits_model):
    stage = SeparableStage(rank=1)
    before = accuracy(stage.apply(digits_model, digits).model, digits.x_val, digits.y_val)
    result = stage.run(digits_model, digits, FinetuneConfig(epochs=3), finetuner=finetune)
    metrics = result.record.finetune["metrics"]
    assert metrics["distilled"] and metrics["val_accuracy_before"] == pytest.approx(before)
    assert metrics["val_accuracy"] > before and metrics["val_accuracy"] > 0.85
