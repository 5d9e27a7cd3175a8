"""The model zoo: the course's reference networks plus MLPerf Tiny-style ones, built by name.

Every builder takes ``input_shape`` and ``num_classes`` and returns a plain Keras 3 model. The
layers are named so that records and reports can point at them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras
from keras import layers

from edgeslim.errors import EdgeslimError
from edgeslim.train.zoo_names import ZOO_NAMES


def mnistnet1(input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """Dense 784-1024-10, tanh then softmax (814,090 parameters on MNIST)."""
    return keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Flatten(name="flatten"),
            layers.Dense(1024, activation="tanh", name="dense1"),
            layers.Dense(num_classes, activation="softmax", name="output"),
        ],
        name="mnistnet1",
    )


def mnistnet2(input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """Dense 784-512-512-512-10, tanh, dropout 0.2 (932,362 parameters on MNIST)."""
    stack: list[layers.Layer] = [keras.Input(input_shape), layers.Flatten(name="flatten")]
    for i in range(1, 4):
        stack += [
            layers.Dense(512, activation="tanh", name=f"dense{i}"),
            layers.Dropout(0.2, name=f"dropout{i}"),
        ]
    stack.append(layers.Dense(num_classes, activation="softmax", name="output"))
    return keras.Sequential(stack, name="mnistnet2")


def _course_cnn(input_shape: tuple[int, ...], num_classes: int, second_pool: int, name: str) -> keras.Model:
    return keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Conv2D(64, 7, activation="relu", name="conv1"),
            layers.Conv2D(64, 7, activation="relu", name="conv2"),
            layers.MaxPooling2D(2, name="pool1"),
            layers.Dropout(0.25, name="dropout1"),
            layers.Conv2D(128, 3, activation="relu", name="conv3"),
            layers.Conv2D(128, 3, activation="relu", name="conv4"),
            layers.MaxPooling2D(second_pool, name="pool2"),
            layers.Dropout(0.25, name="dropout2"),
            layers.Flatten(name="flatten"),
            layers.Dense(512, activation="relu", name="dense1"),
            layers.Dropout(0.5, name="dropout3"),
            layers.Dense(num_classes, activation="softmax", name="output"),
        ],
        name=name,
    )


def mnistnet3(input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """Conv 7x7x64 (valid) x2, pool, conv 3x3x128 x2, pool, dense 512 (693,194 parameters on MNIST)."""
    return _course_cnn(input_shape, num_classes, second_pool=2, name="mnistnet3")


def cifarnet(input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """mnistnet3's layout for colour input, with 3x3 max pooling as the second pooling layer."""
    return _course_cnn(input_shape, num_classes, second_pool=3, name="cifarnet")


def lenet5(input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """LeNet-5. Inputs smaller than 32x32 are zero-padded to 32x32, as LeCun did for 28x28 MNIST."""
    height, width = input_shape[0], input_shape[1]
    stack: list[layers.Layer] = [keras.Input(input_shape)]
    if height < 32 or width < 32:
        pad_h, pad_w = max(0, 32 - height), max(0, 32 - width)
        stack.append(
            layers.ZeroPadding2D(
                ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)), name="pad"
            )
        )
    stack += [
        layers.Conv2D(6, 5, activation="tanh", name="conv1"),
        layers.AveragePooling2D(2, name="pool1"),
        layers.Conv2D(16, 5, activation="tanh", name="conv2"),
        layers.AveragePooling2D(2, name="pool2"),
        layers.Flatten(name="flatten"),
        layers.Dense(120, activation="tanh", name="dense1"),
        layers.Dense(84, activation="tanh", name="dense2"),
        layers.Dense(num_classes, activation="softmax", name="output"),
    ]
    return keras.Sequential(stack, name="lenet5")


def _conv_bn_relu(x, layer: layers.Layer, name: str):
    x = layer(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _average_all(x, name: str):
    """MLPerf Tiny's head pools the whole feature map with AveragePooling2D (an AVERAGE_POOL_2D op on
    the device, not GlobalAveragePooling2D's MEAN), then flattens."""
    x = layers.AveragePooling2D(pool_size=tuple(x.shape[1:3]), name=name)(x)
    return layers.Flatten(name="flatten")(x)


def dscnn(input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """MLPerf Tiny's keyword-spotting DS-CNN (49x10x1 MFCCs, 12 classes: 24,908 parameters): a 10x4
    stride-2 conv, four depthwise-separable blocks of 64 channels, each conv with bias, BatchNorm and
    ReLU; dropout, average pooling, softmax."""
    l2 = keras.regularizers.L2(1e-4)
    inputs = keras.Input(input_shape)
    x = _conv_bn_relu(
        inputs,
        layers.Conv2D(64, (10, 4), strides=2, padding="same", kernel_regularizer=l2, name="conv1"),
        "conv1",
    )
    x = layers.Dropout(0.2, name="dropout1")(x)
    for i in range(1, 5):
        dw = layers.DepthwiseConv2D(3, padding="same", depthwise_regularizer=l2, name=f"dw{i}")
        x = _conv_bn_relu(x, dw, f"dw{i}")
        x = _conv_bn_relu(x, layers.Conv2D(64, 1, kernel_regularizer=l2, name=f"pw{i}"), f"pw{i}")
    x = layers.Dropout(0.4, name="dropout2")(x)
    # The reference pools (H//2, W//2) of its ceil(H/2) x ceil(W/2) map: on 49x10 a 24x5 window, so its
    # last row is left out. Kept as it is, so that its trained weights give its outputs.
    window = (max(1, input_shape[0] // 2), max(1, input_shape[1] // 2))
    x = layers.AveragePooling2D(pool_size=window, name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="output")(x)
    return keras.Model(inputs, outputs, name="dscnn")


# MobileNetV1's depthwise-separable blocks as (stride, pointwise filters) at width multiplier 1.
_MOBILENET_V1_BLOCKS = [(1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512)]
_MOBILENET_V1_BLOCKS += [(1, 512)] * 5 + [(2, 1024), (1, 1024)]


def mobilenet_v1_025(input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """MLPerf Tiny's visual-wake-words MobileNetV1 at width 0.25 (96x96x3, 2 classes: 221,794
    parameters): a 3x3 stride-2 conv of 8 channels, thirteen depthwise-separable blocks up to 256
    channels, each conv with bias, BatchNorm and ReLU (not ReLU6); average pooling, softmax."""
    l2 = keras.regularizers.L2(1e-4)
    init = "he_normal"
    inputs = keras.Input(input_shape)
    conv = layers.Conv2D(
        8, 3, strides=2, padding="same", kernel_initializer=init, kernel_regularizer=l2, name="conv1"
    )
    x = _conv_bn_relu(inputs, conv, "conv1")
    for i, (strides, filters) in enumerate(_MOBILENET_V1_BLOCKS, start=1):
        dw = layers.DepthwiseConv2D(
            3,
            strides=strides,
            padding="same",
            depthwise_initializer=init,
            depthwise_regularizer=l2,
            name=f"dw{i}",
        )
        x = _conv_bn_relu(x, dw, f"dw{i}")
        pw = layers.Conv2D(filters // 4, 1, kernel_initializer=init, kernel_regularizer=l2, name=f"pw{i}")
        x = _conv_bn_relu(x, pw, f"pw{i}")
    x = _average_all(x, "pool")
    outputs = layers.Dense(num_classes, activation="softmax", name="output")(x)
    return keras.Model(inputs, outputs, name="mobilenet_v1_025")


def resnet8(input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """MLPerf Tiny's CIFAR-10 ResNet-8 (32x32x3, 10 classes: 78,666 parameters): three residual
    stacks (16, 32, 64 filters), BN, Add; average pooling over the whole map, softmax."""
    l2 = keras.regularizers.L2(1e-4)
    init = "he_normal"
    inputs = keras.Input(input_shape)
    x = layers.Conv2D(16, 3, padding="same", kernel_initializer=init, kernel_regularizer=l2, name="conv1")(
        inputs
    )
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.Activation("relu", name="relu1")(x)
    for stack, (filters, strides) in enumerate([(16, 1), (32, 2), (64, 2)], start=1):
        y = layers.Conv2D(
            filters,
            3,
            strides=strides,
            padding="same",
            kernel_initializer=init,
            kernel_regularizer=l2,
            name=f"s{stack}_conv1",
        )(x)
        y = layers.BatchNormalization(name=f"s{stack}_bn1")(y)
        y = layers.Activation("relu", name=f"s{stack}_relu1")(y)
        y = layers.Conv2D(
            filters, 3, padding="same", kernel_initializer=init, kernel_regularizer=l2, name=f"s{stack}_conv2"
        )(y)
        y = layers.BatchNormalization(name=f"s{stack}_bn2")(y)
        if strides != 1:  # the shortcut must match the block's new shape
            x = layers.Conv2D(
                filters,
                1,
                strides=strides,
                padding="same",
                kernel_initializer=init,
                kernel_regularizer=l2,
                name=f"s{stack}_short",
            )(x)
        x = layers.Add(name=f"s{stack}_add")([x, y])
        x = layers.Activation("relu", name=f"s{stack}_relu2")(x)
    x = _average_all(x, "pool")
    outputs = layers.Dense(num_classes, activation="softmax", kernel_initializer=init, name="output")(x)
    return keras.Model(inputs, outputs, name="resnet8")


def digits_cnn(input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """The small default for 8x8 digits: two 3x3 convs, a pool, a dense layer (about 38k parameters)."""
    return keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
            layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
            layers.MaxPooling2D(2, name="pool1"),
            layers.Dropout(0.25, name="dropout1"),
            layers.Flatten(name="flatten"),
            layers.Dense(64, activation="relu", name="dense1"),
            layers.Dropout(0.25, name="dropout2"),
            layers.Dense(num_classes, activation="softmax", name="output"),
        ],
        name="digits_cnn",
    )


def lstm_rows(input_shape: tuple[int, ...], num_classes: int, units: int = 128) -> keras.Model:
    """The course's recurrent example: an image read row by row, one time step per row (28 steps of 28
    features on MNIST), an LSTM, then softmax. (H, W, C) input is reshaped to H steps of W*C features."""
    inputs = keras.Input(input_shape)
    x = inputs
    if len(input_shape) == 3:
        x = layers.Reshape((input_shape[0], input_shape[1] * input_shape[2]), name="rows")(x)
    elif len(input_shape) != 2:
        raise EdgeslimError(
            f"model lstm_rows reads (steps, features) or (H, W, C) input, got shape {tuple(input_shape)}"
        )
    x = layers.LSTM(units, name="lstm")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="output")(x)
    return keras.Model(inputs, outputs, name="lstm_rows")


def autoencoder(input_shape: tuple[int, ...], num_classes: int = 0, bottleneck: int = 8) -> keras.Model:
    """MLPerf Tiny's anomaly-detection autoencoder on the flattened input: four dense 128 layers (each
    with BatchNorm and ReLU), a bottleneck of 8, four dense 128 again, and a linear dense back to the
    input size, reshaped to the input's shape. ``num_classes`` is ignored: it reconstructs its input."""
    size = math.prod(input_shape)
    inputs = keras.Input(input_shape)
    x = layers.Flatten(name="flatten")(inputs)
    for i, width in enumerate([128, 128, 128, 128, bottleneck, 128, 128, 128, 128], start=1):
        x = layers.Dense(width, name=f"dense{i}")(x)
        x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.ReLU(name=f"relu{i}")(x)
    x = layers.Dense(size, name="reconstruction")(x)
    outputs = layers.Reshape(tuple(input_shape), name="output")(x)
    return keras.Model(inputs, outputs, name="autoencoder")


MODELS: dict[str, Callable[[tuple[int, ...], int], keras.Model]] = {
    "mnistnet1": mnistnet1,
    "mnistnet2": mnistnet2,
    "mnistnet3": mnistnet3,
    "lenet5": lenet5,
    "cifarnet": cifarnet,
    "dscnn": dscnn,
    "mobilenet_v1_025": mobilenet_v1_025,
    "resnet8": resnet8,
    "digits_cnn": digits_cnn,
    "lstm_rows": lstm_rows,
    "autoencoder": autoencoder,
}
ANY_SHAPE = {"lstm_rows", "autoencoder"}  # builders that check the input's rank themselves


if set(MODELS) != set(ZOO_NAMES):  # the Keras-free name list must not drift from the builders
    raise RuntimeError(f"internal error: zoo builders {sorted(MODELS)} != zoo names {sorted(ZOO_NAMES)}")


def settle_batchnorm(model: keras.Model, x: Any) -> None:
    """Give every BatchNorm the statistics of ``x``, as training would: an untrained deep model keeps
    a fresh layer's (mean 0, variance 1), and its activations then shrink layer by layer (MobileNet's
    to quantization scales near 1e-9, which TFLite Micro refuses). For measuring untrained
    architectures (sizes, arenas, instructions) as they would deploy."""
    norms = [layer for layer in model._flatten_layers() if isinstance(layer, layers.BatchNormalization)]
    saved = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0  # one training-mode pass sets the moving statistics to the batch's
    model(x, training=True)
    for layer, momentum in zip(norms, saved, strict=True):
        layer.momentum = momentum


def build_model(
    name: str, input_shape: tuple[int, ...], num_classes: int, seed: int | None = 0
) -> keras.Model:
    """Build a zoo model by name for the given input shape and class count.

    ``seed`` fixes the initial weights (None leaves Keras' global random state as it is).
    """
    if name not in MODELS:
        raise EdgeslimError(
            f"unknown model {name!r}", f"choose one of {sorted(MODELS)} or give a .keras path"
        )
    if len(input_shape) != 3 and name not in ANY_SHAPE:
        raise EdgeslimError(f"model {name} needs image input (H, W, C), got shape {tuple(input_shape)}")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    try:
        return MODELS[name](tuple(input_shape), num_classes)
    except ValueError as exc:
        # Keras says e.g. "negative dimension" when valid convolutions shrink a small image to nothing.
        raise EdgeslimError(
            f"model {name} does not fit input shape {tuple(input_shape)}: {str(exc).splitlines()[0]}",
            "pick a model made for this input size (digits_cnn or lenet5 for 8x8, mnistnet3 for 28x28)",
        ) from None
