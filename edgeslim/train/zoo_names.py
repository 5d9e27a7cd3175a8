"""The zoo's model names, without importing Keras (config validation and `--help` need only the names)."""

from __future__ import annotations

ZOO_NAMES: dict[str, str] = {
    "mnistnet1": "dense 784-1024-10, tanh, softmax",
    "mnistnet2": "dense 784-512-512-512-10, tanh, dropout 0.2",
    "mnistnet3": "conv 7x7x64 x2 (valid), pool, conv 3x3x128 x2, pool, dense 512",
    "lenet5": "LeNet-5; inputs smaller than 32x32 are zero-padded to 32x32",
    "cifarnet": "mnistnet3's layout for colour input, 3x3 second pooling",
    "dscnn": "MLPerf Tiny keyword spotting DS-CNN: 10x4 conv, 4 depthwise-separable blocks of 64, BatchNorm",
    "mobilenet_v1_025": "MLPerf Tiny visual wake words MobileNetV1 0.25: 13 separable blocks, 8-256",
    "resnet8": "MLPerf Tiny image classification ResNet-8: residual stacks 16/32/64, BatchNorm, Add",
    "digits_cnn": "the small default for 8x8 digits",
    "lstm_rows": "the course's recurrent example: an image read row by row (28 steps of 28), LSTM 128",
    "autoencoder": "MLPerf Tiny anomaly detection: dense 128x4, bottleneck 8, 128x4, reconstruction",
}
# The task a zoo model is built for, where it is not classification.
ZOO_TASKS: dict[str, str] = {"autoencoder": "reconstruction"}
# The optimizer a zoo model trains with when none is given. The course's SGD with Nesterov momentum
# suits its CNNs; the recurrent and reconstruction rows barely learn with it (benchmarks/RESULTS.md,
# "Recurrent and reconstruction rows": lstm_rows' accuracy and the autoencoder's anomaly AUC on digits).
ZOO_OPTIMIZERS: dict[str, dict[str, object]] = {
    "lstm_rows": {"optimizer": "adam", "learning_rate": 0.005},
    "autoencoder": {"optimizer": "adam", "learning_rate": 0.003},
}


def zoo_optimizer(model: str, optimizer: str | None) -> dict[str, object]:
    """The zoo model's own optimizer and rate when the user names no optimizer, or names that one."""
    own = ZOO_OPTIMIZERS.get(model, {})
    return dict(own) if optimizer in (None, own.get("optimizer")) else {}
