"""The runtime model every backend adapter shares: input checks, (de)quantization and batching.

An adapter only opens its native session and runs one chunk of already-quantized arrays
(:meth:`RuntimeModel._invoke`); everything a user sees (float in, float out, any batch size, one
clear exception type) lives here, once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeslim.runtime.errors import RuntimeModelError
from edgeslim.runtime.sidecar import check_classes, merge_specs
from edgeslim.runtime.spec import Codec, TensorSpec

ArrayInput = np.ndarray | list[np.ndarray] | tuple[np.ndarray, ...] | dict[str, np.ndarray]


class RuntimeModel:
    """A loaded artifact: ``inputs``, ``outputs`` (TensorSpec), ``backend`` and ``predict(x)``."""

    backend: str = "?"
    # The Keras model's input names and output keys per input and output, where the file records them
    # (a LiteRT signature); the converter may order several outputs differently from Keras.
    input_keys: list[str] | None = None
    output_keys: list[str] | None = None
    max_chunk = 256  # rows per native call when the artifact takes any batch size: bounds memory

    def __init__(
        self,
        path: Path,
        inputs: list[TensorSpec],
        outputs: list[TensorSpec],
        sidecar: dict[str, Any] | None,
        threads: int | None,
    ) -> None:
        self.path = path
        self.sidecar = sidecar
        self.threads = threads
        # The sidecar is trusted only where it agrees with the artifact (edgeslim.runtime.sidecar).
        self.inputs = merge_specs(inputs, (sidecar or {}).get("inputs"), path, "inputs")
        self.outputs = merge_specs(outputs, (sidecar or {}).get("outputs"), path, "outputs")
        check_classes(sidecar, self.outputs, path)
        # A fixed batch (1 for Edge TPU and microcontroller files) is served in chunks of that size.
        batches = {spec.batch for spec in self.inputs}
        self.fixed_batch: int | None = next(iter(batches)) if len(batches) == 1 else 1
        # Worked out once: predict() runs per sample on a device, where microseconds count.
        self._in_codecs = [Codec(s) for s in self.inputs]
        self._out_codecs = [Codec(s) for s in self.outputs]
        self._trailing = [tuple(s.shape[1:]) for s in self.inputs]
        self._exact = [None not in t for t in self._trailing]  # no free dims: one tuple comparison suffices
        self._float_in = [s.user_dtype.startswith("float") for s in self.inputs]

    # --- what a backend implements -------------------------------------------------------------
    def _invoke(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        """Run one chunk (artifact dtypes, a batch the artifact accepts); return the raw outputs."""
        raise NotImplementedError

    # --- the public interface ------------------------------------------------------------------
    @property
    def class_names(self) -> list[str] | None:
        return (self.sidecar or {}).get("class_names")

    @property
    def task(self) -> str | None:
        """classification, regression or reconstruction, as the export verified it (from the sidecar)."""
        sidecar = self.sidecar or {}
        return sidecar.get("task") or (sidecar.get("verification") or {}).get("task")

    @property
    def preprocessing(self) -> dict[str, Any] | None:
        """``{scale, offset, raw_dtype}``: model input = raw * scale + offset (from the sidecar)."""
        return (self.sidecar or {}).get("preprocessing")

    def predict(self, x: ArrayInput) -> np.ndarray | list[np.ndarray]:
        """Float model input (a batch of any size) in, float outputs out (one array per output)."""
        # One plain array for a one-input model is the common case; it skips the general unpacking.
        arrays = [self._check(x, 0)] if len(self.inputs) == 1 and type(x) is np.ndarray else self._arrays(x)
        n = len(arrays[0])
        feeds = [codec.encode(a) for codec, a in zip(self._in_codecs, arrays, strict=True)]
        chunk = self.fixed_batch or self.max_chunk
        if n == chunk or (self.fixed_batch is None and n <= chunk):
            raw = self._invoke(feeds)
        else:
            raw = self._chunked(feeds, n, chunk)
        if len(raw) == 1:
            return self._out_codecs[0].decode(raw[0])
        return [codec.decode(r) for codec, r in zip(self._out_codecs, raw, strict=True)]

    def predict_raw(self, raw: ArrayInput) -> np.ndarray | list[np.ndarray]:
        """Like :meth:`predict`, for raw device data (pixels): applies the sidecar's preprocessing."""
        prep = self.preprocessing
        if not prep:
            raise RuntimeModelError(
                f"{self.path}: no sidecar with preprocessing", "call predict() on model input"
            )
        scale, offset = np.float32(prep["scale"]), np.float32(prep["offset"])
        if isinstance(raw, dict | list | tuple):
            items = raw.values() if isinstance(raw, dict) else raw
            return self.predict([np.asarray(r, np.float32) * scale + offset for r in items])
        return self.predict(np.asarray(raw, np.float32) * scale + offset)

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "backend": self.backend,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
        }

    def __repr__(self) -> str:
        shapes = ", ".join(f"{s.name}{list(s.shape)}:{s.dtype}" for s in self.inputs)
        return f"<RuntimeModel {self.path.name} backend={self.backend} inputs=[{shapes}]>"

    # --- internals -----------------------------------------------------------------------------
    def _arrays(self, x: ArrayInput) -> list[np.ndarray]:
        if isinstance(x, dict):
            signature = self.input_keys or [None] * len(self.inputs)
            keys = [_key(s.name, x, k) for s, k in zip(self.inputs, signature, strict=True)]
            missing = [s.name for s, k in zip(self.inputs, keys, strict=True) if k is None]
            if missing:
                raise RuntimeModelError(
                    f"{self.path.name}: missing inputs {missing}", f"pass {self._names()}"
                )
            items = [x[k] for k in keys]
        elif isinstance(x, list | tuple) and len(self.inputs) > 1:
            items = list(x)
        else:
            items = [x]
        if len(items) != len(self.inputs):
            raise RuntimeModelError(
                f"{self.path.name}: got {len(items)} input arrays, the model takes {len(self.inputs)}",
                f"pass {self._names()}",
            )
        arrays = [self._check(item, i) for i, item in enumerate(items)]
        sizes = {len(a) for a in arrays}
        if len(sizes) > 1:
            raise RuntimeModelError(f"{self.path.name}: inputs have different batch sizes {sorted(sizes)}")
        return arrays

    def _check(self, item: Any, i: int) -> np.ndarray:
        spec = self.inputs[i]
        if type(item) is not np.ndarray:
            try:
                item = np.asarray(item)
            except (ValueError, TypeError) as exc:
                raise RuntimeModelError(
                    f"input {spec.name!r}: not an array ({exc})", "pass a numpy array"
                ) from None
        kind_ok = item.dtype.kind == "f" if self._float_in[i] else item.dtype == np.dtype(spec.user_dtype)
        if not kind_ok:
            raise RuntimeModelError(
                f"{self.path.name}: input {spec.name!r} expects {spec.user_dtype} data, got {item.dtype}",
                "pass preprocessed float input (raw * scale + offset); for raw device data use predict_raw()"
                if self._float_in[i]
                else f"convert it with x.astype('{spec.user_dtype}')",
            )
        shape = item.shape
        trailing = self._trailing[i]
        if self._exact[i]:
            ok = shape[1:] == trailing and len(shape) == len(trailing) + 1
        else:
            ok = len(shape) == len(trailing) + 1 and all(
                w is None or g == w for g, w in zip(shape[1:], trailing, strict=True)
            )
        if not ok:
            expected = ", ".join(["batch", *(str(d) if d is not None else "any" for d in trailing)])
            hint = "add a batch axis with x[None]" if shape == trailing else "reshape the input"
            raise RuntimeModelError(
                f"{self.path.name}: input {spec.name!r} expects shape ({expected}), got {tuple(shape)}", hint
            )
        if shape[0] == 0:
            raise RuntimeModelError(
                f"{self.path.name}: input {spec.name!r} is an empty batch", "pass at least one row"
            )
        return item

    def _chunked(self, feeds: list[np.ndarray], n: int, chunk: int) -> list[np.ndarray]:
        parts: list[list[np.ndarray]] = []
        for start in range(0, n, chunk):
            block = [f[start : start + chunk] for f in feeds]
            rows = len(block[0])
            if self.fixed_batch is not None and rows < chunk:  # pad the last chunk to the fixed batch
                block = [np.concatenate([b, np.zeros((chunk - rows, *b.shape[1:]), b.dtype)]) for b in block]
            parts.append([out[:rows] for out in self._invoke(block)])
        return [np.concatenate([p[i] for p in parts]) for i in range(len(self.outputs))]

    def _names(self) -> str:
        return ", ".join(f"{s.name} {list(s.shape)}" for s in self.inputs)


def _key(name: str, given: dict[str, Any], signature_key: str | None = None) -> str | None:
    """The key of ``given`` that feeds the input ``name``: the name itself, its signature key, or the
    model's input name inside it (LiteRT calls input ``audio`` ``serving_default_audio:0``)."""
    short = name.split(":")[0].removeprefix("serving_default_")
    return next((k for k in (name, signature_key, short) if k is not None and k in given), None)


def by_keys(outputs: list[np.ndarray], keys: list[str] | None, wanted: list[str]) -> list[np.ndarray]:
    """``outputs`` in the order of ``wanted`` (a Keras model's output keys) when ``keys`` names them
    all; otherwise as they are (one output, or a file without names: the converters' order)."""
    if not keys or len(keys) != len(outputs) or sorted(keys) != sorted(wanted):
        return outputs
    position = {key: i for i, key in enumerate(keys)}
    return [outputs[position[key]] for key in wanted]
