"""Read and check an ``.onnx`` protobuf in pure Python (no ``onnx`` package, which a device lacks).

A minimal protobuf wire-format walk over ModelProto, GraphProto, NodeProto, TensorProto and
ValueInfoProto: every length must stay inside its parent, every initializer's byte count must match
its dims. That catches truncated and most bit-flipped files before onnxruntime sees them, and gives
``inspect`` the op list, opsets and parameter bytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from edgeslim.runtime.errors import RuntimeModelError

MIN_BYTES = 16

# TensorProto.DataType: name and bytes per element (None: variable-size or packed sub-byte).
DATA_TYPES: dict[int, tuple[str, float | None]] = {
    1: ("float32", 4),
    2: ("uint8", 1),
    3: ("int8", 1),
    4: ("uint16", 2),
    5: ("int16", 2),
    6: ("int32", 4),
    7: ("int64", 8),
    8: ("string", None),
    9: ("bool", 1),
    10: ("float16", 2),
    11: ("float64", 8),
    12: ("uint32", 4),
    13: ("uint64", 8),
    14: ("complex64", 8),
    15: ("complex128", 16),
    16: ("bfloat16", 2),
    17: ("float8e4m3fn", 1),
    18: ("float8e4m3fnuz", 1),
    19: ("float8e5m2", 1),
    20: ("float8e5m2fnuz", 1),
    21: ("uint4", 0.5),
    22: ("int4", 0.5),
}


class _Corrupt(Exception):
    pass


@dataclass
class OnnxValue:
    name: str
    dtype: str
    shape: list[int | str | None]  # int: fixed, str: a named (dynamic) dimension, None: unknown


@dataclass
class OnnxInitializer:
    name: str
    dtype: str
    dims: list[int]
    bytes: int

    @property
    def elements(self) -> int:
        return math.prod(self.dims) if self.dims else 1


@dataclass
class OnnxNode:
    index: int
    op: str
    domain: str
    name: str
    inputs: list[str]
    outputs: list[str]


@dataclass
class OnnxModelInfo:
    ir_version: int
    opsets: dict[str, int]
    producer: str
    size: int
    nodes: list[OnnxNode] = field(default_factory=list)
    initializers: list[OnnxInitializer] = field(default_factory=list)
    inputs: list[OnnxValue] = field(default_factory=list)
    outputs: list[OnnxValue] = field(default_factory=list)
    external_data: bool = False


def read_onnx(data: bytes, source: str = "model") -> OnnxModelInfo:
    """Check ``data`` as an ONNX ModelProto and describe it; raise RuntimeModelError if it is bad."""
    if len(data) < MIN_BYTES or data[0] != 0x08:  # a ModelProto starts with ir_version (field 1, varint)
        raise RuntimeModelError(
            f"{source}: not an ONNX model (too small or does not start with an ir_version field)",
            "pass an .onnx file written by an ONNX exporter, or re-export it",
        )
    try:
        info = _model(memoryview(data), source)
    except (_Corrupt, IndexError, UnicodeDecodeError, ValueError) as exc:
        raise RuntimeModelError(
            f"{source}: corrupt or truncated .onnx file ({exc})", "re-export the model"
        ) from None
    if not info.nodes or not info.inputs or not info.outputs:
        raise RuntimeModelError(
            f"{source}: the ONNX graph has no nodes, inputs or outputs", "re-export the model"
        )
    return info


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise _Corrupt(f"varint runs past byte {end}")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _Corrupt(f"varint longer than 10 bytes at {pos}")


def _fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, Any]]:
    """Yield (field, wire type, value); a length-delimited value is its (start, end) span."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Corrupt(f"field number 0 at byte {pos}")
        if wire == 0:
            value, pos = _varint(buf, pos, end)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            value, pos = (pos, pos + length), pos + length
        else:
            raise _Corrupt(f"unsupported wire type {wire} at byte {pos}")
        if pos > end:
            raise _Corrupt(f"field {number} runs past byte {end}")
        yield number, wire, value


def _text(buf: memoryview, span: tuple[int, int]) -> str:
    return bytes(buf[span[0] : span[1]]).decode("utf-8")


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _model(buf: memoryview, source: str) -> OnnxModelInfo:
    info = OnnxModelInfo(ir_version=0, opsets={}, producer="", size=len(buf))
    graph_span = None
    for number, wire, value in _fields(buf, 0, len(buf)):
        if number == 1 and wire == 0:
            info.ir_version = value
        elif number == 2 and wire == 2:
            info.producer = _text(buf, value)
        elif number == 8 and wire == 2:
            domain, version = "", 0
            for n, w, v in _fields(buf, *value):
                if n == 1 and w == 2:
                    domain = _text(buf, v)
                elif n == 2 and w == 0:
                    version = v
            info.opsets[domain or "ai.onnx"] = version
        elif number == 7 and wire == 2:
            graph_span = value
    if graph_span is None:
        raise _Corrupt("no graph")
    _graph(buf, graph_span, info)
    init_names = {t.name for t in info.initializers}
    info.inputs = [v for v in info.inputs if v.name not in init_names]  # IR < 4 lists weights as inputs
    return info


def _graph(buf: memoryview, span: tuple[int, int], info: OnnxModelInfo) -> None:
    for number, wire, value in _fields(buf, *span):
        if wire != 2:
            continue
        if number == 1:
            info.nodes.append(_node(buf, value, len(info.nodes)))
        elif number == 5:
            info.initializers.append(_initializer(buf, value, info))
        elif number == 11:
            info.inputs.append(_value_info(buf, value))
        elif number == 12:
            info.outputs.append(_value_info(buf, value))


def _node(buf: memoryview, span: tuple[int, int], index: int) -> OnnxNode:
    node = OnnxNode(index=index, op="", domain="", name="", inputs=[], outputs=[])
    for number, wire, value in _fields(buf, *span):
        if wire != 2:
            continue
        if number == 1:
            node.inputs.append(_text(buf, value))
        elif number == 2:
            node.outputs.append(_text(buf, value))
        elif number == 3:
            node.name = _text(buf, value)
        elif number == 4:
            node.op = _text(buf, value)
        elif number == 7:
            node.domain = _text(buf, value)
    if not node.op:
        raise _Corrupt(f"node {index} has no op_type")
    return node


def _initializer(buf: memoryview, span: tuple[int, int], info: OnnxModelInfo) -> OnnxInitializer:
    dims: list[int] = []
    data_type, name, data_bytes, typed_bytes, external = 0, "", None, 0, False
    for number, wire, value in _fields(buf, *span):
        if number == 1 and wire == 0:
            dims.append(_signed(value))
        elif number == 1 and wire == 2:  # packed repeated int64
            pos, end = value
            while pos < end:
                dim, pos = _varint(buf, pos, end)
                dims.append(_signed(dim))
        elif number == 2 and wire == 0:
            data_type = value
        elif number == 8 and wire == 2:
            name = _text(buf, value)
        elif number == 9 and wire == 2:
            data_bytes = value[1] - value[0]
        elif number in (4, 5, 7, 10, 11) and wire == 2:  # float/int32/int64/double/uint64 data, packed
            typed_bytes += value[1] - value[0]
        elif number == 13:
            external = True
    if data_type not in DATA_TYPES:
        raise _Corrupt(f"initializer {name!r} has unknown data type {data_type}")
    if any(d < 0 for d in dims) or math.prod(dims or [1]) > 1 << 34:
        raise _Corrupt(f"initializer {name!r} has invalid dims {dims}")
    dtype, item = DATA_TYPES[data_type]
    elements = math.prod(dims) if dims else 1
    if data_bytes is not None and item is not None and data_bytes != math.ceil(elements * item):
        raise _Corrupt(
            f"initializer {name!r} has {data_bytes} bytes; dims {dims} of {dtype} need {elements * item:g}"
        )
    info.external_data = info.external_data or external
    size = data_bytes if data_bytes is not None else (math.ceil(elements * item) if item else typed_bytes)
    return OnnxInitializer(name=name, dtype=dtype, dims=dims, bytes=int(size))


def _value_info(buf: memoryview, span: tuple[int, int]) -> OnnxValue:
    value_info = OnnxValue(name="", dtype="unknown", shape=[])
    for number, wire, value in _fields(buf, *span):
        if number == 1 and wire == 2:
            value_info.name = _text(buf, value)
        elif number == 2 and wire == 2:
            for n, w, tensor_span in _fields(buf, *value):
                if n == 1 and w == 2:  # TypeProto.tensor_type
                    _tensor_type(buf, tensor_span, value_info)
    return value_info


def _tensor_type(buf: memoryview, span: tuple[int, int], out: OnnxValue) -> None:
    for number, wire, value in _fields(buf, *span):
        if number == 1 and wire == 0:
            out.dtype = DATA_TYPES.get(value, (f"type{value}", None))[0]
        elif number == 2 and wire == 2:
            for n, w, dim_span in _fields(buf, *value):
                if n != 1 or w != 2:
                    continue
                dim: int | str | None = None
                for dn, dw, dv in _fields(buf, *dim_span):
                    if dn == 1 and dw == 0:
                        dim = _signed(dv)
                    elif dn == 2 and dw == 2:
                        dim = _text(buf, dv)
                out.shape.append(dim)
