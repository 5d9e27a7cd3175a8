"""Which BatchNorm folds into the layer before it, and why another stays.

The quantize stage folds them (edgeslim.compress.bnfold), LiteRT does the same on conversion, and
inspect counts the multiplications of the deployed model without them: one rule for all three.
"""

from __future__ import annotations

from edgeslim.layers.batchnorm import BatchNormHandler
from edgeslim.layers.graph import ModelGraph


def foldable(graph: ModelGraph, bn_name: str) -> tuple[str | None, str]:
    """(producer to fold into, "") or (None, why not)."""
    node = graph.nodes[bn_name]
    handler = node.handler
    if not isinstance(handler, BatchNormHandler):
        return None, "a customised BatchNormalization"
    if not handler.channel_axis_ok(node.call_shapes()[0]):
        return None, "normalises a non-channel axis"
    if node.calls > 1 or len(node.inputs[0]) != 1 or graph.is_input(node.inputs[0][0]):
        return None, "no single layer before it"
    producer = graph.nodes[node.inputs[0][0]]
    layer = producer.layer
    if reason := producer.handler.why_not_fold():
        return None, f"follows {layer.name!r}: {reason}"
    if producer.calls > 1:
        return None, f"{layer.name!r} is shared between several calls"
    if producer.handler.activation_name() != "linear":
        return None, f"{layer.name!r} applies {producer.handler.activation_name()} before the BatchNorm"
    if graph.consumers(layer.name) != [bn_name] or layer.name in graph.output_names:
        return None, f"{layer.name!r} has other consumers"
    return layer.name, ""
