"""The model zoo's course parameter counts, and inspect's totals against the course formulas."""

from __future__ import annotations

import json

import pytest

from edgeslim.cli import main


@pytest.mark.parametrize(
    ("name", "expected"), [("mnistnet1", 814_090), ("mnistnet2", 932_362), ("mnistnet3", 693_194)]
)
def test_course_parameter_counts(name, expected):
    from edgeslim.train.zoo import build_model

    assert build_model(name, (28, 28, 1), 10).count_params() == expected


@pytest.mark.parametrize("name", ["lenet5", "dscnn", "digits_cnn", "mnistnet1"])
def test_small_models_build_for_8x8_digits(name):
    from edgeslim.train.zoo import build_model

    model = build_model(name, (8, 8, 1), 10)
    assert model.output_shape == (None, 10)


@pytest.mark.parametrize(
    ("name", "shape", "classes", "params"),
    [
        ("dscnn", (49, 10, 1), 12, 24_908),
        ("mobilenet_v1_025", (96, 96, 3), 2, 221_794),
        ("resnet8", (32, 32, 3), 10, 78_666),
        ("autoencoder", (640,), 0, 269_992),
    ],
)
def test_mlperf_tiny_reference_architectures(name, shape, classes, params):
    """The parameter counts of MLPerf Tiny's trained reference files (mlcommons/tiny, training/)."""
    from edgeslim.train.zoo import build_model

    assert build_model(name, shape, classes).count_params() == params


def test_deployed_multiplications_leave_out_the_batchnorms_that_fold():
    from edgeslim.analysis.keras_model import analyze_keras
    from edgeslim.train.zoo import build_model

    stats = analyze_keras(build_model("dscnn", (49, 10, 1), 12))
    by_hand = 25 * 5 * (10 * 4 * 64) + 4 * (25 * 5 * 9 * 64 + 25 * 5 * 64 * 64) + 64 * 12 + 64  # + the pool
    bn = [layer for layer in stats.layers if layer.type == "BatchNormalization"]
    assert len(bn) == 9 and all(layer.folded_into for layer in bn)  # each follows its conv directly
    assert stats.deployed_macs == by_hand == stats.total_macs - sum(layer.macs for layer in bn)


def test_colour_models_build_for_32x32():
    from edgeslim.train.zoo import build_model

    assert build_model("cifarnet", (32, 32, 3), 10).output_shape == (None, 10)
    assert build_model("resnet8", (32, 32, 3), 10).output_shape == (None, 10)


def _course_formulas_mnistnet3() -> tuple[int, int]:
    """N_p and N_x of mnistnet3 on 28x28x1, computed by hand from the course's formulas."""

    def conv(k, d_in, d_out, m):  # output m x m x d_out
        return k * k * d_in * d_out + d_out, m * m * k * k * d_in * d_out

    def dense(m_in, m_out):
        return m_out * (m_in + 1), m_out * m_in

    layers = [
        conv(7, 1, 64, 22),
        conv(7, 64, 64, 16),
        conv(3, 64, 128, 6),
        conv(3, 128, 128, 4),
        dense(512, 512),
        dense(512, 10),
    ]
    return sum(p for p, _ in layers), sum(x for _, x in layers)


def test_inspect_mnistnet3_matches_course_formulas(tmp_path, capsys):
    from edgeslim.modelio import save_keras_model
    from edgeslim.train.zoo import build_model

    path = save_keras_model(build_model("mnistnet3", (28, 28, 1), 10), tmp_path / "m3.keras")
    assert main(["inspect", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    params, macs = _course_formulas_mnistnet3()
    assert info["total_params"] == params == 693_194
    assert info["total_macs"] == macs
    by_name = {layer["name"]: layer for layer in info["layers"]}
    assert by_name["conv2"]["output_shape"] == [None, 16, 16, 64]
    assert by_name["pool1"]["macs"] == 0 and by_name["pool1"]["params"] == 0
    assert set(by_name["dense1"]) >= {"name", "type", "output_shape", "params", "macs", "sparsity"}
    assert main(["inspect", str(path)]) == 0
    assert "total" in capsys.readouterr().out


def test_layer_counts_for_depthwise_separable_strided_dilated_bn_add():
    import keras

    from edgeslim.analysis.keras_model import analyze_keras

    inputs = keras.Input((16, 16, 8))
    a = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(inputs)  # 16x16x16
    b = keras.layers.SeparableConv2D(12, 3, strides=2, padding="same", name="sep")(a)  # 8x8x12
    c = keras.layers.Conv2D(12, 3, dilation_rate=2, padding="same", name="dil")(b)  # 8x8x12
    d = keras.layers.Conv2D(12, 1, name="pw")(b)
    e = keras.layers.Add(name="add")([c, d])
    f = keras.layers.BatchNormalization(name="bn")(e)
    g = keras.layers.AveragePooling2D(2, name="avg")(f)  # 4x4x12
    h = keras.layers.GlobalAveragePooling2D(name="gap")(g)
    model = keras.Model(inputs, keras.layers.Dense(10, name="out")(h))
    rows = {layer.name: layer for layer in analyze_keras(model).layers}
    assert rows["dw"].macs == 16 * 16 * 9 * 8 * 2 and rows["dw"].params == 9 * 8 * 2 + 16
    assert rows["sep"].macs == 8 * 8 * (9 * 16 + 16 * 12)
    assert rows["sep"].params == 9 * 16 + 16 * 12 + 12
    assert rows["dil"].macs == 8 * 8 * 9 * 12 * 12  # dilation spreads taps, it adds none
    assert rows["pw"].macs == 8 * 8 * 12 * 12
    assert rows["add"].macs == 0
    assert rows["bn"].macs == 8 * 8 * 12 and rows["bn"].params == 4 * 12
    assert rows["bn"].folded_into is None  # after an Add: the deployed model keeps its multiplications
    assert rows["avg"].macs == 4 * 4 * 12
    assert rows["gap"].macs == 12
    assert rows["out"].macs == 120 and rows["out"].params == 130


def test_sparsity_counts_exact_zeros():
    import keras
    import numpy as np

    from edgeslim.analysis.keras_model import analyze_keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, name="d")])
    kernel, bias = model.layers[0].get_weights()
    kernel[:2] = 0.0  # 10 of 20 kernel weights, bias (5) stays nonzero if set
    model.layers[0].set_weights([kernel, np.ones_like(bias)])
    row = analyze_keras(model).layers[0]
    assert row.nonzero_params == 15 and row.sparsity == pytest.approx(10 / 25)
