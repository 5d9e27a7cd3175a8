"""Which channels of a model can be removed together: the analysis behind structured pruning.

Every output feature (last axis) of every layer gets an id: a producer's channel (Dense unit, conv
filter), or -1 for a feature nothing may remove (a model input, the output of a layer we do not
understand). Ids flow through the graph: BatchNorm, activations, pooling and padding pass them on,
a depthwise conv repeats each one ``depth_multiplier`` times, Flatten tiles them over the spatial
positions (that is the Flatten -> Dense index map), Concatenate joins them. Add (and the other
element-wise merges) ties channel i of every input into one group, removed together or not at
all. A channel is pinned when it reaches a model output, a layer we cannot rewrite, or a fixed
feature through such a tie.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import keras
import numpy as np

from edgeslim.compress.graph import ModelGraph

L = keras.layers
PRODUCERS: tuple[type, ...] = (L.Dense, L.Conv1D, L.Conv2D, L.Conv3D, L.SeparableConv2D, L.SeparableConv1D)
DEPTHWISE: tuple[type, ...] = (L.DepthwiseConv2D, L.DepthwiseConv1D)
MERGES: tuple[type, ...] = (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)
PASS_THROUGH: tuple[type, ...] = (
    L.Activation,
    L.ReLU,
    L.LeakyReLU,
    L.ELU,
    L.Dropout,
    L.SpatialDropout1D,
    L.SpatialDropout2D,
    L.SpatialDropout3D,
    L.GaussianNoise,
    L.GaussianDropout,
    L.AlphaDropout,
    L.ActivityRegularization,
    L.MaxPooling1D,
    L.MaxPooling2D,
    L.MaxPooling3D,
    L.AveragePooling1D,
    L.AveragePooling2D,
    L.AveragePooling3D,
    L.GlobalAveragePooling1D,
    L.GlobalAveragePooling2D,
    L.GlobalAveragePooling3D,
    L.GlobalMaxPooling1D,
    L.GlobalMaxPooling2D,
    L.GlobalMaxPooling3D,
    L.ZeroPadding1D,
    L.ZeroPadding2D,
    L.ZeroPadding3D,
    L.Cropping1D,
    L.Cropping2D,
    L.Cropping3D,
    L.UpSampling1D,
    L.UpSampling2D,
    L.UpSampling3D,
    L.Identity,
)
FIXED = -1


def classify(layer: keras.layers.Layer, calls: int, in_rank: int, n_outputs: int) -> tuple[str, str]:
    """(role, reason): producer, depthwise, batchnorm, pass, flatten, concat, merge, or opaque + why."""
    if calls > 1:
        return "opaque", f"shared layer (called {calls} times)"
    if isinstance(layer, keras.Model):
        return "opaque", "nested model"
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        return "opaque", "channels_first data format"
    if n_outputs != 1:
        return "opaque", "more than one output"
    if type(layer) in PRODUCERS or (isinstance(layer, PRODUCERS) and not _custom(layer)):
        if getattr(layer, "groups", 1) != 1:
            return "opaque", "grouped convolution"
        return "producer", ""
    if isinstance(layer, DEPTHWISE) and not _custom(layer):
        return "depthwise", ""
    if isinstance(layer, L.BatchNormalization) and not _custom(layer):
        axis = (
            layer.axis if isinstance(layer.axis, int) else (layer.axis[0] if len(layer.axis) == 1 else None)
        )
        return (
            ("batchnorm", "")
            if axis in (-1, in_rank - 1)
            else ("opaque", "BatchNorm over a non-channel axis")
        )
    if isinstance(layer, L.Activation) and getattr(layer.activation, "__name__", "") in (
        "softmax",
        "log_softmax",
    ):
        return "opaque", "softmax couples all channels"
    if isinstance(layer, PASS_THROUGH) and not _custom(layer):
        return "pass", ""
    if isinstance(layer, L.Flatten) and not _custom(layer):
        return "flatten", ""
    if isinstance(layer, L.Concatenate) and not _custom(layer):
        return "concat", ""
    if isinstance(layer, MERGES) and not _custom(layer):
        return "merge", ""
    return "opaque", f"{type(layer).__name__} is not understood by structured pruning"


def _custom(layer: keras.layers.Layer) -> bool:
    """A user's subclass of a known layer may compute anything: treat it as unknown."""
    return not type(layer).__module__.startswith("keras.")


class ChannelAnalysis:
    def __init__(self, graph: ModelGraph, may_prune: Callable[[keras.layers.Layer], bool]) -> None:
        self.graph = graph
        self.channels: list[tuple[str, int]] = []  # id -> (producer name, channel index)
        self.parent: list[int] = []
        self.pinned_roots: dict[int, str] = {}  # root id -> why its group must stay
        self.out_ids: dict[str, np.ndarray] = {}
        self.in_ids: dict[str, list[np.ndarray]] = {}
        self.roles: dict[str, str] = {}
        self.blocked: dict[str, str] = {}  # opaque layer -> why its inputs stay whole
        self.producers: dict[str, np.ndarray] = {}  # producer name -> ids of its output channels
        for name, tensor in zip(graph.input_names, graph.functional.inputs, strict=True):
            self.out_ids[name] = np.full(_last_dim(tensor), FIXED)
        for name, node in graph.nodes.items():
            self._visit(name, node.layer, node.calls, may_prune)
        for name in graph.output_names:
            self._pin(self.out_ids[name], f"reaches the model output ({name})")

    # -- union-find over channel ids -------------------------------------------------------------
    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def _union(self, a: int, b: int, where: str) -> None:
        if a == FIXED or b == FIXED:
            self._pin(np.array([a, b]), f"joined by {where} with a tensor that cannot shrink")
            return
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra
            if rb in self.pinned_roots and ra not in self.pinned_roots:
                self.pinned_roots[ra] = self.pinned_roots.pop(rb)

    def _pin(self, ids: np.ndarray, reason: str) -> None:
        for i in np.unique(ids):
            if i != FIXED:
                self.pinned_roots.setdefault(self.find(int(i)), reason)

    def pinned(self, i: int) -> bool:
        return i == FIXED or self.find(i) in self.pinned_roots

    def pin_reason(self, i: int) -> str:
        return self.pinned_roots.get(self.find(i), "") if i != FIXED else "fixed"

    def _new(self, producer: str, n: int) -> np.ndarray:
        start = len(self.channels)
        self.channels += [(producer, k) for k in range(n)]
        self.parent += list(range(start, start + n))
        return np.arange(start, start + n)

    # -- propagation ---------------------------------------------------------------------------
    def _visit(self, name: str, layer: keras.layers.Layer, calls: int, may_prune: Callable) -> None:
        node = self.graph.nodes[name]
        ins = [self.out_ids[p] for p in node.inputs]
        self.in_ids[name] = ins
        knode = node.keras_nodes[0]
        in_shape = knode.input_tensors[0].shape if knode.input_tensors else ()
        role, reason = classify(layer, calls, len(in_shape), len(knode.outputs))
        out_dim = _last_dim(knode.outputs[0]) if role != "opaque" else None
        if role == "producer" and len(ins) == 1:
            n_in = (
                layer.pointwise_kernel.shape[-2] // layer.depth_multiplier
                if hasattr(layer, "pointwise_kernel")
                else layer.kernel.shape[-2]
            )
            if len(ins[0]) != n_in:
                role, reason = "opaque", "input features do not match the kernel"
            else:
                out = self._new(name, out_dim)
                self.producers[name] = out
                act = getattr(getattr(layer, "activation", None), "__name__", "")
                if name in self.graph.output_names:
                    self._pin(out, f"reaches the model output ({name})")
                elif act in ("softmax", "log_softmax"):
                    self._pin(out, "softmax couples its units")
                elif not may_prune(layer):
                    self._pin(out, "not selected")
        elif role == "depthwise" and len(ins) == 1:
            out = np.repeat(ins[0], layer.depth_multiplier)
        elif role in ("batchnorm", "pass") and len(ins) == 1 and out_dim == len(ins[0]):
            out = ins[0]
        elif role == "flatten" and len(ins) == 1:
            spatial = in_shape[1:-1]
            if any(d is None for d in spatial):
                role, reason = "opaque", "Flatten of a dynamic shape"
            else:
                out = np.tile(ins[0], math.prod(spatial))
        elif role == "concat":
            if layer.axis in (-1, len(in_shape) - 1):
                out = np.concatenate(ins)
            else:  # joined along a spatial axis: channel i of every input is the same channel
                role = "merge"
        elif role not in ("merge",):
            role, reason = "opaque", reason or "unexpected inputs"
        if role == "merge":
            if any(len(i) != len(ins[0]) for i in ins):
                role, reason = "opaque", "merged inputs broadcast along channels"
            else:
                for other in ins[1:]:
                    for a, b in zip(ins[0], other, strict=True):
                        self._union(int(a), int(b), name)
                out = ins[0]
        if role != "opaque" and len(out) != out_dim:
            role, reason = "opaque", "channel bookkeeping does not match the output shape"
        if role == "opaque":
            for i in ins:
                self._pin(i, f"feeds {name} ({reason})")
            self.blocked[name] = reason
            out = np.full(_last_dim(knode.outputs[0]), FIXED)
        self.roles[name] = role
        self.out_ids[name] = out

    # -- results -------------------------------------------------------------------------------
    def groups(self) -> dict[int, list[int]]:
        """Prunable groups: root id -> member ids (channels removed together)."""
        groups: dict[int, list[int]] = {}
        for i in range(len(self.channels)):
            if not self.pinned(i):
                groups.setdefault(self.find(i), []).append(i)
        return groups

    def keep_mask(self, ids: np.ndarray, removed_roots: set[int]) -> np.ndarray:
        return np.array([i == FIXED or self.find(int(i)) not in removed_roots for i in ids], dtype=bool)


def _last_dim(tensor: keras.KerasTensor) -> int:
    # An unknown channel count yields no ids; any consumer then sees a mismatch and is left whole.
    dim = tensor.shape[-1] if len(tensor.shape) else None
    return int(dim) if dim is not None else 0
