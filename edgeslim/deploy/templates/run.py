#!/usr/bin/env python3
"""Classify .npy arrays or images with the bundled model, using edgeslim's TensorFlow-free runtime.

    python run.py sample.npy [more.npy image.png ...] [--json]

A .npy holds raw values (one sample, or a batch along the first axis) as the sensor gives them; the
sidecar's preprocessing (scale, offset) turns them into model input. Images need Pillow.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from edgeslim.runtime import RuntimeModelError, load

HERE = Path(__file__).resolve().parent
MODEL = HERE / "__MODEL_FILE__"


def read_input(path: Path, shape: list[int]) -> np.ndarray:
    if path.suffix == ".npy":
        raw = np.load(path, allow_pickle=False)
    else:
        try:
            from PIL import Image
        except ImportError:
            sys.exit(f"{path}: reading images needs Pillow (pip install pillow), or pass a .npy file")
        mode = "L" if shape[-1] == 1 else "RGB"
        image = Image.open(path).convert(mode).resize((shape[2], shape[1]))
        raw = np.asarray(image)
    sample_shape = tuple(shape[1:])
    if raw.shape == sample_shape or raw.reshape(-1).size == int(np.prod(sample_shape)):
        return raw.reshape((1, *sample_shape))
    return raw.reshape((-1, *sample_shape))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=Path)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    try:
        # An Edge TPU-compiled file runs through the libedgetpu delegate; any other on the CPU.
        model = load(MODEL)
    except RuntimeModelError as exc:
        sys.exit(f"error: {exc}")
    classes = model.class_names or []
    shape = [1 if d is None else d for d in model.inputs[0].shape]
    results = []
    for path in args.inputs:
        if not path.is_file():
            sys.exit(f"error: {path}: no such file")
        probs = model.predict_raw(read_input(path, shape))
        for i, row in enumerate(probs):
            best = int(np.argmax(row))
            label = classes[best] if best < len(classes) else str(best)
            results.append({"file": str(path), "index": i, "class": label, "score": float(row[best])})
    if args.json:
        print(json.dumps({"backend": model.backend, "predictions": results}, indent=2))
    else:
        for r in results:
            print(f"{r['file']}[{r['index']}]: {r['class']} ({r['score']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
