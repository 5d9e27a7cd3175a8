"""Every stage on the models users bring: 1-D convolutions, decoders (transposed conv, upsampling),
recurrent layers, nested models and shared layers. Real data: the digits, read as 8x8 images or as
8 steps of 8 features."""

from __future__ import annotations

from dataclasses import replace

import keras
import numpy as np
import pytest
from keras import layers as L

from edgeslim.analysis.keras_model import analyze_keras
from edgeslim.compress import parse_stage_spec
from edgeslim.layers import handler_for
from edgeslim.layers.fakequant import quantize_weights_np
from edgeslim.layers.graph import ModelGraph
from edgeslim.train.config import FinetuneConfig, TrainConfig
from edgeslim.train.finetune import finetune
from edgeslim.train.fit import train_model

SPECS = [
    "prune:mode=structured,sparsity=0.5",
    "prune:sparsity=0.5",
    "lowrank:energy=0.9",
    "separable:rank=2",
    "quantize",
]
_MODELS: dict[str, keras.Model] = {}


@pytest.fixture(scope="module")
def rows(digits):
    """The digits as sequences: 8 rows of 8 pixels."""
    return replace(
        digits,
        x_train=digits.x_train[..., 0],
        x_val=digits.x_val[..., 0],
        x_test=digits.x_test[..., 0],
    )


def conv1d_model() -> keras.Model:
    x = inputs = keras.Input((8, 8))
    x = L.Conv1D(16, 3, padding="same", activation="relu", name="c1")(x)
    x = L.DepthwiseConv1D(3, padding="same", name="dw")(x)
    x = L.SeparableConv1D(16, 3, padding="same", activation="relu", name="sep")(x)
    x = L.MaxPooling1D(2, name="pool")(x)
    x = L.Conv1D(16, 3, padding="same", activation="relu", name="c2")(x)
    x = L.GlobalAveragePooling1D(name="gap")(x)
    return keras.Model(inputs, L.Dense(10, activation="softmax", name="out")(x), name="conv1d")


def decoder_model() -> keras.Model:
    x = inputs = keras.Input((8, 8, 1))
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="enc")(x)
    x = L.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu", name="up")(x)
    x = L.UpSampling2D(2, name="ups")(x)
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="dec")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, L.Dense(10, activation="softmax", name="out")(x), name="decoder")


def recurrent_model(cls: type) -> keras.Model:
    x = inputs = keras.Input((8, 8))
    x = cls(24, return_sequences=True, name="r1")(x)
    x = cls(16, name="r2")(x)
    return keras.Model(inputs, L.Dense(10, activation="softmax", name="out")(x), name=cls.__name__.lower())


def nested_model() -> keras.Model:
    block = keras.Sequential(
        [keras.Input((8, 8, 1)), L.Conv2D(8, 3, activation="relu", name="b1"), L.Conv2D(8, 3, name="b2")],
        name="block",
    )
    x = inputs = keras.Input((8, 8, 1))
    x = L.Flatten(name="flat")(L.ReLU(name="relu")(block(x)))
    return keras.Model(inputs, L.Dense(10, activation="softmax", name="out")(x), name="nested")


def shared_model() -> keras.Model:
    """One conv applied to two branches: its calls must keep the same input channels."""
    shared = L.Conv2D(8, 3, padding="same", activation="relu", name="shared")
    x = inputs = keras.Input((8, 8, 1))
    a = shared(L.Conv2D(8, 3, padding="same", activation="relu", name="left")(x))
    b = shared(L.Conv2D(8, 3, padding="same", activation="relu", name="right")(x))
    x = L.Flatten(name="flat")(L.Add(name="add")([a, b]))
    return keras.Model(inputs, L.Dense(10, activation="softmax", name="out")(x), name="shared")


BUILDERS = {
    "conv1d": (conv1d_model, "rows"),
    "decoder": (decoder_model, "digits"),
    "lstm": (lambda: recurrent_model(L.LSTM), "rows"),
    "gru": (lambda: recurrent_model(L.GRU), "rows"),
    "simplernn": (lambda: recurrent_model(L.SimpleRNN), "rows"),
    "nested": (nested_model, "digits"),
    "shared": (shared_model, "digits"),
}


def trained(kind: str, request) -> tuple[keras.Model, object]:
    build, data_name = BUILDERS[kind]
    data = request.getfixturevalue(data_name)
    if kind not in _MODELS:
        config = TrainConfig(epochs=4, batch_size=32, optimizer="adam", learning_rate=0.005, seed=0)
        _MODELS[kind] = train_model(build(), data, config, progress=False).model
    return _MODELS[kind], data


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_every_stage_handles_the_model_or_says_why(kind, request):
    model, data = trained(kind, request)
    before = [w.copy() for w in model.get_weights()]
    for spec in SPECS:
        result = parse_stage_spec(spec).apply(model, data)
        out = result.model.predict(data.x_test[:8], verbose=0)
        assert out.shape == (8, 10), spec
        assert analyze_keras(result.model).total_macs == result.record.totals["macs_after"], spec
        for row in result.record.skipped:
            assert row.reason, (spec, row.name)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


@pytest.mark.parametrize("kind", ["conv1d", "decoder", "lstm", "gru", "simplernn", "nested"])
def test_structured_pruning_shrinks_every_family(kind, request):
    model, data = trained(kind, request)
    result = parse_stage_spec("prune:mode=structured,sparsity=0.5").apply(model, data)
    totals = result.record.totals
    assert totals["params_after"] < 0.7 * totals["params_before"]
    pruned = {row.name for row in result.record.changed if row.action == "pruned"}
    expected = {
        "conv1d": {"c1", "sep", "c2"},
        "decoder": {"enc", "up", "dec"},
        "lstm": {"r1", "r2"},
        "gru": {"r1", "r2"},
        "simplernn": {"r1", "r2"},
        "nested": {"b1", "b2"},
    }[kind]
    assert expected <= pruned, (kind, pruned)


def test_recurrent_units_keep_their_gate_layout(rows, request):
    model, data = trained("lstm", request)
    result = parse_stage_spec("prune:mode=structured,sparsity=0.5,compensate=none").apply(model, data)
    r1 = result.model.get_layer("r1")
    assert r1.units == 12 and r1.cell.kernel.shape == (8, 48) and r1.cell.recurrent_kernel.shape == (12, 48)
    assert result.model.get_layer("r2").cell.kernel.shape[0] == 12  # the consumer reads 12 units


GATES = {"lstm": (4, 3), "gru": (3, 3), "simplernn": (1, 0)}  # (gates, elementwise products per unit)


@pytest.mark.parametrize("kind", ["lstm", "gru", "simplernn"])
def test_the_recurrent_kernel_splits_inside_the_step(kind, rows, request, tmp_path):
    """h A B replaces h U: exact at full rank, counted by hand, saved and loaded safely, prunable."""
    model, data = trained(kind, request)
    graph = ModelGraph(model)
    node = graph.nodes["r1"]
    schemes = [f.scheme for f in node.handler.factorizations(node.call_shapes()[0])]
    assert schemes == ["input", "recurrent"]
    exact = graph.rebuild({"r1": node.handler.factorize("recurrent", 24, {"r1", "r2", "out"})})
    x = data.x_test[:32]
    assert np.max(np.abs(exact.predict(x, verbose=0) - model.predict(x, verbose=0))) < 1e-4

    result = parse_stage_spec("lowrank:rank=4,method=recurrent").apply(model, data)
    assert result.record.row("r1").detail["scheme"] == "recurrent"
    gates, products = GATES[kind]
    split_r1 = 8 * (gates * 24 * 8 + 24 * 4 + 4 * gates * 24 + products * 24)  # T (g u f + u R + R g u + e u)
    split_r2 = 8 * (gates * 16 * 24 + 16 * 4 + 4 * gates * 16 + products * 16)
    assert result.record.totals["macs_after"] == split_r1 + split_r2 + 16 * 10
    assert analyze_keras(result.model).total_macs == result.record.totals["macs_after"]

    path = tmp_path / "split.keras"
    result.model.save(path)
    from edgeslim.modelio import load_keras_model

    loaded = load_keras_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), result.model.predict(x, verbose=0), atol=1e-6)
    pruned = parse_stage_spec("prune:mode=structured,sparsity=0.5,compensate=none").apply(loaded, data).model
    r1 = pruned.get_layer("r1_lr")
    assert r1.units == 12 and r1.cell.recurrent_a.shape == (12, 4)
    assert r1.cell.recurrent_b.shape == (4, 12 * gates)
    assert pruned.predict(x, verbose=0).shape == (32, 10)


def test_auto_keeps_the_fused_lstm_kernel_and_splits_only_input_kernels(rows, request):
    lstm, data = trained("lstm", request)
    result = parse_stage_spec("lowrank:rank=4").apply(lstm, data)
    assert {result.record.row(n).detail["scheme"] for n in ("r1", "r2")} == {"input"}
    gru, _ = trained("gru", request)
    # r1's recurrent split would save more (10752 against 2048 multiplications), but its error compounds
    # over the steps: auto splits the input kernel, method=recurrent the recurrent one.
    assert parse_stage_spec("lowrank:rank=4").apply(gru, data).record.row("r1").detail["scheme"] == "input"
    split = parse_stage_spec("lowrank:rank=4,method=recurrent").apply(gru, data)
    assert split.record.row("r1").detail["scheme"] == "recurrent"


def test_a_split_recurrent_kernel_runs_int8_in_litert_and_tflite_micro(rows, request, tmp_path):
    from edgeslim.export import export_model
    from edgeslim.runtime import evaluate, load

    model, data = trained("lstm", request)
    split = parse_stage_spec("lowrank:rank=8,method=recurrent,layers=r1").apply(model, data).model
    [artifact] = export_model(split, data, "mcu", out_dir=tmp_path, calib_samples=100, agreement_floor=0.9)
    [layer] = [r for r in artifact.sidecar["format_details"]["recurrent"]["layers"] if r["name"] == "r1_lr"]
    assert layer["as"] == "unrolled"
    verification = artifact.sidecar["verification"]
    assert verification["tflm"]["passed"] and verification["agreement"] >= 0.9
    micro = evaluate(load(artifact.path, backend="tflm"), data.x_test, data.y_test)["accuracy"]
    assert abs(micro - verification["keras_accuracy"]) <= 0.03


def test_conv1d_becomes_depthwise_plus_pointwise_exactly_at_full_rank(rows, request):
    model, data = trained("conv1d", request)
    result = parse_stage_spec("separable:rank=3,require_saving=false,layers=c1|c2").apply(model, data)
    assert isinstance(result.model.get_layer("c1_dw"), L.DepthwiseConv1D)
    x = data.x_test[:32]
    assert np.max(np.abs(model.predict(x, verbose=0) - result.model.predict(x, verbose=0))) < 1e-4


def test_qat_trains_1d_kernels_on_the_int8_grid(rows, request):
    model, data = trained("conv1d", request)
    stage = parse_stage_spec("quantize:qat=true,qat_epochs=1")
    result = stage.run(model, data, FinetuneConfig(epochs=1), finetuner=finetune)
    assert result.record.extra["qat"]["ran"]
    for name in ("c1", "c2", "dw", "out"):
        layer = result.model.get_layer(name)
        kernel = np.asarray(handler_for(layer).kernels()[0])
        axes = handler_for(layer).quant_axes(0, True)
        assert np.allclose(quantize_weights_np(kernel, axes), kernel, atol=1e-6), name
    assert result.model.predict(data.x_test[:4], verbose=0).shape == (4, 10)


def test_a_nested_model_is_compressed_inside_and_counted_like_its_flat_copy(digits, request):
    model, data = trained("nested", request)
    flat = ModelGraph(model).model
    assert [layer.name for layer in flat.layers if layer.weights] == ["b1", "b2", "out"]
    assert analyze_keras(model).total_macs == analyze_keras(flat).total_macs
    result = parse_stage_spec("lowrank:rank=2,layers=b2").apply(model, data)
    assert result.record.row("b2").action == "factorized"


def test_a_shared_layer_is_pruned_consistently_and_stays_shared(digits, request):
    model, data = trained("shared", request)
    result = parse_stage_spec("prune:mode=structured,sparsity=0.5").apply(model, data)
    new = result.model
    # left and right both feed the shared conv: their channels are tied and shrink together.
    assert new.get_layer("left").filters == new.get_layer("right").filters == 4
    assert new.get_layer("shared").kernel.shape[-2] == 4
    lowrank = parse_stage_spec("lowrank:rank=2,layers=shared").apply(model, data).model
    first = lowrank.get_layer("shared_lr1")
    assert len(first._inbound_nodes) == 2  # one pair of layers, called on both branches
    assert analyze_keras(lowrank).total_macs < analyze_keras(model).total_macs


def test_one_element_list_inputs_and_outputs_are_plain_tensors_after_loading(digits, tmp_path):
    """keras.Model([x], [y]) (and Keras 3's reading of some tf.keras files) keeps one-element lists;
    loading rewires them once, so distillation and every stage see plain tensors (compress used to fail
    in fine-tuning: `Concatenate ... [[(None, 10)], (None, 10)]`)."""
    from edgeslim.cli import main
    from edgeslim.modelio import load_keras_model

    x = keras.Input(digits.input_shape)
    y = L.Dense(10, activation="softmax")(L.Dense(16, activation="relu")(L.Flatten()(x)))
    path = tmp_path / "listed.keras"
    keras.Model([x], [y]).save(path)
    loaded = load_keras_model(path)
    assert not isinstance(loaded(digits.x_test[:2]), list | tuple)
    out = tmp_path / "run"
    args = [
        "compress",
        str(path),
        "--stage",
        "prune:sparsity=0.5",
        "--finetune-epochs",
        "1",
        "--out",
        str(out),
    ]
    assert main([*args, "--quiet"]) == 0
