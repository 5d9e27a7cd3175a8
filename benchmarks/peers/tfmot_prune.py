"""Peer baseline, run in its own process: tensorflow-model-optimization's prune_low_magnitude, then int8.

tfmot works only on tf_keras (Keras 2) models, and importing it switches the whole process to legacy
Keras (shared/STACK.md), so edgeslim never imports it: compress_mnist.py runs this script in a
subprocess. It rebuilds mnistnet3 in tf_keras, copies the baseline's weights (they copy exactly),
prunes with tfmot's PolynomialDecay schedule to the same sparsity and over the same steps as
edgeslim's gradual pruning, fine-tunes with the same optimizer (on labels: tfmot has no
distillation), strips the wrappers and converts to full int8 with the same calibration samples.

    python benchmarks/peers/tfmot_prune.py WEIGHTS.npz OUT.tflite --sparsity 0.8 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # before TensorFlow loads: tf.keras is then tf_keras (Keras 2)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[2]
MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"


def mnistnet3_tf_keras(tf_keras, input_shape, num_classes):
    layers = tf_keras.layers
    return tf_keras.Sequential(
        [
            layers.InputLayer(input_shape=input_shape),
            layers.Conv2D(64, 7, activation="relu", name="conv1"),
            layers.Conv2D(64, 7, activation="relu", name="conv2"),
            layers.MaxPooling2D(2, name="pool1"),
            layers.Dropout(0.25, name="dropout1"),
            layers.Conv2D(128, 3, activation="relu", name="conv3"),
            layers.Conv2D(128, 3, activation="relu", name="conv4"),
            layers.MaxPooling2D(2, name="pool2"),
            layers.Dropout(0.25, name="dropout2"),
            layers.Flatten(name="flatten"),
            layers.Dense(512, activation="relu", name="dense1"),
            layers.Dropout(0.5, name="dropout3"),
            layers.Dense(num_classes, activation="softmax", name="output"),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("weights", type=Path, help=".npz of the Keras 3 baseline's weights, in order")
    parser.add_argument("out", type=Path, help="where to write the int8 .tflite")
    parser.add_argument("--sparsity", type=float, default=0.8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--end-fraction", type=float, default=0.7)
    parser.add_argument("--frequency", type=int, default=10)
    parser.add_argument("--calib-samples", type=int, default=500)
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras

    sys.path.insert(0, str(REPO))
    from edgeslim.data import load_dataset  # numpy-only: no Keras 3 in this process

    data = load_dataset("mnist", MNIST_DIR)
    tf_keras.utils.set_random_seed(0)
    model = mnistnet3_tf_keras(tf_keras, data.input_shape, data.num_classes)
    stored = np.load(args.weights)
    model.set_weights([stored[f"w{i}"] for i in range(len(stored.files))])
    steps = math.ceil(len(data.x_train) / args.batch_size) * args.epochs
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0,
        final_sparsity=args.sparsity,
        begin_step=0,
        end_step=max(1, int(args.end_fraction * steps)),
        frequency=args.frequency,
    )
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    rate = tf_keras.optimizers.schedules.CosineDecay(args.lr, decay_steps=steps)
    pruned.compile(tf_keras.optimizers.Adam(rate), "sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    pruned.fit(
        data.x_train,
        data.y_train,
        batch_size=args.batch_size,
        epochs=args.epochs,
        verbose=0,
        validation_data=(data.x_val, data.y_val),
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
    )
    seconds = time.perf_counter() - start
    final = tfmot.sparsity.keras.strip_pruning(pruned)
    kernels = [w for w in final.get_weights() if w.ndim > 1]
    sparsity = 1.0 - sum(np.count_nonzero(k) for k in kernels) / sum(k.size for k in kernels)
    converter = tf.lite.TFLiteConverter.from_keras_model(final)
    samples = data.representative(args.calib_samples)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([s[None]] for s in samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    args.out.write_bytes(converter.convert())
    print(json.dumps({"kernel_sparsity": sparsity, "train_seconds": seconds, "steps": steps}))


if __name__ == "__main__":
    main()
