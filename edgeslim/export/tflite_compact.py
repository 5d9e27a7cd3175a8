"""Shrink a converted ``.tflite`` whose bytes are mostly structure rather than weights.

An unrolled recurrence (export/recurrent.py) repeats one cell's ~15 ops per time step. The int8
weights are shared by every step, but each step's tensors carry a long name (TensorFlow's op path,
often several joined by ";"), their own quantization vectors and an empty buffer entry, so a GRU(32)
over 28 steps came out 30x its weight bytes. This rewrites the flatbuffer without changing what
it computes:

- intermediate tensors lose their names (no runtime reads them; the graph's inputs and outputs keep
  theirs, which LiteRT reports and the signature names);
- identical vectors (shapes, quantization scales and zero points, op input lists) and identical
  quantization tables are written once and referenced from every table that uses them, which the
  flatbuffer format allows and both LiteRT and TFLite Micro read;
- every tensor without data points at the shared empty buffer 0 instead of one empty buffer each;
- constant buffers stay 16-byte aligned, as the converter writes them (TFLite Micro reads int32
  biases in place).
"""

from __future__ import annotations

from typing import Any

import flatbuffers
import numpy as np

ALIGN = 16


def compact(data: bytes) -> bytes:
    """The same model in fewer bytes (see the module's docstring)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    for graph in model.subgraphs:
        keep = {int(i) for i in graph.inputs} | {int(i) for i in graph.outputs}
        shared: dict[tuple[Any, ...], Any] = {}
        for index, tensor in enumerate(graph.tensors):
            if index not in keep:
                tensor.name = b""
            if tensor.quantization is not None:
                tensor.quantization = shared.setdefault(_key(tensor.quantization), _once(tensor.quantization))
    _drop_empty_buffers(model)
    for buffer in model.buffers:
        buffer.__class__ = _aligned(schema)
    builder = _SharingBuilder(len(data))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _key(q: Any) -> tuple[Any, ...]:
    def raw(v: Any) -> bytes | None:
        return None if v is None else np.asarray(v).tobytes()

    return (raw(q.scale), raw(q.zeroPoint), raw(q.min), raw(q.max), q.quantizedDimension, q.detailsType)


def _once(q: Any) -> Any:
    """``q`` packed once: later references reuse the first table's offset."""
    packed: list[int] = []
    pack = q.Pack

    def pack_once(builder: Any) -> int:
        if not packed:
            packed.append(pack(builder))
        return packed[0]

    q.Pack = pack_once
    return q


def _drop_empty_buffers(model: Any) -> None:
    """Tensors without data share buffer 0 (the format's empty sentinel); unused buffers go."""
    old, new_index = model.buffers, {0: 0}
    kept = [old[0]]

    def remap(index: int) -> int:
        if index not in new_index:
            new_index[index] = len(kept)
            kept.append(old[index])
        return new_index[index]

    for graph in model.subgraphs:
        for tensor in graph.tensors:
            buffer = old[tensor.buffer]
            empty = (buffer.data is None or len(buffer.data) == 0) and not buffer.offset
            # A variable tensor (the fused LSTM's state) keeps a buffer of its own.
            tensor.buffer = 0 if empty and not tensor.isVariable else remap(tensor.buffer)
    for entry in model.metadata or []:
        entry.buffer = remap(entry.buffer)
    model.buffers = kept


def _aligned(schema: Any) -> type:
    class AlignedBuffer(schema.BufferT):  # type: ignore[misc, name-defined]
        def Pack(self, builder: Any) -> int:  # noqa: N802 - flatbuffers' generated name
            vector = None
            if self.data is not None and len(self.data):
                raw = np.asarray(self.data, np.uint8).tobytes()
                builder.StartVector(1, len(raw), ALIGN)
                builder.head -= len(raw)
                builder.Bytes[builder.head : builder.head + len(raw)] = raw
                vector = builder.EndVector()
            schema.BufferStart(builder)
            if vector is not None:
                schema.BufferAddData(builder, vector)
            schema.BufferAddOffset(builder, self.offset)
            schema.BufferAddSize(builder, self.size)
            return schema.BufferEnd(builder)

    return AlignedBuffer


class _SharingBuilder(flatbuffers.Builder):  # type: ignore[misc]
    """A flatbuffers builder that writes each distinct numeric vector and string once."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self._written: dict[tuple[str, bytes], int] = {}

    def CreateNumpyVector(self, x: np.ndarray) -> int:  # noqa: N802 - flatbuffers' generated name
        key = (x.dtype.str, x.tobytes())
        if key not in self._written:
            self._written[key] = super().CreateNumpyVector(x)
        return self._written[key]

    def CreateString(self, s: str | bytes, *args: Any, **kwargs: Any) -> int:  # noqa: N802
        key = ("str", s if isinstance(s, bytes) else s.encode())
        if key not in self._written:
            self._written[key] = super().CreateString(s, *args, **kwargs)
        return self._written[key]
