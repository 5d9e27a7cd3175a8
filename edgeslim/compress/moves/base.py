"""What every architecture move shares: the move itself, the family contract, and the one repair a
move that changes a feature map's size needs (the Dense layer that reads it flattened).

A move changes the network's shape, not only a layer's width: a stride, a pooling, a smaller kernel,
a layer dropped, global pooling for a flattened classifier, a smaller input. A family proposes the
moves a graph allows (``candidates``), says why it cannot apply one (``why_not``), and applies one as
layer replacements on the graph (``replacements``); ``apply_moves`` rebuilds the model and repairs the
flattened Dense layers whose input changed. Weights carry over where they still mean something (every
convolution keeps its kernel; a cropped kernel keeps its centre), so a short distillation from the
input model starts close.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from edgeslim.errors import ConfigError

CONV_KINDS = ("Conv1D", "Conv2D", "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D")


@dataclass(frozen=True)
class Move:
    family: str
    layer: str  # the layer it applies to ("" for the model's input)
    arg: int | None = None  # the family's parameter (a kernel size)

    def label(self) -> str:
        where = self.layer or "input"
        return f"{self.family}:{where}" + (f"={self.arg}" if self.arg is not None else "")

    @classmethod
    def parse(cls, text: str) -> Move:
        """``family:layer[=arg]``, as ``label`` writes it (``input`` for the model's input)."""
        family, sep, rest = str(text).partition(":")
        layer, _, arg = rest.partition("=")
        if not sep or not family or not layer:
            raise ConfigError(
                f"architecture move {text!r}: expected family:layer[=arg]",
                "e.g. downsample:conv1, kernel:conv1=3, global_pool:flatten, drop:conv3, input:input",
            )
        if arg and not arg.isdigit():
            raise ConfigError(f"architecture move {text!r}: the argument after = must be a whole number")
        return cls(family, "" if layer == "input" else layer, int(arg) if arg else None)


class Family(Protocol):
    name: str

    def candidates(self, graph: Any) -> list[Move]: ...

    def why_not(self, graph: Any, move: Move) -> str: ...

    def replacements(self, graph: Any, move: Move) -> dict[str, Any]: ...


class LayerMove:
    """A family whose moves each apply to one layer: every layer it accepts is a candidate, and a
    layer the model lacks is refused before the family's own rules (``check``)."""

    name = ""

    def candidates(self, graph: Any) -> list[Move]:
        return [Move(self.name, n) for n in graph.nodes if not self.why_not(graph, Move(self.name, n))]

    def why_not(self, graph: Any, move: Move) -> str:
        node = graph.nodes.get(move.layer)
        return f"no layer {move.layer!r}" if node is None else self.check(graph, move, node)

    def check(self, graph: Any, move: Move, node: Any) -> str:
        raise NotImplementedError


def single_reader(graph: Any, name: str) -> str | None:
    """The one layer reading ``name``'s output, if exactly one does and it is not a model output."""
    readers = graph.consumers(name)
    if len(readers) != 1 or name in graph.output_names:
        return None
    return readers[0]


def plain_call(node: Any) -> bool:
    """One call on one input: what the moves rewire safely."""
    return node.calls == 1 and len(node.inputs[0]) == 1


def flattened_readers(graph: Any) -> dict[str, tuple[int, ...]]:
    """Each Dense that reads a Flatten of a feature map, with that map's shape (H, W, C)."""
    out = {}
    for name, node in graph.nodes.items():
        if type(node.layer).__name__ != "Flatten" or not plain_call(node):
            continue
        shape = node.call_shapes()[0].in_shape
        if len(shape) < 3:
            continue
        for reader in graph.consumers(name):
            if type(graph.nodes[reader].layer).__name__ == "Dense":
                out[reader] = tuple(int(d) for d in shape[1:])
    return out


def area_matrix(old: int, new: int) -> np.ndarray:
    """(new, old): how much of each old cell each new cell covers, when ``old`` cells are resampled to
    ``new`` over the same extent; every old cell's coverage sums to one."""
    out = np.zeros((new, old))
    for i in range(new):
        lo, hi = i * old / new, (i + 1) * old / new
        for k in range(math.floor(lo), min(old, math.ceil(hi))):
            out[i, k] = max(0.0, min(hi, k + 1) - max(lo, k))
    return out


def resample_kernel(kernel: np.ndarray, old: tuple[int, ...], new: tuple[int, ...]) -> np.ndarray:
    """A flattened Dense kernel (prod(old), N) for a feature map resized from ``old`` to ``new`` (same
    channels): each new position takes the weights of the old positions it covers, summed, so a map
    that is smooth at that scale gives the same outputs."""
    if old == new:
        return kernel
    *spatial_old, channels = old
    *spatial_new, _ = new
    w = kernel.reshape(*spatial_old, channels, kernel.shape[-1])
    for axis, (a, b) in enumerate(zip(spatial_old, spatial_new, strict=True)):
        w = np.moveaxis(np.tensordot(area_matrix(a, b), w, axes=([1], [axis])), 0, axis)
    return w.reshape(-1, kernel.shape[-1]).astype(kernel.dtype)


JOINS = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot")
SIZE_FREE = ("GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D")


def why_not_resizable(graph: Any, start: str) -> str:
    """Why the feature maps after ``start`` (a layer, or an input) cannot change size, or "": every path
    to an output must pass a global pooling, or a Flatten read only by Dense layers (which the move
    repairs), before anything that needs a fixed size (a join with another branch, a Reshape, an
    output that is itself a feature map)."""
    seen: set[str] = set()
    todo = list(graph.consumers(start))
    if start in graph.output_names:
        return f"{start} is a model output"
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        node = graph.nodes[name]
        kind = type(node.layer).__name__
        if kind in SIZE_FREE:
            continue
        if kind == "Flatten":
            readers = graph.consumers(name)
            if not readers or any(type(graph.nodes[r].layer).__name__ != "Dense" for r in readers):
                return f"{name} flattens it for something other than a Dense layer"
            continue
        if kind in JOINS:
            return f"{kind} {name} joins it with another branch of a fixed size"
        if kind == "Reshape":
            return f"Reshape {name} has a fixed target shape"
        if not plain_call(node):
            return f"{name} is shared or has several inputs"
        if name in graph.output_names and len(node.call_shapes()[0].out_shape) > 2:
            return f"the model's output {name} is a feature map"
        todo.extend(graph.consumers(name))
    return ""
