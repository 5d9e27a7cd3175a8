"""Which channels of a model can be removed together: the dry run behind structured pruning.

Every output feature (last axis) of every layer call gets an id: a producer's channel (Dense unit,
conv filter, recurrent unit), or -1 for a feature nothing may remove (a model input, the output of a
layer we do not rewrite). Ids flow through the graph by each layer's coupling (edgeslim.layers):
norm and pass-through layers pass them on, a depthwise conv repeats each one ``depth_multiplier``
times, Flatten tiles them over the spatial positions (the Flatten -> Dense index map), Concatenate
joins them. Add (and the other element-wise merges) ties channel i of every input into one group,
removed together or not at all; so does a shared layer, whose every call must see the same input
channels. A channel is pinned, with the reason, when it reaches a model output, a layer that stops
the flow, or a fixed feature through such a tie.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from edgeslim.layers import CONCAT, DEPTHWISE, FLATTEN, MERGE, NORM, PASS, PRODUCER, STOP
from edgeslim.layers.graph import ModelGraph

FIXED = -1


class ChannelAnalysis:
    def __init__(self, graph: ModelGraph, may_prune: Callable[[keras.layers.Layer], bool]) -> None:
        self.graph = graph
        self.channels: list[tuple[str, int]] = []  # id -> (producer name, channel index)
        self.parent: list[int] = []
        self.pinned_roots: dict[int, str] = {}  # root id -> why its group must stay
        self.out_ids: dict[str, np.ndarray] = {}  # (first call's) output ids of each layer / input
        self.in_ids: dict[str, np.ndarray] = {}  # a layer's input ids (calls tied together)
        self.roles: dict[str, str] = {}
        self.blocked: dict[str, str] = {}  # stopping layer -> why its inputs stay whole
        self.producers: dict[str, np.ndarray] = {}  # producer name -> ids of its output channels
        self._call_out: dict[tuple[str, int], np.ndarray] = {}
        for name, tensor in zip(graph.input_names, graph.functional.inputs, strict=True):
            self.out_ids[name] = np.full(_last_dim(tensor), FIXED)
        self._index = {
            id(k): (name, i) for name, n in graph.nodes.items() for i, k in enumerate(n.keras_nodes)
        }
        for knode in graph.operation_nodes():
            name, call = self._index[id(knode)]
            self._visit(name, graph.nodes[name], call, may_prune)
        for tensor in graph.functional.outputs:
            self._pin(self._ids_of(tensor), "reaches the model output")

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

    def _tie(self, ids: list[np.ndarray], where: str) -> bool:
        """Channel i of every array is one channel; False when their lengths differ."""
        if any(len(i) != len(ids[0]) for i in ids):
            return False
        for other in ids[1:]:
            for a, b in zip(ids[0], other, strict=True):
                self._union(int(a), int(b), where)
        return True

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
    def _ids_of(self, tensor: keras.KerasTensor) -> np.ndarray:
        op = tensor._keras_history.operation
        node_index = tensor._keras_history.node_index
        node = op._inbound_nodes[node_index]
        key = self._index.get(id(node))
        if key is None:  # a model input
            return self.out_ids.get(op.name, np.full(_last_dim(tensor), FIXED))
        ids = self._call_out.get(key)
        return ids if ids is not None else np.full(_last_dim(tensor), FIXED)

    def _visit(self, name: str, node, call: int, may_prune: Callable) -> None:  # noqa: ANN001 - a GraphNode
        """One call of a layer, in graph order (a shared layer's later calls come after its inputs)."""
        knode = node.keras_nodes[call]
        shape = node.call_shapes()[call]
        ins = [self._ids_of(t) for t in knode.input_tensors]
        if call == 0:
            role, reason = node.handler.coupling(shape)
            if len(knode.outputs) != 1 and role != STOP:
                role, reason = STOP, "more than one output"
            if role in (PRODUCER, DEPTHWISE, NORM, PASS, FLATTEN) and len(ins) != 1:
                role, reason = STOP, "unexpected inputs"
            self.in_ids[name] = ins[0] if ins else np.array([], int)
        else:  # a shared layer: every call must keep the same input channels as the first
            role, reason = self.roles[name], self.blocked.get(name, "")
            if role != STOP and not self._tie([self.in_ids[name], ins[0]], f"shared {name}"):
                role, reason = self._block_shared(name, "its calls see different channel counts")
        out = self._outputs(name, node, role, ins, shape, call, may_prune)
        if out is not None and len(out) != _last_dim(knode.outputs[0]):
            out = None
            reason = "channel bookkeeping does not match the output shape"
        if role == STOP or out is None:
            for i in ins:
                self._pin(i, f"feeds {name} ({reason or 'its inputs stay whole'})")
            if call == 0 or role != STOP:
                role, reason = (
                    self._block_shared(name, reason or "its inputs stay whole") if call else (STOP, reason)
                )
            self.blocked[name] = reason
            out = np.full(_last_dim(knode.outputs[0]), FIXED)
        self.roles[name] = role
        self._call_out[(name, call)] = out
        if call == 0:
            self.out_ids[name] = out

    def _outputs(
        self,
        name: str,
        node,
        role: str,
        ins: list,
        shape: Any,
        call: int,
        may_prune: Callable,  # noqa: ANN001
    ) -> np.ndarray | None:
        if role == PRODUCER:
            if call > 0:
                return self.producers.get(name)  # every call of a shared producer yields the same channels
            return self._producer(name, node, ins, may_prune)
        if role == DEPTHWISE:
            return np.repeat(ins[0], node.handler.depth_multiplier())
        if role in (NORM, PASS):
            return ins[0]
        if role == FLATTEN:
            return np.tile(ins[0], math.prod(int(d) for d in shape.in_shape[1:-1]))
        if role == CONCAT:
            return np.concatenate(ins)
        if role == MERGE and self._tie(ins, name):
            return ins[0]
        return None

    def _block_shared(self, name: str, reason: str) -> tuple[str, str]:
        """A later call found the layer cannot be rewritten: pin what its earlier calls already shared."""
        self._pin(self.in_ids[name], f"feeds {name} ({reason})")
        if name in self.producers:
            self._pin(self.producers[name], f"{name}: {reason}")
        return STOP, reason

    def _producer(self, name: str, node, ins: list, may_prune: Callable) -> np.ndarray | None:  # noqa: ANN001
        handler = node.handler
        n_in = handler.in_channels()
        if n_in is not None and (len(ins) != 1 or len(ins[0]) != n_in):
            return None
        out = self._new(name, int(handler.out_channels()))
        self.producers[name] = out
        if name in self.graph.output_names:
            self._pin(out, f"reaches the model output ({name})")
        elif handler.activation_name() in ("softmax", "log_softmax"):
            self._pin(out, "softmax couples its units")
        elif not may_prune(node.layer):
            self._pin(out, "not selected")
        return out

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
