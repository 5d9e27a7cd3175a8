"""Recurrent models on a device: small unrolled files, and defaults that keep their accuracy.

Tiny GRUs on the 8x8 digits read row by row (8 steps of 8 features); real Keras, converter, LiteRT.
"""

from __future__ import annotations

from dataclasses import replace

import keras
import numpy as np
import pytest

from edgeslim.compress.registry import parse_stage_spec
from edgeslim.layers import handler_for

L = keras.layers


def gru_rows(units: int = 16, steps: int = 8, features: int = 8) -> keras.Model:
    inputs = keras.Input((steps, features))
    x = L.GRU(units, name="gru")(inputs)
    return keras.Model(inputs, L.Dense(10, activation="softmax", name="out")(x))


@pytest.fixture(scope="module")
def rows(digits):
    return replace(
        digits, x_train=digits.x_train[..., 0], x_val=digits.x_val[..., 0], x_test=digits.x_test[..., 0]
    )


def int8_weight_bytes(model: keras.Model) -> int:
    return sum(int(np.prod(w.shape)) for layer in model.layers for w in layer.weights if len(w.shape) == 2)


def test_unrolled_gru_int8_file_is_a_small_multiple_of_its_weights(rows):
    from ai_edge_litert.interpreter import Interpreter

    from edgeslim.export.tflite import convert, tflm_check
    from edgeslim.recipe import QuantRecipe

    model = gru_rows(units=32, steps=28, features=8)
    x = np.random.default_rng(0).random((64, 28, 8), np.float32)
    data, extras = convert(model, QuantRecipe(mode="int8"), x, batch=1)
    weights = int8_weight_bytes(model)  # 8*96 + 32*96 + 32*10 = 4,160 bytes
    # The converter alone wrote ~30x the weights (each step's tensors named, tables repeated).
    assert extras["recurrent"]["compacted"]["converter_bytes"] > 25 * weights
    assert len(data) < 14 * weights
    assert tflm_check(data)["runs"] is not False  # None: TFLite Micro not installed
    interp = Interpreter(model_content=data)
    interp.allocate_tensors()
    assert interp.get_input_details()[0]["name"]  # the graph's input keeps its name


def test_compacting_changes_no_output(rows):
    from ai_edge_litert.interpreter import Interpreter

    from edgeslim.export.recurrent import plan_for_tflite
    from edgeslim.export.tflite import _converter_options, _export
    from edgeslim.export.tflite_compact import compact
    from edgeslim.recipe import QuantRecipe

    plan = plan_for_tflite(gru_rows())
    assert plan is not None
    raw = _export(plan.model, _converter_options(QuantRecipe(mode="int8"), rows.x_train[:32]), 1)
    small = compact(raw)
    assert len(small) < 0.5 * len(raw)
    outs = []
    for blob in (raw, small):
        interp = Interpreter(model_content=blob)
        interp.allocate_tensors()
        detail = interp.get_input_details()[0]
        interp.set_tensor(detail["index"], (rows.x_test[:1] * 100 - 64).astype(np.int8))
        interp.invoke()
        outs.append(interp.get_tensor(interp.get_output_details()[0]["index"]))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_gru_unit_ranking_scores_every_gate_of_both_kernels():
    model = gru_rows(units=4)
    gru = model.get_layer("gru")
    kernel, recurrent, bias = (np.zeros_like(np.asarray(w)) for w in gru.get_weights())
    recurrent[:, 2 * 4 + 1] = 1.0  # unit 1 only in the candidate gate of the recurrent kernel
    kernel[:, 0 * 4 + 3] = 2.0  # unit 3 only in the update gate of the input kernel
    gru.set_weights([kernel, recurrent, bias])
    scores = np.abs(handler_for(gru).output_columns()).sum(axis=0)
    np.testing.assert_allclose(scores, [0, 4, 0, 16])


def test_lowrank_auto_keeps_the_gru_recurrent_kernel_whole(rows):
    model = gru_rows(units=24)
    record = parse_stage_spec("lowrank:energy=0.9").apply(model, rows).record
    assert record.row("gru").detail["scheme"] == "input"


def test_recurrent_models_fine_tune_at_their_own_default_rate(rows):
    from edgeslim.train.config import FinetuneConfig
    from edgeslim.train.finetune import finetune

    small = replace(rows, x_train=rows.x_train[:64], y_train=rows.y_train[:64])
    config = FinetuneConfig(epochs=1, distill=False)
    assert config.recurrent_learning_rate == 3e-3 > config.train.learning_rate  # in the constructor, said
    assert finetune(gru_rows(), small, config).metrics["learning_rate"] == 3e-3
    chosen = replace(config, recurrent_learning_rate=1e-3)
    assert finetune(gru_rows(), small, chosen).metrics["learning_rate"] == 1e-3
    dense = keras.Sequential([keras.Input((8, 8)), L.Flatten(), L.Dense(10, activation="softmax")])
    assert finetune(dense, small, config).metrics["learning_rate"] == config.train.learning_rate


def test_flash_prices_every_unrolled_step():
    gru = handler_for(gru_rows(units=32).get_layer("gru"))
    tensors, bias_bytes = gru.unrolled_step()
    assert tensors >= 15 and bias_bytes == 4 * 3 * 32
    fused = keras.Sequential([keras.Input((8, 8)), L.LSTM(8)])
    assert handler_for(fused.layers[0]).unrolled_step() == (0, 0.0)
