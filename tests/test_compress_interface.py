"""The one interface: registry and specs, clear errors, records, no mutation, any order, unknown layers."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from keras import layers
from test_compress_graph import same_weights, tiny_functional, trained, weights_of

from edgeslim.analysis.keras_model import analyze_keras
from edgeslim.compress import STAGES, StageRecord, build_stage, parse_stage_spec
from edgeslim.errors import ConfigError, EdgeslimError


def test_registry_and_spec_parsing():
    assert set(STAGES) == {"architecture", "prune", "lowrank", "separable", "quantize"}
    stage = parse_stage_spec("prune: sparsity=0.8, mode=structured, compensate=none, per_layer=dense1:0.5")
    assert (
        stage.get_config()["sparsity"] == 0.8 and stage.mode == "structured" and stage.target("dense1") == 0.5
    )
    assert parse_stage_spec("lowrank:rank=4").rank == 4
    assert parse_stage_spec("quantize:per_channel=false,io_dtype=uint8").per_channel is False
    assert build_stage("separable", rank=2).get_config()["rank"] == 2


@pytest.mark.parametrize(
    "spec,message",
    [
        ("prune:sparsity=1.0", "prune.sparsity: must be in [0, 1), got 1.0"),
        ("prune:sparsity=-0.1", "prune.sparsity: must be in [0, 1)"),
        ("prune:mode=random", "prune.mode: must be one of"),
        ("prune:per_layer=dense1:1.5", "prune.per_layer"),
        ("lowrank:rank=0", "lowrank.rank: must be a positive integer <= 2147483647, got 0"),
        ("lowrank:rank=-3", "lowrank.rank: must be a positive integer"),
        ("lowrank:energy=1.5", "lowrank.energy: must be in (0, 1], got 1.5"),
        ("lowrank:rank=2,energy=0.9", "lowrank.energy: must be unset when rank is given"),
        ("separable:rank=0", "separable.rank: must be a positive integer"),
        ("quantize:mode=int4", "quantize.mode: must be one of"),
        ("quantize:qat=true,mode=float16", "quantize.qat: must be false unless mode is int8"),
        ("quantize:calib_samples=0", "quantize.calib_samples: must be a positive integer"),
        ("prune:colour=red", "prune.colour: unknown parameter"),
        ("squeeze:rate=2", "unknown stage 'squeeze'"),
        ("prune:sparsity", "expected key=value"),
        ("architecture:moves=wider:conv1", "architecture.moves: must be moves of the families stride"),
        ("architecture:moves=stride", "architecture.moves: must be moves as family:layer[=arg]"),
    ],
)
def test_every_bad_parameter_gets_a_clear_error(spec, message):
    with pytest.raises(ConfigError) as info:
        parse_stage_spec(spec)
    assert message in str(info.value)
    if "unknown stage" in message:
        assert "lowrank" in str(info.value) and "separable" in str(info.value)  # it lists the known ones


def test_a_layer_name_that_does_not_exist_is_an_error(digits, digits_model):
    with pytest.raises(ConfigError, match="prune.layers: no layer named 'dense9'"):
        build_stage("prune", layers="dense9").apply(digits_model, digits)


def test_an_unbuilt_model_is_refused(digits):
    with pytest.raises(EdgeslimError, match="not built"):
        build_stage("lowrank").apply(keras.Sequential([layers.Dense(3)]), digits)


STAGE_SPECS = {
    "prune": "prune:sparsity=0.25,mode=structured,compensate=none",
    "unstructured": "prune:sparsity=0.5",
    "lowrank": "lowrank:energy=0.9,calib_samples=0",
    "separable": "separable:rank=2,calib_samples=0",
    "quantize": "quantize",
}


@pytest.mark.parametrize("name", list(STAGE_SPECS))
def test_a_stage_never_mutates_its_input(name, digits):
    model = trained("functional", digits)
    before = weights_of(model)
    result = parse_stage_spec(STAGE_SPECS[name]).apply(model, digits)
    assert same_weights(before, model.get_weights())
    assert result.model is not model
    assert not {id(v) for v in model.weights} & {id(v) for v in result.model.weights}
    record = StageRecord.from_dict(json.loads(json.dumps(result.record.to_dict())))
    assert record == result.record


def test_stages_compose_in_any_order(digits):
    model = trained("functional", digits)
    x = digits.x_test[:16]
    base_macs = analyze_keras(model).total_macs
    names = ["prune", "lowrank", "separable", "quantize"]
    # Every rotation of an order and of its reverse: each stage in every position, each pair both ways.
    orders = [tuple(names[i:] + names[:i]) for i in range(4)]
    orders += [tuple(reversed(order)) for order in orders]
    done: dict[tuple[str, ...], keras.Model] = {(): model}
    for order in orders:
        for depth in range(1, 5):  # orders sharing a prefix share its work
            if order[:depth] not in done:
                stage = parse_stage_spec(STAGE_SPECS[order[depth - 1]])
                done[order[:depth]] = stage.apply(done[order[: depth - 1]], digits).model
        current = done[order]
        out = current.predict(x, verbose=0)
        assert out.shape == (16, 10) and np.all(np.isfinite(out)), order
        assert np.allclose(out.sum(axis=1), 1.0, atol=1e-4), order
        assert analyze_keras(current).total_macs < base_macs, order


@keras.saving.register_keras_serializable(package="edgeslim_tests")
class ChannelScale(keras.layers.Layer):
    """A layer no stage knows: a learned per-channel scale."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="scale")

    def call(self, x):
        return x * self.scale


def test_an_unknown_custom_layer_is_skipped_with_a_reason(digits):
    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = ChannelScale(name="mystery")(x)
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(10, activation="softmax", name="output")(layers.Dense(32, name="dense1")(x))
    model = keras.Model(inputs, outputs)
    structured = build_stage("prune", mode="structured", sparsity=0.5).apply(model, digits)
    # conv1 feeds the unknown layer: its channels must stay; conv2 and dense1 still shrink.
    assert "mystery" in structured.record.row("conv1").reason
    assert (
        structured.model.get_layer("conv1").filters == 8 and structured.model.get_layer("conv2").filters == 8
    )
    for spec in ("lowrank:rank=2", "separable:rank=1", "prune:sparsity=0.5", "quantize"):
        result = parse_stage_spec(spec).apply(model, digits)
        assert result.model.predict(digits.x_test[:4], verbose=0).shape == (4, 10)
        if spec != "quantize":
            assert result.record.row("mystery").action == "skipped" and result.record.row("mystery").reason


def test_a_functional_model_keeps_every_layer_kind_runnable(digits):
    model = tiny_functional()
    for spec in STAGE_SPECS.values():
        result = parse_stage_spec(spec).apply(model, digits)
        assert result.model.output_shape == model.output_shape


def test_a_lambda_layer_is_copied_not_deserialized(digits):
    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = layers.Lambda(lambda t: t * 2.0, name="double")(x)
    outputs = layers.Dense(10, activation="softmax", name="output")(layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    result = build_stage("prune", mode="structured", sparsity=0.5).apply(model, digits)
    assert "double" in result.record.row("conv1").reason  # Lambda is opaque: conv1 stays whole
    x = digits.x_test[:8]
    assert np.allclose(model.predict(x, verbose=0), result.model.predict(x, verbose=0), atol=1e-6)
