"""Pruning on real data: unstructured (exact zeros, gradual schedule) and structured (a smaller model)."""

from __future__ import annotations

import numpy as np
import pytest
from test_compress_graph import trained, weights_of

from edgeslim.analysis.keras_model import analyze_keras
from edgeslim.compress import PruneStage
from edgeslim.compress.magnitude import polynomial_sparsity
from edgeslim.layers.sparsity import kernel_variables
from edgeslim.train.config import FinetuneConfig
from edgeslim.train.finetune import accuracy, finetune


def kernel_sparsity(layer) -> float:
    arrays = [np.asarray(v) for v in kernel_variables(layer)]
    return 1.0 - sum(np.count_nonzero(a) for a in arrays) / sum(a.size for a in arrays)


def test_polynomial_schedule_formula():
    assert polynomial_sparsity(0, 100, 0.0, 0.8) == pytest.approx(0.0)
    assert polynomial_sparsity(50, 100, 0.0, 0.8) == pytest.approx(0.8 + (0.0 - 0.8) * 0.5**3)
    assert polynomial_sparsity(100, 100, 0.1, 0.8) == pytest.approx(0.8)
    assert polynomial_sparsity(500, 100, 0.1, 0.8) == pytest.approx(0.8)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_unstructured_reaches_target_and_saves_exact_zeros(mnist, mnist_model, scope, tmp_path):
    from edgeslim.modelio import load_keras_model, save_keras_model

    before = weights_of(mnist_model)
    result = PruneStage(sparsity=0.8, scope=scope).apply(mnist_model, mnist)
    assert all(np.array_equal(a, b) for a, b in zip(before, mnist_model.get_weights(), strict=True))
    record = result.record
    assert record.extra["kernel_sparsity"] == pytest.approx(0.8, abs=0.01)
    for row in record.changed:
        # The record's sparsity is measured on the model, not copied from the target.
        assert row.sparsity == pytest.approx(kernel_sparsity(result.model.get_layer(row.name)))
        if scope == "layer":
            assert abs(row.sparsity - 0.8) <= 0.01
    reloaded = load_keras_model(save_keras_model(result.model, tmp_path / "pruned.keras"))
    assert kernel_sparsity(reloaded.get_layer("dense1")) == pytest.approx(
        kernel_sparsity(result.model.get_layer("dense1"))
    )
    assert accuracy(reloaded, mnist.x_test, mnist.y_test) > 0.5


def test_gradual_pruning_during_finetuning_keeps_masks(digits, digits_model):
    stage = PruneStage(sparsity=0.7, per_layer="dense1:0.9", frequency=5)
    result = stage.run(digits_model, digits, FinetuneConfig(epochs=2), finetuner=finetune)
    for row in result.record.changed:
        target = 0.9 if row.name == "dense1" else 0.7
        assert abs(row.sparsity - target) <= 0.01, row
    schedule = result.record.extra["schedule"]
    targets = [s for _, s in schedule["updates"]]
    assert targets == sorted(targets) and len(targets) > 3  # it ramped up, step by step
    assert result.record.finetune["metrics"]["test_accuracy"] > 0.85
    assert accuracy(result.model, digits.x_test, digits.y_test) == pytest.approx(
        result.record.finetune["metrics"]["test_accuracy"]
    )


def test_structured_pruning_shrinks_lenet5_on_mnist(mnist, mnist_model):
    result = PruneStage(sparsity=0.5, mode="structured").apply(mnist_model, mnist)
    stats = analyze_keras(result.model)
    totals = result.record.totals
    assert stats.total_macs == totals["macs_after"] < 0.6 * totals["macs_before"]
    assert stats.total_params == totals["params_after"] < totals["params_before"]
    assert result.model.get_layer("conv1").filters == 3 and result.model.get_layer("dense1").units == 60
    assert result.model.get_layer("output").units == 10
    assert result.record.row("output").action == "resized"
    # The regression refit keeps the model close before any fine-tuning.
    assert (
        accuracy(result.model, mnist.x_test, mnist.y_test)
        > accuracy(mnist_model, mnist.x_test, mnist.y_test) - 0.1
    )


def test_structured_pruning_on_functional_model_with_add_concat_depthwise(digits):
    model = trained("functional", digits)
    result = PruneStage(sparsity=0.5, mode="structured").apply(model, digits)
    new = result.model
    # The Add ties stem and pw: pruned together, and the depthwise/BN in between follow.
    assert new.get_layer("stem").filters == new.get_layer("pw").filters == 4
    assert new.get_layer("dw").kernel.shape[-2] == 4 and new.get_layer("dw_bn").gamma.shape[0] == 4
    assert new.get_layer("sep").filters == 4 and new.get_layer("side").filters == 2
    assert new.get_layer("conv3").kernel.shape[-2] == 6  # the concatenation of both shrunk branches
    assert new.get_layer("dense1").kernel.shape[0] == 6 * 4  # Flatten -> Dense index map
    assert new.output_shape == model.output_shape
    assert result.record.totals["macs_after"] < result.record.totals["macs_before"]
    # Half of every layer of a tiny model is a lot, but the refit keeps it far from chance.
    unrepaired = PruneStage(sparsity=0.5, mode="structured", compensate="none").apply(model, digits).model
    assert accuracy(new, digits.x_test, digits.y_test) > max(
        0.3, accuracy(unrepaired, digits.x_test, digits.y_test)
    )


@pytest.mark.parametrize("criterion,scope", [("bn", "layer"), ("l2", "global")])
def test_structured_criteria_and_global_scope_run(digits, criterion, scope):
    model = trained("functional", digits)
    result = PruneStage(sparsity=0.3, mode="structured", criterion=criterion, scope=scope).apply(
        model, digits
    )
    assert result.model.predict(digits.x_test[:8], verbose=0).shape == (8, 10)
    assert result.record.totals["params_after"] < result.record.totals["params_before"]
    output = result.record.row("output")
    assert output.action == "resized" and output.detail["channels_after"] == 10
