"""The mcu target: minimum arena by bisection, board fit, the C package and TFLite Micro on the test set."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from edgeslim.errors import EdgeslimError
from edgeslim.export import export_model
from edgeslim.export.boards import BOARDS, load_board
from edgeslim.export.mcu_arena import ALIGNMENT, arena_runs, recommended_arena
from edgeslim.export.mcu_resolver import resolver_method
from edgeslim.runtime import load

pytest.importorskip("tflite_micro", reason="the mcu target needs the mcu extra (tflite-micro)")


@pytest.fixture(scope="module")
def mcu_artifact(digits_model, digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("mcu")
    [artifact] = export_model(digits_model, digits, "mcu", out_dir=out, board="cortex-m4", calib_samples=32)
    return artifact


def test_arena_is_the_minimum(mcu_artifact):
    mcu = mcu_artifact.sidecar["mcu"]
    data = mcu_artifact.path.read_bytes()
    arena = mcu["arena_bytes"]
    assert arena_runs(data, arena) and not arena_runs(data, arena - 1)  # one byte less fails
    assert mcu["arena_size"] == recommended_arena(arena) and mcu["arena_size"] % ALIGNMENT == 0
    assert mcu["arena_size"] >= arena * (1 + mcu["arena_margin"]) and mcu["arena_margin"] > 0


def test_board_fit_is_recorded(mcu_artifact):
    mcu = mcu_artifact.sidecar["mcu"]
    assert (
        mcu["board"] == "cortex-m4"
        and mcu["ram_bytes"] == 256 * 1024
        and mcu["flash_board_bytes"] == 1024 * 1024
    )
    assert mcu["fits"] and mcu["flash_bytes"] == mcu_artifact.sidecar["bytes"]


def test_the_per_channel_cost_is_said(mcu_artifact, digits_model, digits, tmp_path):
    """The file figure against a real per-tensor export of the same model; the arena a lower bound."""
    cost = mcu_artifact.sidecar["mcu"]["per_channel_cost"]
    [tensor] = export_model(
        digits_model, digits, "mcu", out_dir=tmp_path, calib_samples=32, per_channel=False, verify=False
    )
    assert tensor.sidecar["mcu"]["per_channel_cost"] is None
    saved = mcu_artifact.sidecar["bytes"] - tensor.sidecar["bytes"]
    assert abs(cost["flash_bytes"] - saved) <= 64
    arena_saved = mcu_artifact.sidecar["mcu"]["arena_bytes"] - tensor.sidecar["mcu"]["arena_bytes"]
    assert 0 < cost["arena_bytes_at_least"] <= arena_saved <= 1.25 * cost["arena_bytes_at_least"]
    assert cost["hint"].startswith("per-channel int8 costs") and "--per-tensor" in cost["hint"]


def test_tflm_runs_the_test_set(mcu_artifact, digits):
    verification = mcu_artifact.sidecar["verification"]
    tflm = verification["tflm"]
    assert tflm["backend"] == "tflm" and tflm["samples"] == len(digits.y_test)
    assert tflm["passed"] and verification["passed"]
    assert abs(tflm["accuracy"] - verification["accuracy"]) <= 0.01  # same int8 math, other kernels
    model = load(mcu_artifact.path, backend="tflm")
    assert model.arena_size == mcu_artifact.sidecar["mcu"]["arena_size"]
    assert model.predict(digits.x_test[:5]).shape == (5, 10)


def test_c_package_has_the_array_the_ops_and_the_arena(mcu_artifact):
    mcu = mcu_artifact.sidecar["mcu"]
    package = mcu_artifact.path.parent / "mcu"
    assert mcu["c_package_dir"] == "mcu"  # relative to the sidecar, so the folder can move
    assert sorted(p.name for p in package.iterdir()) == [
        "README.md",
        "model_data.cc",
        "model_data.h",
        "model_ops.h",
    ]
    source = (package / "model_data.cc").read_text()
    assert "alignas(16) const unsigned char g_model_data[]" in source
    data = mcu_artifact.path.read_bytes()
    assert f"g_model_data_len = {len(data)};" in source
    assert len(re.findall(r"0x[0-9a-f]{2}", source)) == len(data)
    header = (package / "model_data.h").read_text()
    assert f"kTensorArenaSize = {mcu['arena_size']};" in header
    ops_h = (package / "model_ops.h").read_text()
    calls = re.findall(r"resolver\.(Add\w+)\(\)", ops_h)
    assert calls == [resolver_method(op) for op in mcu["ops"]] and len(set(calls)) == len(calls)
    assert "MicroMutableOpResolver<kModelOpCount>" in ops_h and f"kModelOpCount = {len(calls)};" in ops_h
    readme = (package / "README.md").read_text()
    assert "kTensorArenaSize" in readme and "RegisterModelOps" in readme


def test_c_package_compiles(mcu_artifact, tmp_path):
    check = mcu_artifact.sidecar["mcu"]["compile_check"]
    cxx = shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        assert check["passed"] is None
        pytest.skip("no C++ compiler on PATH")
    assert check["passed"] is True  # built, linked and run: aligned array, checksum, resolver count
    package = mcu_artifact.path.parent / "mcu"
    built = subprocess.run(
        [
            cxx,
            "-std=c++11",
            "-Wall",
            "-Werror",
            "-c",
            str(package / "model_data.cc"),
            "-o",
            str(tmp_path / "m.o"),
        ],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr


def test_a_model_that_does_not_fit_fails_clearly(digits_model, digits, tmp_path):
    tiny = dict(
        load_board("cortex-m4").to_dict(), name="tiny", ram_bytes=20 * 1024, ram_reserved_bytes=16 * 1024
    )
    board = tmp_path / "tiny.json"
    board.write_text(json.dumps(tiny))
    out = tmp_path / "out"
    with pytest.raises(
        EdgeslimError, match=r"does not fit board tiny.*RAM: the tensor arena needs"
    ) as caught:
        export_model(digits_model, digits, "mcu", out_dir=out, board=str(board), calib_samples=16)
    assert "--board stm32l4r5" in caught.value.hint
    assert not out.exists() or not list(out.iterdir())  # nothing half-written
    small_flash = dict(tiny, ram_bytes=256 * 1024, flash_bytes=140 * 1024, flash_reserved_bytes=128 * 1024)
    board.write_text(json.dumps(small_flash))
    with pytest.raises(EdgeslimError, match=r"flash: the model takes"):
        export_model(digits_model, digits, "mcu", out_dir=out, board=str(board), calib_samples=16)


def test_an_op_tflite_micro_lacks_is_named(tmp_path):
    """A Conv3D converts for LiteRT, but TFLite Micro has no CONV_3D kernel: say which op, write nothing."""
    import keras
    import numpy as np

    from edgeslim.data.dataset import Dataset

    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 4, 6, 6, 1)).astype("float32")
    y = rng.integers(0, 3, 48)
    data = Dataset("volumes", x[:32], y[:32], x[32:40], y[32:40], x[40:], y[40:], ["a", "b", "c"])
    inputs = keras.Input((4, 6, 6, 1))
    hidden = keras.layers.GlobalAveragePooling3D()(keras.layers.Conv3D(4, 3, activation="relu")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(hidden))
    out = tmp_path / "out"
    with pytest.raises(EdgeslimError, match=r"TFLite Micro has no kernel for CONV_3D") as caught:
        export_model(model, data, "mcu", out_dir=out, calib_samples=8)
    assert "cpu target" in caught.value.hint
    assert not out.exists() or not list(out.iterdir())


def test_shipped_board_profiles():
    assert {"cortex-m4", "cortex-m7", "nrf52840", "esp32-s3", "stm32l4r5"} <= set(BOARDS)
    assert (BOARDS["cortex-m4"].ram_bytes, BOARDS["cortex-m4"].flash_bytes) == (256 * 1024, 1024 * 1024)
    assert (BOARDS["stm32l4r5"].ram_bytes, BOARDS["stm32l4r5"].flash_bytes) == (640 * 1024, 2 * 1024 * 1024)
    with pytest.raises(EdgeslimError, match="unknown board 'arduino-uno'"):
        load_board("arduino-uno")


@pytest.mark.parametrize(
    ("op", "method"),
    [
        ("CONV_2D", "AddConv2D"),
        ("DEPTHWISE_CONV_2D", "AddDepthwiseConv2D"),
        ("FULLY_CONNECTED", "AddFullyConnected"),
        ("MAX_POOL_2D", "AddMaxPool2D"),
        ("L2_NORMALIZATION", "AddL2Normalization"),
        ("BATCH_MATMUL", "AddBatchMatMul"),
        ("REVERSE_V2", "AddReverseV2"),  # a backward recurrence (Bidirectional)
        ("UNIDIRECTIONAL_SEQUENCE_LSTM", "AddUnidirectionalSequenceLSTM"),
        ("PADV2", "AddPadV2"),
    ],
)
def test_resolver_method_names_follow_tflite_micro(op, method):
    assert resolver_method(op) == method


def test_mnist_on_tflite_micro(mnist_model, mnist, tmp_path):
    [artifact] = export_model(
        mnist_model, mnist, "mcu", out_dir=tmp_path, board="stm32l4r5", verify_samples=400
    )
    tflm = artifact.sidecar["verification"]["tflm"]
    assert tflm["samples"] == 400 and tflm["passed"]
    assert abs(tflm["accuracy"] - tflm["keras_accuracy"]) <= 0.015
    assert artifact.sidecar["mcu"]["compile_check"]["passed"] in (True, None)


def test_arena_probes_keep_few_helper_processes(mcu_artifact):
    """Each model's arena is probed in a helper process (a crash costs the helper): a session that
    probes many models keeps at most MAX_HELPERS of them, not one per model until it exits."""
    from edgeslim.runtime import tflm_guard

    data, arena = mcu_artifact.path.read_bytes(), mcu_artifact.sidecar["mcu"]["arena_bytes"]
    for pad in range(1, 5):  # the same model with trailing bytes: another file, another helper
        assert tflm_guard.arena_is_safe(data + bytes(16 * pad), arena + 64)
    alive = [h for h in tflm_guard._HELPERS.values() if h.process is not None and h.process.poll() is None]
    assert len(tflm_guard._HELPERS) <= tflm_guard.MAX_HELPERS and 1 <= len(alive) <= tflm_guard.MAX_HELPERS
