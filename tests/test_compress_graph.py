"""The graph rebuild every structural stage relies on, plus the tiny models the compression tests share.

``tiny_functional`` has every layer kind the stages must handle: Conv2D, BatchNorm, ReLU,
DepthwiseConv2D, a residual Add, SeparableConv2D, Concatenate, pooling, Flatten, Dropout, Dense.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

_TRAINED: dict[str, keras.Model] = {}


def tiny_functional() -> keras.Model:
    inputs = keras.Input((8, 8, 1), name="image")
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    y = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    y = layers.BatchNormalization(name="dw_bn")(y)
    y = layers.ReLU(name="dw_relu")(y)
    y = layers.Conv2D(8, 1, name="pw")(y)
    x = layers.Add(name="add")([x, y])
    a = layers.SeparableConv2D(8, 3, padding="same", activation="relu", name="sep")(x)
    b = layers.Conv2D(4, 3, padding="same", activation="relu", name="side")(x)
    x = layers.Concatenate(name="cat")([a, b])
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Conv2D(12, 3, padding="valid", activation="relu", name="conv3")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(16, activation="relu", name="dense1")(x)
    x = layers.Dropout(0.1, name="drop")(x)
    outputs = layers.Dense(10, activation="softmax", name="output")(x)
    return keras.Model(inputs, outputs, name="tiny_functional")


def tiny_sequential() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1"),
            layers.BatchNormalization(name="bn1"),
            layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv2"),
            layers.Flatten(name="flatten"),
            layers.Dense(32, activation="relu", name="dense1"),
            layers.Dense(10, activation="softmax", name="output"),
        ],
        name="tiny_sequential",
    )


def trained(kind: str, digits) -> keras.Model:
    """A tiny model trained for a few seconds on digits, built once per test session. Never mutate it."""
    if kind not in _TRAINED:
        from edgeslim.train.config import TrainConfig
        from edgeslim.train.fit import train_model

        model = tiny_functional() if kind == "functional" else tiny_sequential()
        config = TrainConfig(epochs=6, batch_size=32, optimizer="adam", learning_rate=0.005, seed=0)
        _TRAINED[kind] = train_model(model, digits, config, progress=False).model
    return _TRAINED[kind]


def weights_of(model: keras.Model) -> list[np.ndarray]:
    return [np.array(w, copy=True) for w in model.get_weights()]


def same_weights(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("kind", ["functional", "sequential"])
def test_rebuild_copies_exactly_and_shares_nothing(kind, digits):
    from edgeslim.layers.graph import ModelGraph

    model = trained(kind, digits)
    copy = ModelGraph(model).rebuild()
    x = digits.x_test[:64]
    assert np.array_equal(model.predict(x, verbose=0), copy.predict(x, verbose=0))
    assert type(copy) is type(model)
    assert not {id(v) for v in model.weights} & {id(v) for v in copy.weights}


def test_graph_knows_the_wiring():
    from edgeslim.layers.graph import ModelGraph

    graph = ModelGraph(tiny_functional())
    assert graph.nodes["add"].inputs == [["stem_relu", "pw"]]
    assert sorted(graph.consumers("add")) == ["sep", "side"]
    assert graph.output_names == ["output"]


def test_removing_a_layer_passes_its_input_through(digits):
    from edgeslim.layers import Replacement
    from edgeslim.layers.graph import ModelGraph

    model = trained("sequential", digits)
    new = ModelGraph(model).rebuild({"bn1": Replacement([])})
    assert "bn1" not in [layer.name for layer in new.layers]
    assert new.predict(digits.x_test[:4], verbose=0).shape == (4, 10)


def test_channel_groups_tie_residual_add_and_pin_outputs():
    from edgeslim.compress.channels import ChannelAnalysis
    from edgeslim.layers.graph import ModelGraph

    analysis = ChannelAnalysis(ModelGraph(tiny_functional()), lambda layer: True)
    stem, pw = analysis.producers["stem"], analysis.producers["pw"]
    # Add ties channel i of the stem (through BN/ReLU) to channel i of pw: one group each.
    assert all(analysis.find(int(a)) == analysis.find(int(b)) for a, b in zip(stem, pw, strict=True))
    assert all(analysis.pinned(int(i)) for i in analysis.producers["output"])
    assert "reaches the model output" in analysis.pin_reason(int(analysis.producers["output"][0]))
    # Flatten maps conv3's 12 channels over its 2x2 positions: 48 features in dense1's input.
    assert len(analysis.in_ids["dense1"]) == 48
    assert analysis.roles["dw"] == "depthwise" and analysis.roles["cat"] == "concat"
