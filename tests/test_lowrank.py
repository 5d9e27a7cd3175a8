"""Low-rank factorization: the SVD splits, the rank rules, the skip rule and fewer multiplications."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from edgeslim.analysis.keras_model import analyze_keras
from edgeslim.compress import LowRankStage
from edgeslim.compress.lowrank import rank_for_energy, rank_for_error
from edgeslim.layers import Factorization
from edgeslim.layers.graph import ModelGraph
from edgeslim.train.finetune import accuracy


@pytest.mark.parametrize("strides,padding,dilation", [(1, "valid", 1), (2, "same", 1), (1, "same", 2)])
def test_channel_and_spatial_splits_are_exact_at_full_rank(strides, padding, dilation):
    rng = np.random.default_rng(0)
    inputs = keras.Input((11, 11, 4))
    conv = keras.layers.Conv2D(5, 3, strides=strides, padding=padding, dilation_rate=dilation, name="conv")
    model = keras.Model(inputs, conv(inputs))
    conv.set_weights([rng.normal(size=(3, 3, 4, 5)).astype("float32"), rng.normal(size=5).astype("float32")])
    x = rng.random((2, 11, 11, 4)).astype("float32")
    graph = ModelGraph(model)
    node = graph.nodes["conv"]
    options = {f.scheme: f for f in node.handler.factorizations(node.call_shapes()[0])}
    for scheme, rank in (("channel", 5), ("spatial", 3 * 4)):
        assert options[scheme].error(rank) == pytest.approx(0.0, abs=1e-6)
        new = graph.rebuild({"conv": node.handler.factorize(scheme, rank, {"conv"})})
        assert np.max(np.abs(new.predict(x, verbose=0) - model.predict(x, verbose=0))) < 1e-4
        # The price quoted before building equals what the analysis counts on the built layers.
        assert analyze_keras(new).total_macs == options[scheme].macs(rank)


def test_rank_rules():
    sigma = np.array([4.0, 2.0, 1.0, 0.5])
    energy = np.cumsum(sigma**2) / np.sum(sigma**2)  # 0.754, 0.943, 0.990, 1.0
    option = Factorization("dense", sigma, 4, 4, 4, 4, 4, 4, 16, 16)
    assert rank_for_energy(sigma, 0.9) == 2 and energy[1] >= 0.9 > energy[0]
    assert rank_for_energy(sigma, 1.0) == 4
    assert LowRankStage(rank=3).choose_rank(option) == 3 and LowRankStage(rank=10).choose_rank(option) == 4
    assert LowRankStage(ratio=0.5).choose_rank(option) == 1  # floor(0.5 * 16 / 8)
    assert option.error(2) == pytest.approx(np.sqrt((1 + 0.25) / np.sum(sigma**2)))
    assert rank_for_error(option, option.error(3)) == 3


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
