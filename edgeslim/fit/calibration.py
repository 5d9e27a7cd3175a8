"""The instruction model's prior: operators of varied shapes, run once per core and kernel set.

A fit starts from the input model's profile alone, whose layers are wide; its plans are narrow (two
channels, a rank-4 depthwise half), where CMSIS-NN spends its time gathering patches rather than
multiplying. This model spans both: 1x1 to 7x7 convolutions from one to 32 channels, strided ones,
depthwise ones with multipliers 1 and 2, small and wide Dense layers, pooling. Its int8 file runs
as firmware once per (core, kernel set, sources): the profile is cached beside the fit caches and read
by every later fit on that core.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import numpy as np

from edgeslim.fit.sensitivity import fit_cache

VERSION = 1  # of the model below: a change re-measures
INPUT_SHAPE = (24, 24, 2)


def calibration_model() -> Any:
    """One input, one output; branches of varied shapes, each pooled into the classifier."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(VERSION)
    x = keras.Input(INPUT_SHAPE)
    pooled = []
    for width in (1, 4, 16):
        stem = layers.Conv2D(width, 1, activation="relu")(x)
        branches = [
            layers.Conv2D(2, 7, activation="relu")(stem),
            layers.Conv2D(8 if width > 1 else 32, 3, padding="same", activation="relu")(stem),
            layers.Conv2D(4, 5, strides=2, activation="relu")(stem),
            layers.DepthwiseConv2D(3, padding="same", activation="relu")(stem),
            layers.DepthwiseConv2D(5, depth_multiplier=2, activation="relu")(stem),
            layers.DepthwiseConv2D(7, activation="relu")(stem),
            layers.Conv2D(max(1, width // 2), 1, activation="relu")(layers.MaxPooling2D(2)(stem)),
        ]
        # TFLite Micro's CONCATENATION takes at most 10 inputs: one per width, then one of those
        pooled.append(layers.Concatenate()([layers.GlobalAveragePooling2D()(b) for b in branches]))
    small = layers.Conv2D(8, 3, strides=4, activation="relu")(x)  # 6x6x8 flattened into dense layers
    flat = layers.Flatten()(small)
    dense = layers.Dense(64, activation="relu")(flat)
    pooled.append(layers.Dense(8, activation="relu")(dense))
    joined = layers.Concatenate()(pooled)
    out = layers.Dense(10, activation="softmax")(layers.Dense(32, activation="relu")(joined))
    return keras.Model(x, out, name="instruction_calibration")


def calibration_profile(board: str, kernels: str, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The calibration model's per-operator profile on ``board``'s core with ``kernels`` (measured on
    first use, minutes at most; then read from the cache)."""
    from edgeslim.atomic import write_text
    from edgeslim.export.firmware import resolve_machine, roomy_machine
    from edgeslim.export.firmware.library import ensure_library

    machine = roomy_machine(resolve_machine(board).cpu)  # the model needs more than a micro:bit's RAM
    library = ensure_library(machine.cpu, kernels, log=log)
    key = hashlib.sha256(f"{VERSION}|{library.key}".encode()).hexdigest()[:16]
    path = fit_cache() / "instructions" / f"{machine.cpu}-{kernels}-{key}.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    if log:
        log(f"measuring the instruction model's operators on the {machine.cpu} ({kernels}), once")
    profile = _measure(machine.name, kernels)
    write_text(path, json.dumps(profile))
    return profile


def _measure(machine: str, kernels: str) -> dict[str, Any]:
    from edgeslim.export.firmware import run_firmware
    from edgeslim.export.tflite import convert
    from edgeslim.recipe import QuantRecipe

    rng = np.random.default_rng(VERSION)
    samples = rng.normal(size=(32, *INPUT_SHAPE)).astype("float32")
    data, _ = convert(calibration_model(), QuantRecipe(mode="int8"), samples, batch=1)
    return run_firmware(data, machine, samples[:1], kernels=kernels).profile
