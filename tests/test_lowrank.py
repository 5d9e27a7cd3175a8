"""Low-rank factorization: the SVD splits, the rank rules, the skip rule and fewer multiplications."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from edgeslim.analysis.keras_model import analyze_keras
from edgeslim.compress import LowRankStage
from edgeslim.compress import factorize as fz
from edgeslim.train.finetune import accuracy


@pytest.mark.parametrize("strides,padding,dilation", [(1, "valid", 1), (2, "same", 1), (1, "same", 2)])
def test_channel_and_spatial_splits_are_exact_at_full_rank(strides, padding, dilation):
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 4, 5)).astype("float32")
    x = rng.random((2, 11, 11, 4)).astype("float32")
    conv = keras.ops.conv
    reference = conv(x, kernel, strides=strides, padding=padding, dilation_rate=dilation)
    a, b = fz.channel_factors(kernel, 5)
    channel = conv(conv(x, a, strides=strides, padding=padding, dilation_rate=dilation), b)
    v, h = fz.spatial_factors(kernel, 3 * 4)
    spatial = conv(
        conv(x, v, strides=(strides, 1), padding=padding, dilation_rate=(dilation, 1)),
        h,
        strides=(1, strides),
        padding=padding,
        dilation_rate=(1, dilation),
    )
    assert np.max(np.abs(np.asarray(channel) - np.asarray(reference))) < 1e-4
    assert np.max(np.abs(np.asarray(spatial) - np.asarray(reference))) < 1e-4


def test_rank_rules():
    sigma = np.array([4.0, 2.0, 1.0, 0.5])
    energy = np.cumsum(sigma**2) / np.sum(sigma**2)  # 0.754, 0.943, 0.990, 1.0
    assert fz.choose_rank(sigma, energy=0.9) == 2 and energy[1] >= 0.9 > energy[0]
    assert fz.choose_rank(sigma, energy=1.0) == 4
    assert fz.choose_rank(sigma, rank=3) == 3 and fz.choose_rank(sigma, rank=10) == 4
    assert fz.truncation_error(sigma, 2) == pytest.approx(np.sqrt((1 + 0.25) / np.sum(sigma**2)))
    assert fz.rank_for_error(sigma, fz.truncation_error(sigma, 3)) == 3


def test_lowrank_on_mnist_cuts_multiplications(mnist, mnist_model):
    before = [np.array(w) for w in mnist_model.get_weights()]
    result = LowRankStage(energy=0.9).apply(mnist_model, mnist)
    assert all(np.array_equal(a, b) for a, b in zip(before, mnist_model.get_weights(), strict=True))
    record = result.record
    assert (
        analyze_keras(result.model).total_macs == record.totals["macs_after"] < record.totals["macs_before"]
    )
    dense1 = record.row("dense1")  # 400 -> 120, factorized through K units
    assert dense1.action == "factorized" and dense1.params_after == (400 + 120) * dense1.rank + 120
    first = result.model.get_layer("dense1_lr1")
    second = result.model.get_layer("dense1_lr2")
    assert first.units == dense1.rank and not first.use_bias and first.activation.__name__ == "linear"
    assert second.activation.__name__ == "tanh" and second.units == 120
    for row in record.changed:
        assert (row.macs_after < row.macs_before) and row.error <= np.sqrt(1 - 0.9) + 1e-6
        assert row.detail["scheme"] in ("channel", "spatial", "dense")
    assert accuracy(result.model, mnist.x_test, mnist.y_test) > 0.8


def test_auto_picks_the_cheaper_conv_split(digits, digits_model):
    auto = LowRankStage(ratio=0.3, layers="conv2").apply(digits_model, digits).record.row("conv2")
    channel = (
        LowRankStage(ratio=0.3, layers="conv2", method="channel")
        .apply(digits_model, digits)
        .record.row("conv2")
    )
    spatial = (
        LowRankStage(ratio=0.3, layers="conv2", method="spatial")
        .apply(digits_model, digits)
        .record.row("conv2")
    )
    assert (
        auto.macs_after == min(channel.macs_after, spatial.macs_after) or auto.error <= channel.error + 1e-6
    )
    assert auto.detail["scheme"] in ("channel", "spatial")


def test_no_factorization_without_a_saving(digits, digits_model):
    record = LowRankStage(rank=64).apply(digits_model, digits).record
    for row in record.layers:
        assert row.action == "skipped"
        if row.name == "output":  # the classifier is left whole unless asked for
            assert "model output" in row.reason
        else:
            assert ">= MN" in row.reason and "would not save" in row.reason
    assert record.totals["params_after"] == record.totals["params_before"]
    tiny = LowRankStage(ratio=0.01).apply(digits_model, digits).record
    assert "leaves no rank" in tiny.row("conv1").reason
    output = LowRankStage(rank=4, keep_output=False).apply(digits_model, digits).record.row("output")
    assert output.action == "factorized" and output.rank == 4
