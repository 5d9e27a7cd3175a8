"""Where the time goes: one inference's instructions per operator, from the harness's timed run.

The harness runs the first sample once more through an interpreter whose kernels are timed one by one
(``harness/op_timer.h``); each invocation's ticks become instructions with the run's calibration.
Beside each operator: the layer (its output tensor's name, which the converter takes from the Keras
layer) and the multiplications it executes, so instructions per multiplication show which layers the
kernels handle well. The operators' sum falls short of the whole inference by the interpreter's own
work between them.
"""

from __future__ import annotations

import math
from typing import Any

from edgeslim.analysis.tflite_model import op_multiplications
from edgeslim.export.firmware.emulator import RunReport
from edgeslim.runtime.tflite_file import TFLiteModelInfo


def op_profile(info: TFLiteModelInfo, report: RunReport, instructions_per_tick: float) -> dict[str, Any]:
    """The profile for the sidecar; ``complete`` false (with why) when the invocations are not one per
    operator of the main subgraph (control flow, or more operators than the harness records)."""
    total = round(report.profile_ticks * instructions_per_tick)
    if report.profile_count != len(info.ops) or len(report.op_ticks) != len(info.ops):
        return {
            "complete": False,
            "why": f"{report.profile_count} kernel invocations for {len(info.ops)} operators",
            "instructions": total,
        }
    ops = []
    for op, ticks in zip(info.ops, report.op_ticks, strict=True):
        record = op_shape(info, op)
        instructions = round(ticks * instructions_per_tick)
        macs = record["multiplications"]
        ops.append(
            {
                "index": op.index,
                "op": op.op,
                "layer": layer_of(info.tensors[op.outputs[0]].name) if op.outputs else "",
                "instructions": instructions,
                **record,
                "instructions_per_multiplication": round(instructions / macs, 2) if macs else None,
            }
        )
    in_ops = sum(o["instructions"] for o in ops)
    return {
        "complete": True,
        "instructions": total,
        "ops_instructions": in_ops,
        "ops_share": round(in_ops / total, 4) if total else None,
        "ops": ops,
        "layers": by_layer(ops, total),
    }


def op_shape(info: TFLiteModelInfo, op: Any) -> dict[str, Any]:
    """What fit's instruction model prices an operator by (fit/instructions.py): its multiplications,
    output elements and channels, input elements and channels."""
    shape = [int(d) for d in info.tensors[op.outputs[0]].shape] if op.outputs else []
    source = [int(d) for d in info.tensors[op.inputs[0]].shape] if op.inputs and op.inputs[0] >= 0 else []
    return {
        "op": op.op,
        "multiplications": op_multiplications(info, op),
        "outputs": _elements(shape),
        "channels": shape[-1] if shape else 1,
        "inputs": _elements(source),
        "in_channels": source[-1] if source else 1,
    }


def _elements(shape: list[int]) -> int:
    return math.prod(shape[1:]) if len(shape) > 1 else 1  # past the batch axis


def layer_of(tensor_name: str) -> str:
    """The Keras layer in a converted tensor's name: "model/conv1/Relu;model/conv1/BiasAdd" -> "conv1"."""
    first = tensor_name.split(";")[0]
    parts = first.split("/")
    return parts[1] if len(parts) >= 3 else first


def by_layer(ops: list[dict[str, Any]], total: int) -> list[dict[str, Any]]:
    """The operators' instructions and multiplications summed per layer, in execution order, with the
    layer's share of the whole inference (``total``) and its instructions per multiplication."""
    layers: dict[str, dict[str, Any]] = {}
    for o in ops:
        entry = layers.setdefault(
            o["layer"], {"layer": o["layer"], "ops": [], "instructions": 0, "multiplications": 0}
        )
        entry["ops"].append(o["op"])
        entry["instructions"] += o["instructions"]
        entry["multiplications"] += o["multiplications"]
    for entry in layers.values():
        entry["share"] = round(entry["instructions"] / total, 4) if total else None
        macs = entry["multiplications"]
        entry["instructions_per_multiplication"] = round(entry["instructions"] / macs, 2) if macs else None
    return list(layers.values())
