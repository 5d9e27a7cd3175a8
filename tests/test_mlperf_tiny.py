"""The four MLPerf Tiny reference architectures at small input sizes: every compression stage, int8
for the mcu target (verified in LiteRT, the cpu runtime, and in TFLite Micro), and the file as
firmware on the emulated Cortex-M4.

Untrained weights, with BatchNorm statistics of the data (`settle_batchnorm`), and no fine-tuning: the
mechanics of each architecture (BN, depthwise, residual Add, dense autoencoder) through each stage and
target. Accuracy after the default chain with fine-tuning is test_zoo_chain's.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeslim.compress import build_stage
from edgeslim.data.dataset import Dataset
from edgeslim.export import export_model
from edgeslim.export.firmware import firmware_available
from edgeslim.train.zoo import build_model, settle_batchnorm

AVAILABLE, WHY = firmware_available("cortex-m4")
STAGES = [
    ("prune", {"mode": "structured", "sparsity": 0.5}),
    ("lowrank", {"energy": 0.9}),
    ("separable", {"rank": 2}),
    ("quantize", {"mode": "int8"}),
]


def random_data(shape: tuple[int, ...], classes: int) -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.random((96, *shape), dtype=np.float32)
    if classes == 0:  # the autoencoder reconstructs its input
        return Dataset(
            "random", x[:64], x[:64], x[64:80], x[64:80], x[80:], x[80:], [], task="reconstruction"
        )
    y = rng.integers(0, classes, len(x))
    names = [f"c{i}" for i in range(classes)]
    return Dataset("random", x[:64], y[:64], x[64:80], y[64:80], x[80:], y[80:], names)


@pytest.mark.skipif(not AVAILABLE, reason=f"no firmware toolchain: {WHY}")
@pytest.mark.parametrize(
    ("name", "shape", "classes"),
    [("dscnn", (12, 6, 1), 4), ("mobilenet_v1_025", (16, 16, 3), 2), ("resnet8", (12, 12, 3), 4),
     ("autoencoder", (24,), 0)],
)  # fmt: skip
def test_mlperf_tiny_architecture_through_every_stage_to_firmware(name, shape, classes, tmp_path):
    pytest.importorskip("tflite_micro", reason="the mcu target needs the mcu extra (tflite-micro)")
    data = random_data(shape, classes)
    model = build_model(name, shape, classes)
    settle_batchnorm(model, data.x_train)
    current = model
    for stage, params in STAGES:
        result = build_stage(stage, **params).run(current, data, None)
        assert all(row.reason for row in result.record.skipped), (stage, result.record.skipped)
        current = result.model
    assert current.count_params() < model.count_params()
    # An untrained classifier's outputs nearly tie, so its int8 argmax may flip: the agreement with
    # Keras is recorded, not required (strict=False); the firmware must equal TFLite Micro exactly. The
    # mcu file is verified in LiteRT first (the cpu target's runtime), then in TFLite Micro.
    [mcu] = export_model(
        current,
        data,
        "mcu",
        out_dir=tmp_path,
        calib_samples=32,
        strict=False,
        firmware=True,
        firmware_samples=2,
    )
    verification = mcu.sidecar["verification"]
    assert mcu.sidecar["quantization"] == "int8" and verification["backend"] == "litert"
    assert verification["score"] > 0.5 and verification["tflm"]["backend"] == "tflm"
    fw = mcu.sidecar["mcu"]["firmware"]
    assert fw["interpreter_agreement"]["identical"] == 1.0
    assert fw["instructions_per_inference"] > 0 and fw["arena_min_bytes"] == mcu.sidecar["mcu"]["arena_bytes"]
