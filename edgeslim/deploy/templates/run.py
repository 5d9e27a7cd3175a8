#!/usr/bin/env python3
"""Classify .npy arrays or images with the bundled model, using edgeslim's TensorFlow-free runtime.

    python run.py sample.npy [more.npy image.png ...] [--json]

A .npy holds raw values (one sample, or a batch along the first axis) as the sensor gives them; the
sidecar's preprocessing (scale, offset) turns them into model input. PNG and JPEG files are read with
Pillow (part of the base install), resized to the model's input and scaled as 8-bit pixels (/ 255).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from edgeslim.data.folder import DEEP_MODES, DEEP_PREPROCESSING
from edgeslim.data.folder import PREPROCESSING as IMAGE_PREPROCESSING
from edgeslim.runtime import RuntimeModel, RuntimeModelError, load

HERE = Path(__file__).resolve().parent
MODEL = HERE / "__MODEL_FILE__"
# A Coral bundle's Edge TPU-compiled file (empty elsewhere): used when present, with MODEL as the fallback.
EDGETPU_FILE = "__EDGETPU_FILE__"


def open_model() -> RuntimeModel:
    """The compiled file on the Edge TPU when it can run there; else MODEL on the CPU, saying why."""
    if EDGETPU_FILE and (HERE / EDGETPU_FILE).is_file():
        try:
            return load(HERE / EDGETPU_FILE)
        except RuntimeModelError as exc:  # no libedgetpu, or no device: one line, then the CPU file
            print(f"warning: {exc.message}; running the uncompiled {MODEL.name} on the CPU", file=sys.stderr)
    elif EDGETPU_FILE:
        print(
            f"note: no {EDGETPU_FILE} here (see README.md to compile it); running {MODEL.name} on the CPU",
            file=sys.stderr,
        )
    return load(MODEL)


def model_input(path: Path, shape: list[int], prep: dict[str, float]) -> np.ndarray:
    """A .npy holds raw sensor values: the sidecar's preprocessing maps them. An image holds 8-bit pixels:
    they are mapped as `edgeslim eval --dataset folder` maps them (resized bilinearly, pixel / 255, or
    / 65535 for a 16-bit PNG)."""
    if path.suffix == ".npy":
        try:
            raw = np.load(path, allow_pickle=False).astype(np.float32)
        except (OSError, ValueError) as exc:
            sys.exit(f"error: {path}: not a numeric .npy array ({exc})")
        x = raw * np.float32(prep["scale"]) + np.float32(prep["offset"])
    else:
        from PIL import Image

        mode = "L" if shape[-1] == 1 else "RGB"
        try:
            with Image.open(path) as image:
                deep = mode == "L" and image.mode in DEEP_MODES  # 16-bit grey: "L" would clip it to 255
                image = image.convert("I" if deep else mode)
                image = image.resize((shape[2], shape[1]), Image.Resampling.BILINEAR)
        except (OSError, ValueError, SyntaxError) as exc:
            sys.exit(f"error: {path}: not a readable image ({exc})")
        pixels = np.asarray(image)
        x = (DEEP_PREPROCESSING if deep else IMAGE_PREPROCESSING).apply(pixels)
    sample_shape = tuple(shape[1:])
    if x.shape == sample_shape or x.reshape(-1).size == int(np.prod(sample_shape)):
        return x.reshape((1, *sample_shape))
    return x.reshape((-1, *sample_shape))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=Path)
    parser.add_argument("--json", action="store_true", help="print one JSON object, with every score")
    args = parser.parse_args()
    try:
        model = open_model()
        # The uncompiled file's sidecar describes both files (a compiled file added later has none).
        sidecar = json.loads(Path(f"{MODEL}.json").read_text())
    except RuntimeModelError as exc:
        sys.exit(f"error: {exc}")
    except (OSError, ValueError) as exc:
        sys.exit(f"error: {MODEL}.json: cannot read the sidecar ({exc}); copy the whole bundle")
    classes = sidecar.get("class_names") or []
    prep = sidecar.get("preprocessing") or {"scale": 1.0, "offset": 0.0}  # none recorded: raw is model input
    shape = [1 if d is None else d for d in model.inputs[0].shape]
    results = []
    for path in args.inputs:
        if not path.is_file():
            sys.exit(f"error: {path}: no such file")
        try:
            probs = model.predict(model_input(path, shape, prep))
        except RuntimeModelError as exc:
            sys.exit(f"error: {path}: {exc}")
        for i, row in enumerate(probs):
            best = int(np.argmax(row))
            label = classes[best] if best < len(classes) else str(best)
            scores = row.tolist()
            row_result = {"file": str(path), "index": i, "class": label, "score": scores[best]}
            results.append({**row_result, "scores": scores})
    if args.json:
        report = {"model": model.path.name, "backend": model.backend, "predictions": results}
        print(json.dumps(report, indent=2))
    else:
        for r in results:
            print(f"{r['file']}[{r['index']}]: {r['class']} ({r['score']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
