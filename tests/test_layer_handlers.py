"""One handler per layer family: parameters equal Keras' count, multiplications equal the hand-computed
formula, and a pruned layer rebuilt from its handler's edit still fits its neighbours."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers as L

from edgeslim.analysis.keras_model import analyze_keras
from edgeslim.layers import HANDLERS, LayerHandler, copy_layer, handler_for, is_known
from edgeslim.layers.graph import ModelGraph


def single(layer: keras.layers.Layer, in_shape: tuple, dtype: str = "float32") -> keras.Model:
    inputs = keras.Input(in_shape, dtype=dtype)
    return keras.Model(inputs, layer(inputs))


def counted(model: keras.Model, name: str):
    return next(s for s in analyze_keras(model).layers if s.name == name)


# (layer, input shape without batch, hand-computed multiplications per sample)
CASES = [
    (L.Dense(7, name="x"), (5,), 5 * 7),
    (L.Dense(7, name="x"), (3, 5), 3 * 5 * 7),  # a Dense on a sequence runs once per step
    (L.Conv1D(6, 3, name="x"), (10, 4), 8 * 3 * 4 * 6),
    (L.Conv1D(6, 3, strides=2, padding="same", name="x"), (10, 4), 5 * 3 * 4 * 6),
    (L.Conv2D(6, 3, name="x"), (8, 8, 2), 6 * 6 * 9 * 2 * 6),
    (L.Conv2D(6, 3, dilation_rate=2, name="x"), (9, 9, 2), 5 * 5 * 9 * 2 * 6),
    (L.Conv3D(4, 2, name="x"), (4, 4, 4, 2), 27 * 8 * 2 * 4),
    (L.DepthwiseConv1D(3, depth_multiplier=2, name="x"), (10, 4), 8 * 3 * 4 * 2),
    (L.DepthwiseConv2D(3, name="x"), (8, 8, 3), 36 * 9 * 3),
    (L.SeparableConv1D(5, 3, name="x"), (10, 4), 8 * (3 * 4 + 4 * 5)),
    (L.SeparableConv2D(5, 3, depth_multiplier=2, name="x"), (8, 8, 3), 36 * (9 * 3 * 2 + 6 * 5)),
    (L.Conv1DTranspose(4, 3, strides=2, name="x"), (6, 3), 6 * 3 * 3 * 4),  # every input scatters K*D_out
    (L.Conv2DTranspose(4, 3, strides=2, padding="same", name="x"), (5, 5, 3), 25 * 9 * 3 * 4),
    (L.BatchNormalization(name="x"), (4, 4, 3), 48),
    (L.AveragePooling1D(2, name="x"), (8, 3), 4 * 3),
    (L.AveragePooling2D(2, name="x"), (8, 8, 3), 16 * 3),
    (L.GlobalAveragePooling1D(name="x"), (8, 3), 3),
    (L.GlobalAveragePooling2D(name="x"), (8, 8, 3), 3),
    (L.MaxPooling2D(2, name="x"), (8, 8, 3), 0),
    (L.UpSampling2D(2, name="x"), (4, 4, 3), 0),
    (L.UpSampling2D(2, interpolation="bilinear", name="x"), (4, 4, 3), 4 * 64 * 3),
    (L.Flatten(name="x"), (4, 4, 3), 0),
    (L.LSTM(8, name="x"), (5, 3), 5 * (4 * 8 * (3 + 8) + 3 * 8)),
    (L.GRU(8, name="x"), (5, 3), 5 * (3 * 8 * (3 + 8) + 3 * 8)),
    (L.SimpleRNN(8, name="x"), (5, 3), 5 * 8 * (3 + 8)),
    (L.EinsumDense("ab,bc->ac", output_shape=6, name="x"), (4,), 4 * 6),
    (L.EinsumDense("abc,cd->abd", output_shape=(3, 6), name="x"), (3, 4), 3 * 4 * 6),
]


@pytest.mark.parametrize(
    ("layer", "shape", "macs"), CASES, ids=[f"{type(c[0]).__name__}{c[1]}" for c in CASES]
)
def test_counts_match_keras_and_the_course_formulas(layer, shape, macs):
    model = single(layer, shape)
    stats = counted(model, "x")
    assert stats.params == layer.count_params()
    assert stats.macs == macs and stats.macs_known
    assert is_known(handler_for(layer)), type(layer).__name__


def test_merges_and_embedding():
    a, b = keras.Input((4, 3)), keras.Input((4, 3))
    model = keras.Model([a, b], [L.Multiply(name="mul")([a, b]), L.Add(name="add")([a, b])])
    assert counted(model, "mul").macs == 12 and counted(model, "add").macs == 0
    emb = single(L.Embedding(50, 8, name="x"), (6,), dtype="int32")
    stats = counted(emb, "x")
    assert stats.params == 400 and stats.macs == 0 and stats.macs_known


def test_attention_is_counted_from_its_heads():
    """Projections + scores + weighted sum + output projection, self- and cross-attention."""
    q, c = keras.Input((6, 8)), keras.Input((5, 3))
    x = L.MultiHeadAttention(2, 4, name="self")(q, q)
    y = L.MultiHeadAttention(3, 2, value_dim=5, output_shape=7, name="cross")(x, c)
    model = keras.Model([q, c], y)
    # self: T=6, d=8, h=2, k=v=4: q, k, v projections 3 * 6*8*2*4, scores + sum 2*6*6*(4+4), out 6*2*4*8
    assert counted(model, "self").macs == 3 * 384 + 576 + 384
    # cross: q 6*8*3*2, k 5*3*3*2, v 5*3*3*5, scores + sum 3*6*5*(2+5), out 6*3*5*7
    assert counted(model, "cross").macs == 288 + 90 + 225 + 630 + 630
    assert analyze_keras(model).macs_complete


class Mystery(L.Layer):
    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.w


class MyDense(L.Dense):  # computes its own call: the Dense formula would be a guess
    def call(self, x):
        return super().call(x) * 2.0


class WideDense(L.Dense):  # only changes a default: still a Dense
    def __init__(self, units=4, **kwargs):
        super().__init__(units, **kwargs)


def test_unknown_kinds_are_counted_honestly():
    model = single(Mystery(name="x"), (5,))
    stats = counted(model, "x")
    assert stats.params == 5 and stats.macs == 0 and not stats.macs_known and "not counted" in stats.note
    assert not analyze_keras(model).macs_complete
    custom = counted(single(MyDense(3, name="x"), (5,)), "x")
    assert not custom.macs_known and "overrides Dense.call" in custom.note
    assert counted(single(WideDense(name="x"), (5,)), "x").macs == 20


def test_a_shared_layer_counts_once_per_call():
    layer = L.Dense(4, name="shared")
    x = keras.Input((4,))
    model = keras.Model(x, layer(L.ReLU()(layer(x))))
    stats = counted(model, "shared")
    assert stats.calls == 2 and stats.macs == 2 * 16 and stats.params == 20 and "2 calls" in stats.note


def test_a_nested_model_is_counted_through_its_layers():
    block = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3, name="inner")], name="block")
    x = keras.Input((8, 8, 1))
    model = keras.Model(x, L.Dense(3, name="out")(L.Flatten()(block(x))))
    stats = analyze_keras(model)
    assert stats.layers[0].name == "inner" and "block" not in [s.name for s in stats.layers]
    assert stats.total_params == model.count_params()
    assert counted(model, "inner").macs == 36 * 9 * 4 and counted(model, "out").macs == 144 * 3


PRUNABLE = [
    (L.Dense(6), (5,)),
    (L.Conv1D(6, 3), (10, 4)),
    (L.Conv2D(6, 3, padding="same"), (6, 6, 4)),
    (L.SeparableConv2D(6, 3, depth_multiplier=2), (6, 6, 4)),
    (L.Conv2DTranspose(6, 3, strides=2), (4, 4, 4)),
    (L.LSTM(6), (5, 4)),
    (L.GRU(6, return_sequences=True), (5, 4)),
    (L.SimpleRNN(6), (5, 4)),
]


@pytest.mark.parametrize(("layer", "shape"), PRUNABLE, ids=[type(p[0]).__name__ for p in PRUNABLE])
def test_pruned_layers_rebuild_with_the_shapes_their_neighbours_expect(layer, shape):
    rng = np.random.default_rng(0)
    single(layer, shape)
    handler = handler_for(layer)
    keep_out = np.array([True, False, True, True, False, True])
    keep_in = np.ones(shape[-1], bool)
    keep_in[1] = False
    edit = handler.prune(keep_out, keep_in)
    smaller = copy_layer(layer, **edit.changes)
    x = rng.random((2, *shape[:-1], int(keep_in.sum()))).astype("float32")
    single(smaller, x.shape[1:]).layers[-1].set_weights(edit.weights)
    assert np.asarray(smaller(x)).shape[-1] == 4
    # The kept units compute exactly what they did: their weights moved with them (gate blocks too).
    full_x = np.zeros((2, *shape), "float32")
    full_x[..., keep_in] = x
    if not isinstance(layer, L.LSTM | L.GRU | L.SimpleRNN):  # recurrent units also read dropped units
        assert np.allclose(np.asarray(layer(full_x))[..., keep_out], np.asarray(smaller(x)), atol=1e-5)


def test_recurrent_pruning_of_dead_units_is_exact():
    rng = np.random.default_rng(1)
    for cls in (L.LSTM, L.GRU, L.SimpleRNN):
        layer = cls(6, return_sequences=True)
        single(layer, (5, 4))
        weights = layer.get_weights()
        gates = weights[0].shape[1] // 6
        dead = [1, 4]
        for g in range(gates):  # a unit whose weights in and out are all zero never moves from h = 0
            for u in dead:
                weights[0][:, g * 6 + u] = 0
                weights[1][:, g * 6 + u] = 0
                weights[1][u, :] = 0
                weights[2][..., g * 6 + u] = 0
        layer.set_weights(weights)
        keep = np.ones(6, bool)
        keep[dead] = False
        edit = handler_for(layer).prune(keep, None)
        smaller = copy_layer(layer, **edit.changes)
        single(smaller, (5, 4)).layers[-1].set_weights(edit.weights)
        x = rng.random((3, 5, 4)).astype("float32")
        assert np.allclose(np.asarray(layer(x))[..., keep], np.asarray(smaller(x)), atol=1e-5), cls.__name__


def test_factorizations_are_exact_at_full_rank_and_priced_before_building():
    rng = np.random.default_rng(2)
    models = {
        "dense": single(L.Dense(6, name="x"), (3, 5)),
        "conv1d": single(L.Conv1D(6, 3, name="x"), (10, 4)),
        "transpose": single(L.Conv2DTranspose(6, 3, strides=2, padding="same", name="x"), (4, 4, 3)),
        "lstm": single(L.LSTM(6, name="x"), (5, 4)),
        "embedding": single(L.Embedding(30, 8, name="x"), (5,), dtype="int32"),
    }
    for kind, model in models.items():
        graph = ModelGraph(model)
        node = graph.nodes["x"]
        for option in node.handler.factorizations(node.call_shapes()[0]):
            full = option.full_rank
            new = graph.rebuild({"x": node.handler.factorize(option.scheme, full, {"x"})})
            shape = model.inputs[0].shape[1:]
            if kind == "embedding":
                x = rng.integers(0, 30, (4, *shape)).astype("int32")
            else:
                x = rng.random((4, *shape)).astype("float32")
            assert np.allclose(model.predict(x, verbose=0), new.predict(x, verbose=0), atol=1e-4), kind
            before = analyze_keras(model).total_macs
            assert analyze_keras(new).total_macs == before - option.macs_before + option.macs(full), kind


def test_every_handler_declares_what_it_handles():
    seen: set[type] = set()
    for handler in HANDLERS:
        assert handler.handles and issubclass(handler, LayerHandler)
        assert not (set(handler.handles) & seen), handler  # one owner per Keras class
        seen |= set(handler.handles)
