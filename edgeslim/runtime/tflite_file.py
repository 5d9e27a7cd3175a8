"""Read and check a ``.tflite`` flatbuffer in pure Python, before any native loader sees it.

A truncated or bit-flipped file can crash a native interpreter (TFLite Micro has no verifier), so
every structural fact the loaders rely on is checked here: the identifier, every offset and vector
length against the file size, every tensor, buffer and opcode index against its table, and every
constant's byte count against its shape. The same walk gives ``inspect`` its op and tensor lists.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeslim.runtime.errors import RuntimeModelError
from edgeslim.runtime.spec import TensorSpec

IDENTIFIER = b"TFL3"
MIN_BYTES = 32  # root offset, identifier and the smallest possible tables
MAX_ELEMENTS = 1 << 34  # no real model has a tensor this large; a flipped dimension does

_TYPE_NAMES: dict[int, str] = {}
_OP_NAMES: dict[int, str] = {}
_OPTION_NAMES: dict[int, str] = {}
_ACTIVATIONS: dict[int, str] = {}
# Bytes per element; string, resource and variant tensors have no fixed size.
_ITEM_BYTES = {
    name: size
    for size, names in {
        1: "UINT8 BOOL INT8",
        2: "FLOAT16 INT16 UINT16 BFLOAT16",
        4: "FLOAT32 INT32 UINT32",
        8: "INT64 COMPLEX64 FLOAT64 UINT64",
        16: "COMPLEX128",
    }.items()
    for name in names.split()
}
_SUB_BYTE = {"INT4": 0.5, "INT2": 0.25}


def _schema() -> Any:
    # LiteRT ships its flatbuffer schema as Python (it needs only the `flatbuffers` package).
    from ai_edge_litert import schema_py_generated as schema

    if not _TYPE_NAMES:  # enum value -> name tables, built once
        for table, enum in (
            (_TYPE_NAMES, schema.TensorType),
            (_OP_NAMES, schema.BuiltinOperator),
            (_OPTION_NAMES, schema.BuiltinOptions),
            (_ACTIVATIONS, schema.ActivationFunctionType),
        ):
            table.update({v: k for k, v in vars(enum).items() if not k.startswith("_")})
    return schema


@dataclass
class TFLiteTensor:
    index: int
    name: str
    type: str
    shape: list[int]
    shape_signature: list[int]
    buffer: int
    data_bytes: int  # bytes of constant data (weights); 0 for activations
    scale: list[float] = field(default_factory=list)
    zero_point: list[int] = field(default_factory=list)
    quantized_dimension: int = 0
    is_variable: bool = False  # state the runtime keeps between invocations (a fused LSTM's h and c)

    @property
    def elements(self) -> int:
        return math.prod(self.shape) if self.shape else 1

    def spec(self) -> TensorSpec:
        """As a runtime tensor: its type, and the per-tensor scale and zero point the I/O codec uses."""
        scale = self.scale[0] if self.scale else None
        zero = self.zero_point[0] if self.zero_point else None
        return TensorSpec(self.name, tuple(self.shape), self.type.lower(), scale, zero)

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("index", "name", "type", "shape", "shape_signature", "buffer")}
        out["data_bytes"] = self.data_bytes
        if self.scale:
            out["scale"] = self.scale if len(self.scale) <= 4 else f"{len(self.scale)} per-channel scales"
            out["zero_point"] = (
                self.zero_point if len(self.zero_point) <= 4 else f"{len(self.zero_point)} values"
            )
        return out


@dataclass
class TFLiteOp:
    index: int
    op: str  # BuiltinOperator name (CONV_2D), or the custom code for CUSTOM ops
    opcode_version: int
    inputs: list[int]
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "op": self.op, "inputs": self.inputs, "outputs": self.outputs}


@dataclass
class TFLiteModelInfo:
    """The main subgraph of a checked ``.tflite`` file."""

    version: int
    size: int
    subgraphs: int
    tensors: list[TFLiteTensor]
    ops: list[TFLiteOp]
    inputs: list[int]
    outputs: list[int]
    description: str = ""
    # The signature's names of the inputs and outputs, in subgraph order (the Keras model's input
    # names and output keys); None where the file has no complete signature.
    input_keys: list[str] | None = None
    output_keys: list[str] | None = None

    def op_names(self) -> list[str]:
        return [op.op for op in self.ops]

    @property
    def stateful(self) -> bool:
        """Whether the model keeps state between invocations (variable tensors, e.g. a fused LSTM's)."""
        return any(t.is_variable for t in self.tensors)


def read_tflite(data: bytes, source: str = "model") -> TFLiteModelInfo:
    """Check ``data`` as a TFLite flatbuffer and describe its main subgraph (RuntimeModelError if bad)."""
    if len(data) < MIN_BYTES:
        raise RuntimeModelError(
            f"{source}: {len(data)} bytes is too small for a .tflite model (truncated?)",
            "re-export the model",
        )
    if data[4:8] != IDENTIFIER:
        raise RuntimeModelError(
            f"{source}: not a TFLite flatbuffer (bytes 4-8 are {data[4:8]!r}, expected {IDENTIFIER!r})",
            "pass a .tflite file written by a TFLite converter, or re-export it",
        )
    try:
        return _walk(data, source)
    except RuntimeModelError:
        raise
    except (struct.error, IndexError, ValueError, TypeError, OverflowError, UnicodeDecodeError) as exc:
        # Out-of-range offsets surface as struct/index errors inside the flatbuffer accessors.
        raise RuntimeModelError(
            f"{source}: corrupt or truncated .tflite file ({type(exc).__name__}: {str(exc)[:120]})",
            "re-export the model",
        ) from None


def _bad(source: str, what: str) -> RuntimeModelError:
    return RuntimeModelError(f"{source}: corrupt .tflite file: {what}", "re-export the model")


def _length(n: int, size: int, per_item: int, source: str, what: str) -> int:
    # A flipped length would make the Python walk (and the native loader) run off the buffer or hang.
    if n < 0 or n * per_item > size:
        raise _bad(source, f"{what} claims {n} entries in a {size}-byte file")
    return n


def _ints(vector: Any) -> list[int]:
    # Absent vectors come back as the integer 0 from the generated accessors.
    return [] if isinstance(vector, int) else [int(v) for v in vector]


def _walk(data: bytes, source: str) -> TFLiteModelInfo:
    schema = _schema()
    size = len(data)
    root = struct.unpack_from("<I", data, 0)[0]
    if root + 4 > size:
        raise _bad(source, f"root table offset {root} is past the end of the file")
    model = schema.Model.GetRootAs(data, 0)
    version = model.Version()
    if version != 3:
        raise _bad(source, f"schema version {version}, expected 3")

    n_codes = _length(model.OperatorCodesLength(), size, 4, source, "operator_codes")
    op_names: list[tuple[str, int]] = []
    for i in range(n_codes):
        code = model.OperatorCodes(i)
        builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
        if builtin not in _OP_NAMES:
            raise _bad(source, f"operator code {i} has unknown builtin {builtin}")
        name = _OP_NAMES[builtin]
        if name == "CUSTOM":
            custom = code.CustomCode()
            name = custom.decode("utf-8", "replace") if custom else "CUSTOM"
        op_names.append((name, int(code.Version())))

    n_buffers = _length(model.BuffersLength(), size, 4, source, "buffers")
    buffer_bytes = [_buffer_bytes(model.Buffers(i), size, source, i) for i in range(n_buffers)]

    n_subgraphs = _length(model.SubgraphsLength(), size, 4, source, "subgraphs")
    if n_subgraphs < 1:
        raise _bad(source, "no subgraphs")
    graph = model.Subgraphs(0)
    n_tensors = _length(graph.TensorsLength(), size, 4, source, "tensors")
    tensors = [_tensor(graph.Tensors(i), i, n_buffers, buffer_bytes, source) for i in range(n_tensors)]

    inputs, outputs = _ints(graph.InputsAsNumpy()), _ints(graph.OutputsAsNumpy())
    if not inputs or not outputs:
        raise _bad(source, "the main subgraph has no inputs or no outputs")
    for idx in inputs + outputs:
        if not 0 <= idx < n_tensors:
            raise _bad(source, f"subgraph input/output tensor {idx} is out of range (0-{n_tensors - 1})")

    n_ops = _length(graph.OperatorsLength(), size, 4, source, "operators")
    ops: list[TFLiteOp] = []
    for i in range(n_ops):
        op = graph.Operators(i)
        code = int(op.OpcodeIndex())
        if not 0 <= code < n_codes:
            raise _bad(source, f"operator {i} uses opcode {code}, but there are {n_codes}")
        op_in, op_out = _ints(op.InputsAsNumpy()), _ints(op.OutputsAsNumpy())
        for t in op_in + op_out:
            if not -1 <= t < n_tensors:  # -1 marks an omitted optional input
                raise _bad(source, f"operator {i} ({op_names[code][0]}) refers to tensor {t} of {n_tensors}")
        ops.append(TFLiteOp(i, op_names[code][0], op_names[code][1], op_in, op_out, _options(schema, op)))
    description = model.Description()
    input_keys, output_keys = _signature_keys(model, inputs, outputs, n_tensors, size, source)
    return TFLiteModelInfo(
        version=version,
        size=size,
        subgraphs=n_subgraphs,
        tensors=tensors,
        ops=ops,
        inputs=inputs,
        outputs=outputs,
        description=description.decode("utf-8", "replace") if description else "",
        input_keys=input_keys,
        output_keys=output_keys,
    )


def _signature_keys(
    model: Any, inputs: list[int], outputs: list[int], n_tensors: int, size: int, source: str
) -> tuple[list[str] | None, list[str] | None]:
    """The first signature's names for the subgraph's inputs and outputs (the converter may write the
    outputs in another order than the Keras model's, so they are matched by these names)."""
    if not _length(model.SignatureDefsLength(), size, 4, source, "signature_defs"):
        return None, None
    signature = model.SignatureDefs(0)
    keys = []
    for count, get, order in (
        (signature.InputsLength(), signature.Inputs, inputs),
        (signature.OutputsLength(), signature.Outputs, outputs),
    ):
        by_tensor: dict[int, str] = {}
        for j in range(_length(count, size, 4, source, "signature tensors")):
            item = get(j)
            index, name = int(item.TensorIndex()), item.Name()
            if not 0 <= index < n_tensors:
                raise _bad(source, f"the signature names tensor {index} of {n_tensors}")
            by_tensor[index] = name.decode("utf-8", "replace") if name else ""
        complete = all(by_tensor.get(i) for i in order)
        keys.append([by_tensor[i] for i in order] if complete else None)
    return keys[0], keys[1]


def _buffer_bytes(buffer: Any, size: int, source: str, index: int) -> int:
    offset, length = int(buffer.Offset()), int(buffer.Size())
    if offset > 1:  # data stored after the flatbuffer (models over 2 GB); must still lie in the file
        if offset + length > size:
            raise _bad(source, f"buffer {index} points at bytes {offset}-{offset + length} of {size}")
        return length
    return _length(int(buffer.DataLength()), size, 1, source, f"buffer {index}")


def _tensor(tensor: Any, index: int, n_buffers: int, buffer_bytes: list[int], source: str) -> TFLiteTensor:
    type_id = int(tensor.Type())
    if type_id not in _TYPE_NAMES:
        raise _bad(source, f"tensor {index} has unknown type {type_id}")
    type_name = _TYPE_NAMES[type_id]
    shape = _ints(tensor.ShapeAsNumpy())
    signature = _ints(tensor.ShapeSignatureAsNumpy()) or list(shape)
    if len(shape) > 8 or any(d < 0 for d in shape) or any(d < -1 for d in signature):
        raise _bad(source, f"tensor {index} has an invalid shape {shape}")
    elements = math.prod(shape) if shape else 1
    if elements > MAX_ELEMENTS:
        raise _bad(source, f"tensor {index} has an impossible shape {shape}")
    buffer = int(tensor.Buffer())
    if not 0 <= buffer < max(n_buffers, 1):
        raise _bad(source, f"tensor {index} uses buffer {buffer}, but there are {n_buffers}")
    data_bytes = buffer_bytes[buffer] if n_buffers else 0
    if data_bytes and tensor.Sparsity() is None:
        expected = _expected_bytes(type_name, elements)
        if expected is not None and data_bytes != expected:
            raise _bad(source, f"tensor {index} has {data_bytes} data bytes; shape {shape} needs {expected}")
    scale: list[float] = []
    zero_point: list[int] = []
    qdim = 0
    quant = tensor.Quantization()
    if quant is not None:
        s, z = quant.ScaleAsNumpy(), quant.ZeroPointAsNumpy()
        scale = [] if isinstance(s, int) else [float(v) for v in np.asarray(s)]
        zero_point = _ints(z)
        qdim = int(quant.QuantizedDimension())
        if zero_point and len(zero_point) != len(scale):
            raise _bad(source, f"tensor {index} has {len(scale)} scales but {len(zero_point)} zero points")
        if len(scale) > 1 and not (0 <= qdim < max(len(shape), 1) and shape and shape[qdim] == len(scale)):
            raise _bad(source, f"tensor {index} has {len(scale)} per-channel scales on dimension {qdim}")
    name = tensor.Name()
    return TFLiteTensor(
        index=index,
        name=name.decode("utf-8", "replace") if name else f"tensor_{index}",
        type=type_name,
        shape=shape,
        shape_signature=signature,
        buffer=buffer,
        data_bytes=data_bytes,
        scale=scale,
        zero_point=zero_point,
        quantized_dimension=qdim,
        is_variable=bool(tensor.IsVariable()),
    )


def _expected_bytes(type_name: str, elements: int) -> int | None:
    if type_name in _ITEM_BYTES:
        return elements * _ITEM_BYTES[type_name]
    if type_name in _SUB_BYTE:  # packed sub-byte types round up to whole bytes
        return math.ceil(elements * _SUB_BYTE[type_name])
    return None


# The options the Edge TPU analysis reads: the fused activation of these ops.
_FUSED_OPTION_NAMES = "Pool2D Concatenation Conv2D DepthwiseConv2D FullyConnected Add Mul Sub"
_FUSED_OPTIONS = frozenset(f"{name}Options" for name in _FUSED_OPTION_NAMES.split())


def _options(schema: Any, op: Any) -> dict[str, Any]:
    name = _OPTION_NAMES.get(int(op.BuiltinOptionsType()))
    table = op.BuiltinOptions()
    if name not in _FUSED_OPTIONS or table is None:
        return {}
    options = getattr(schema, name)()
    options.Init(table.Bytes, table.Pos)
    activation = int(options.FusedActivationFunction())
    return {"fused_activation": _ACTIVATIONS.get(activation, str(activation))}
