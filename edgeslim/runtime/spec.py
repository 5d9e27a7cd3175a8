"""Tensor specs, and the codecs that let ``predict`` take and return float data for quantized tensors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# Integer types a model may use for quantized inputs and outputs (with a scale and zero point).
QUANTIZED_DTYPES = ("int8", "uint8", "int16")


@dataclass(frozen=True)
class TensorSpec:
    """One input or output. ``shape`` holds ``None`` where the artifact accepts any size (the batch)."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str
    scale: float | None = None
    zero_point: int | None = None

    @property
    def quantized(self) -> bool:
        return self.dtype in QUANTIZED_DTYPES and bool(self.scale)

    @property
    def user_dtype(self) -> str:
        """The dtype ``predict`` takes or returns: float32 for float and quantized tensors."""
        if self.quantized or self.dtype in ("float16", "float32", "float64"):
            return "float32"
        return self.dtype

    @property
    def batch(self) -> int | None:
        """The artifact's batch size, or ``None`` when any batch size is accepted."""
        return self.shape[0] if self.shape else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "scale": self.scale,
            "zero_point": self.zero_point,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorSpec:
        return cls(
            name=str(data["name"]),
            shape=tuple(None if d is None else int(d) for d in data["shape"]),
            dtype=str(data["dtype"]),
            scale=None if data.get("scale") is None else float(data["scale"]),
            zero_point=None if data.get("zero_point") is None else int(data["zero_point"]),
        )


class Codec:
    """Float <-> artifact dtype for one tensor, with its constants worked out once (``predict`` is hot)."""

    __slots__ = ("dtype", "hi", "inv_scale", "lo", "lut", "quantized", "scale", "zero")

    def __init__(self, spec: TensorSpec) -> None:
        self.quantized = spec.quantized
        self.dtype = np.dtype(spec.dtype)
        if self.quantized:
            info = np.iinfo(self.dtype)
            self.lo, self.hi = np.float32(info.min), np.float32(info.max)
            self.scale = np.float32(spec.scale)
            self.inv_scale = np.float32(1.0 / spec.scale)  # multiply by the reciprocal: cheaper than divide
            self.zero = np.float32(spec.zero_point)
            self.lut = None
            if self.dtype.itemsize == 1:  # 8-bit outputs dequantize by one table lookup, not three passes
                codes = np.arange(256, dtype=np.uint8).view(self.dtype).astype(np.float32)
                self.lut = (codes - self.zero) * self.scale

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Float model input to the artifact's type: ``q = clip(round(x / scale) + zero_point)``."""
        if not self.quantized:
            return (
                x if x.dtype == self.dtype and x.flags.c_contiguous else np.ascontiguousarray(x, self.dtype)
            )
        # rint rounds exact halves to even where TFLite's Quantize rounds them away from zero; adding the
        # zero point first saves a pass. Both differ only on exact ties, which real data almost never hits.
        q = np.multiply(x, self.inv_scale, dtype=np.float32)
        q += self.zero
        np.rint(q, out=q)
        np.maximum(q, self.lo, out=q)  # two ufuncs: cheaper per call than np.clip's Python wrapper
        np.minimum(q, self.hi, out=q)
        return q.astype(self.dtype)

    def decode(self, q: np.ndarray) -> np.ndarray:
        """The artifact's output to float: ``x = (q - zero_point) * scale``."""
        if not self.quantized:
            return q if q.dtype == np.float32 else q.astype(np.float32)
        if self.lut is not None:
            return self.lut[q.view(np.uint8)]
        x = q.astype(np.float32)
        x -= self.zero
        x *= self.scale
        return x
