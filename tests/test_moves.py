"""Architecture moves (edgeslim.compress.moves) on small models: each applied, exact where it should be,
refused with a reason where it cannot apply, priced by the cost model before anything is trained; the
`architecture` stage that carries them through `edgeslim compress` and a pipeline."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

from edgeslim.compress.moves import FAMILIES, Move, apply_moves, candidates, why_not
from edgeslim.compress.moves.base import area_matrix, resample_kernel
from edgeslim.errors import ConfigError


def model_of(shape, *stack) -> keras.Model:
    keras.utils.set_random_seed(0)
    x = inputs = keras.Input(shape)
    for layer in stack:
        x = layer(x)
    return keras.Model(inputs, x)


def layer_output(model: keras.Model, name: str, x: np.ndarray) -> np.ndarray:
    return keras.Model(model.inputs, model.get_layer(name).output).predict(x, verbose=0)


def constant_images(n: int, shape) -> np.ndarray:
    """Each image one value per channel at every position: a feature map a 1x1 conv keeps constant."""
    rng = np.random.default_rng(0)
    return np.broadcast_to(rng.normal(size=(n, 1, 1, shape[-1])), (n, *shape)).astype("float32")


def test_a_stride_keeps_every_other_position_and_the_classifier_is_repaired():
    """1x1 conv, stride 2: the conv's output is the old one subsampled; on a constant map the Dense
    reading the flattened, now quarter-size map gives the old outputs (its kernel summed per block)."""
    model = model_of((8, 8, 3), layers.Conv2D(4, 1, name="conv"), layers.Flatten(name="flat"),
                     layers.Dense(5, name="dense"))  # fmt: skip
    moved = apply_moves(model, [Move("stride", "conv")])
    x = np.random.default_rng(1).normal(size=(4, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(
        layer_output(moved, "conv", x), layer_output(model, "conv", x)[:, ::2, ::2], atol=1e-5
    )
    assert moved.get_layer("dense").kernel.shape == (4 * 4 * 4, 5)
    flat = constant_images(4, (8, 8, 3))
    np.testing.assert_allclose(
        moved.predict(flat, verbose=0), model.predict(flat, verbose=0), rtol=1e-4, atol=1e-4
    )
    assert model.get_layer("conv").strides == (1, 1)  # the input model is never modified


def test_global_pooling_is_exact_on_a_constant_map_and_shrinks_the_classifier():
    model = model_of((6, 6, 2), layers.Conv2D(3, 1, name="conv"), layers.Flatten(name="flat"),
                     layers.Dense(4, name="dense"))  # fmt: skip
    moved = apply_moves(model, [Move("global_pool", "flat")])
    assert moved.get_layer("dense").kernel.shape == (3, 4)
    x = constant_images(5, (6, 6, 2))
    np.testing.assert_allclose(moved.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-4, atol=1e-4)


def test_a_cut_kernel_is_exact_when_its_ring_is_zero():
    model = model_of((9, 9, 1), layers.Conv2D(2, 5, padding="same", name="conv"),
                     layers.GlobalAveragePooling2D(), layers.Dense(3))  # fmt: skip
    kernel, bias = model.get_layer("conv").get_weights()
    ring = np.zeros_like(kernel)
    ring[1:4, 1:4] = kernel[1:4, 1:4]
    model.get_layer("conv").set_weights([ring, bias])
    moved = apply_moves(model, [Move("kernel", "conv", 3)])
    assert moved.get_layer("conv").kernel_size == (3, 3)
    x = np.random.default_rng(2).normal(size=(3, 9, 9, 1)).astype("float32")
    np.testing.assert_allclose(moved.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_pooling_padding_dropping_and_a_smaller_input_apply_to_a_cnn():
    model = model_of((16, 16, 1), layers.Conv2D(4, 3, activation="relu", name="conv1"),
                     layers.Conv2D(4, 3, padding="same", activation="relu", name="conv2"),
                     layers.Conv2D(8, 3, activation="relu", name="conv3"), layers.Flatten(name="flat"),
                     layers.Dense(10, activation="softmax", name="out"))  # fmt: skip
    found = {m.label() for m in candidates(model)}
    assert {
        "pool:conv1",
        "stride:conv1",
        "padding:conv1",
        "drop:conv2",
        "input:input",
        "global_pool:flat",
    } <= found
    x = np.random.default_rng(3).random((2, 16, 16, 1)).astype("float32")
    pooled = apply_moves(model, [Move("pool", "conv1")])
    assert pooled.get_layer("conv2").output.shape[1:3] == (7, 7)
    padded = apply_moves(model, [Move("padding", "conv1")])
    assert padded.get_layer("conv1").output.shape[1:3] == (16, 16)
    dropped = apply_moves(model, [Move("drop", "conv2")])
    assert "conv2" not in [layer.name for layer in dropped.layers]
    direct = model.get_layer("conv3")(layer_output(model, "conv1", x))  # conv3 now reads conv1 directly
    np.testing.assert_allclose(layer_output(dropped, "conv3", x), np.asarray(direct), atol=1e-5)
    small = apply_moves(model, [Move("input", "")])
    assert small.get_layer("conv1").input.shape[1:3] == (8, 8) and small.input_shape == model.input_shape
    for moved in (pooled, padded, dropped, small):
        assert moved.predict(x, verbose=0).shape == (2, 10)


def test_moves_combine_where_one_alone_cannot_apply():
    """A stride on MNISTnet3's 7x7 conv leaves the valid convs after it nothing to convolve; made
    `same` first, they take it."""
    from edgeslim.train.zoo import build_model

    model = build_model("mnistnet3", (28, 28, 1), 10)
    assert "stride:conv1" not in {m.label() for m in candidates(model)}
    with pytest.raises(ConfigError, match="stride:conv1 does not apply: the layers after it cannot take"):
        apply_moves(model, [Move("stride", "conv1")])
    moves = [Move("padding", n) for n in ("conv2", "conv3", "conv4")] + [Move("stride", "conv1")]
    moved = apply_moves(model, [*moves, Move("global_pool", "flatten")])
    assert (
        moved.get_layer("conv1").output.shape[1:3] == (11, 11) and moved.count_params() < model.count_params()
    )


def test_a_move_that_cannot_apply_says_why():
    model = model_of((8, 8, 1), layers.Conv2D(2, 3, name="conv"), layers.Flatten(name="flat"),
                     layers.Dense(3, name="dense"))  # fmt: skip
    assert "only a 2-D convolution takes a stride" in why_not(model, Move("stride", "dense"))
    assert "must be odd" in why_not(model, Move("kernel", "conv", 1))
    assert "not its input's" in why_not(model, Move("drop", "conv"))
    assert "the move replaces a Flatten" in why_not(model, Move("global_pool", "conv"))
    assert "no layer" in why_not(model, Move("pool", "nope"))
    with pytest.raises(ConfigError, match="unknown family 'bigger'"):
        apply_moves(model, [Move("bigger", "conv")])
    joined = keras.Input((8, 8, 2))
    a = layers.Conv2D(2, 3, padding="same", name="a")(joined)
    residual = keras.Model(joined, layers.Flatten()(layers.Add(name="add")([a, joined])))
    assert "Add add joins it" in why_not(residual, Move("stride", "a"))


def test_moves_parse_and_label_alike():
    for text in ("stride:conv1", "kernel:conv2=3", "global_pool:flatten", "input:input"):
        assert Move.parse(text).label() == text
    for bad in ("stride", ":conv1", "kernel:conv2=x"):
        with pytest.raises(ConfigError):
            Move.parse(bad)
    assert set(FAMILIES) == {"stride", "pool", "input", "kernel", "padding", "drop", "global_pool"}


def test_resampling_keeps_the_weights_mass():
    assert np.allclose(area_matrix(5, 2).sum(axis=0), 1.0) and np.allclose(area_matrix(3, 7).sum(axis=0), 1.0)
    kernel = np.random.default_rng(4).normal(size=(6 * 4 * 3, 2))
    halved = resample_kernel(kernel, (6, 4, 3), (3, 2, 3))
    assert halved.shape == (3 * 2 * 3, 2)
    np.testing.assert_allclose(halved.reshape(3, 2, 3, 2).sum(axis=(0, 1)),
                               kernel.reshape(6, 4, 3, 2).sum(axis=(0, 1)))  # fmt: skip


def test_the_cost_model_prices_a_moved_model_before_it_is_trained():
    """The moved model is built (seconds, no training) and priced like any other: its multiplications
    and parameters as the analysis counts them."""
    from edgeslim.analysis.keras_model import analyze_keras
    from edgeslim.compress.channels import ChannelAnalysis
    from edgeslim.fit.costs import CostModel
    from edgeslim.fit.space import Plan
    from edgeslim.layers.graph import ModelGraph
    from edgeslim.train.zoo import build_model

    model = build_model("lenet5", (28, 28, 1), 10)
    for move in candidates(model):
        moved = apply_moves(model, [move])
        graph = ModelGraph(moved)
        price = CostModel(graph, ChannelAnalysis(graph, lambda layer: True), []).raw(Plan(()))
        stats = analyze_keras(moved)
        assert (price["params"], price["macs"]) == (stats.total_params, stats.total_macs), move.label()


def test_the_architecture_stage_carries_moves_through_a_spec(digits):
    from edgeslim.compress.registry import parse_stage_spec

    model = model_of(digits.input_shape, layers.Conv2D(4, 3, name="conv"), layers.Flatten(name="flat"),
                     layers.Dense(10, activation="softmax", name="out"))  # fmt: skip
    stage = parse_stage_spec("architecture:moves=pool:conv|global_pool:flat")
    result = stage.apply(model, digits)
    assert result.record.extra["moves"] == ["pool:conv", "global_pool:flat"]
    assert result.model.get_layer("out").kernel.shape == (4, 10)
    assert [row.name for row in result.record.layers] == ["conv", "flat"]
    with pytest.raises(ConfigError, match="architecture.moves"):
        parse_stage_spec("architecture:moves=wider:conv")
