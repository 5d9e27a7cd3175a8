"""The cost model: what a plan will cost, priced from the layer handlers without building a model.

Pruning keeps a fraction of each producer's channels; every layer's input and output fractions follow
from the channel analysis (which producer owns each channel), and its handler prices the resized layer
(``resized``), its factorization at a rank (``Factorization.resized``) and its depthwise-separable
form (``Separation``). From those:
- parameters and multiplications, exact up to rounding of the kept channels;
- model bytes: one byte per int8 weight, plus a per-channel scale and zero point per output channel
  when quantized per channel, plus the file's own overhead;
- TFLite Micro arena: a walk over the graph in execution order that keeps every tensor alive until its
  last reader has run (int8: one byte per element), plus the intermediate tensor a factorized or
  separated layer adds; the peak of live bytes is the arena, give or take the planner's own overhead;
- host latency and firmware instructions, in proportion to the multiplications.
The final figures always come from the real artifact: each measurement (the input model's, then every
trial's) calibrates the model, an additive overhead for bytes and arena, a ratio for time.
"""

from __future__ import annotations

import math
from statistics import median
from typing import Any

from edgeslim.export.mcu_scheme import ARENA_BYTES_PER_CHANNEL, FILE_BYTES_PER_CHANNEL
from edgeslim.fit.space import NONE, Plan, Unit
from edgeslim.layers import Call

# Layers the converter removes or TFLite Micro runs in place: their output shares their input's buffer.
ALIASES = (
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "ActivityRegularization",
    "Identity",
    "Flatten",
    "Reshape",
    "BatchNormalization",
)
# Measured on LiteRT int8 files here: each tensor (weights, bias, activation) costs about 210 bytes of
# flatbuffer (name, shape, quantization, buffer entry), and TFLite Micro's arena about 48 bytes of
# bookkeeping per tensor; the fixed rest is calibrated from the input model's own export.
TENSOR_FILE_BYTES = 210
# An unrolled recurrence's per-step tensors, after export compacts the file (no names, shared tables):
# about 100 bytes each, ops included (a GRU(32) over 28 steps: 629 tensors in 63.5 KB of structure).
UNROLLED_TENSOR_BYTES = 100
TENSOR_ARENA_BYTES = 48
# TFLite Micro's int8 kernels keep an int32 output multiplier and shift per output channel in the arena
# (export/mcu_scheme.py): on a small model this is a good part of the arena, and it shrinks with
# pruning, so it has to be modelled, not left in the offset.
CHANNEL_ARENA_BYTES = ARENA_BYTES_PER_CHANNEL


class CostModel:
    def __init__(self, graph: Any, analysis: Any, units: list[Unit], quantized: bool = True) -> None:
        self.graph, self.analysis, self.units = graph, analysis, units
        self.quantized = quantized
        unit_of = {p: u.name for u in units if u.kind == "prune" for p in u.members}
        self.channels = {name: len(ids) for name, ids in analysis.producers.items()}

        def owners(ids: Any) -> dict[str | None, int]:
            counts: dict[str | None, int] = {}
            for i in ids:
                i = int(i)
                owner = None if analysis.pinned(i) else unit_of.get(analysis.channels[i][0])
                counts[owner] = counts.get(owner, 0) + 1
            return counts

        self.in_owners = {name: owners(analysis.in_ids.get(name, [])) for name in graph.nodes}
        self.out_owners = {name: owners(analysis.out_ids.get(name, [])) for name in graph.nodes}
        self.offsets: dict[str, list[float]] = {"max_flash": [], "max_arena": []}
        self.ratios: dict[str, list[float]] = {"max_latency_ms": [], "max_instructions": []}
        self.base_macs: float | None = None
        self.base_latency: float | None = None
        self.instructions_per_mac: float | None = None
        self.compressed_observations = 0  # measured plans that change the model (not the input itself)
        self._cache: dict[tuple[str, str], Any] = {}

    def _cached(self, key: tuple[str, str], make: Any) -> Any:
        """A layer's factorizations (their SVDs) are computed once per search, not once per price."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    # -- the plan's channel fractions ---------------------------------------------------------------
    def keep(self, plan: Plan) -> dict[str, float]:
        out = {}
        for unit in self.units:
            if unit.kind != "prune":
                continue
            sparsity = (
                plan.option("prune", unit.name).level if plan.option("prune", unit.name) != NONE else 0.0
            )
            n = min(self.channels[m] for m in unit.members)
            out[unit.name] = (n - math.floor(sparsity * n)) / n
        return out

    @staticmethod
    def _fraction(counts: dict[str | None, int], keep: dict[str, float]) -> float:
        total = sum(counts.values())
        if total == 0:
            return 1.0
        return sum(c * (keep.get(owner, 1.0) if owner else 1.0) for owner, c in counts.items()) / total

    # -- prediction -----------------------------------------------------------------------------------
    def raw(self, plan: Plan) -> dict[str, float]:
        """Parameters, multiplications, bytes and arena before calibration."""
        keep = self.keep(plan)
        params = macs = channels = arena_channels = tensors = unrolled = 0.0
        tensor_scale: dict[str, float] = {}
        middle: dict[str, float] = {}
        for name, node in self.graph.nodes.items():
            fi = self._fraction(self.in_owners[name], keep)
            fo = self._fraction(self.out_owners[name], keep)
            tensor_scale[name] = fo
            calls = node.call_shapes()
            layer_params, layer_macs = 0.0, 0.0
            for i, call in enumerate(calls):
                p, m = node.handler.resized(call, fi, fo)
                layer_params = p if i == 0 else layer_params
                layer_macs += m
            option = plan.option("factor", name)
            alias = type(node.layer).__name__ in ALIASES
            tensors += 0 if alias else len(calls) + len(node.layer.weights)
            step = getattr(node.handler, "unrolled_step", None)
            if step is not None and len(calls[0].in_shape) == 3 and calls[0].in_shape[1]:
                step_tensors, step_bytes = step(fo)  # an unrolled recurrence: its ops once per step
                unrolled += int(calls[0].in_shape[1]) * (UNROLLED_TENSOR_BYTES * step_tensors + step_bytes)
            if option != NONE:
                dp, dm, mid = self._factor(node, calls[0], option, fi, fo)
                layer_params += dp
                layer_macs += dm * len(calls)
                middle[name] = mid
                tensors += 2  # the second layer's kernel and the intermediate tensor
            params += layer_params
            macs += layer_macs
            kernels = node.handler.kernels()
            if kernels:
                out_channels = (node.handler.out_channels() or 0) * fo
                channels += out_channels
                if len(kernels[0].shape) > 2 or plan.per_channel:  # see CHANNEL_ARENA_BYTES
                    arena_channels += out_channels * len(calls)
                if len(kernels) > 1 and len(kernels[0].shape) > 2:  # a separable conv's depthwise half
                    arena_channels += (node.handler.in_channels() or 0) * fi * node.handler.depth_multiplier()
        weight_bytes = 1.0 if plan.quantize else 4.0
        flash = params * weight_bytes + (
            FILE_BYTES_PER_CHANNEL * channels if plan.quantize and plan.per_channel else 0
        )
        flash += TENSOR_FILE_BYTES * tensors + unrolled
        arena = (
            self._arena(tensor_scale, middle, 1.0 if plan.quantize else 4.0) + TENSOR_ARENA_BYTES * tensors
        )
        if plan.quantize:
            arena += CHANNEL_ARENA_BYTES * arena_channels
        return {"params": params, "macs": macs, "max_flash": flash, "max_arena": arena}

    def _factor(self, node: Any, call: Call, option: Any, fi: float, fo: float) -> tuple[float, float, float]:
        """(parameter change, multiplication change, intermediate tensor elements) of factorizing a layer."""
        out_positions = math.prod(int(d) for d in call.out_shape[1:-1] if d is not None)
        if option.technique == "separable":
            sep = self._cached(("separation", node.name), lambda: node.handler.separation(call))
            d_out = (node.handler.out_channels() or 1) * fo
            r = max(1, min(int(option.level), sep.exact_rank, round(d_out)))  # the stage caps r the same way
            before = (sep.params_before - sep.bias) * fi * fo + sep.bias * fo  # as the handler resizes it
            d_params = sep.params(r, fi, fo) - before
            d_macs = sep.macs(r, fi, fo) - sep.macs_before * fi * fo
            d_in = node.handler.in_channels() or 0
            return d_params, d_macs, out_positions * d_in * fi * r
        options = self._cached(("factorizations", node.name), lambda: node.handler.factorizations(call))
        options = [o.resized(fi, fo) for o in options if o.auto]  # the stage runs with method "auto"
        rank = max(1, round(option.level * options[0].full_rank))
        valid = [o for o in options if o.saves(min(rank, o.full_rank))]
        if not valid:  # the stage skips a split that would not save anything
            return 0.0, 0.0, 0.0
        best = min(valid, key=lambda o: o.macs(min(rank, o.full_rank)) - o.macs_before)  # as the stage picks
        r = min(rank, best.full_rank)
        mid_positions = out_positions
        if best.scheme == "spatial":  # the K_h x 1 conv keeps the input's width
            mid_positions = int(call.out_shape[1]) * int(call.in_shape[2])
        return best.params(r) - best.params_before, best.macs(r) - best.macs_before, mid_positions * r

    def _arena(self, scale: dict[str, float], middle: dict[str, float], bytes_per: float) -> float:
        """Peak of live tensor bytes over the graph in execution order."""
        nodes = self.graph.operation_nodes()
        readers: dict[int, int] = {}
        for knode in nodes:
            for t in knode.input_tensors:
                readers[id(t)] = readers.get(id(t), 0) + 1
        size: dict[int, float] = {}
        for t in self.graph.functional.inputs:
            size[id(t)] = _elements(t) * bytes_per
        outputs = {id(t) for t in self.graph.functional.outputs}
        live = sum(size.values())
        peak = live
        for knode in nodes:
            name = knode.operation.name
            alias = type(knode.operation).__name__ in ALIASES
            produced = 0.0
            for t in knode.outputs:
                size[id(t)] = 0.0 if alias else _elements(t) * scale.get(name, 1.0) * bytes_per
                produced += size[id(t)]
            peak = max(peak, live + produced + middle.get(name, 0.0) * bytes_per)
            live += produced
            for t in knode.input_tensors:
                readers[id(t)] -= 1
                if readers[id(t)] == 0 and id(t) not in outputs:
                    live -= size.get(id(t), 0.0)
        return peak

    def predict(self, plan: Plan) -> dict[str, float]:
        """Calibrated figures per budget constraint, plus parameters and multiplications."""
        raw = self.raw(plan)
        out = dict(raw)
        for key in ("max_flash", "max_arena"):
            if self.offsets[key]:
                out[key] = raw[key] + median(self.offsets[key])
        if self.base_latency is not None and self.base_macs:
            ratio = median(self.ratios["max_latency_ms"]) if self.ratios["max_latency_ms"] else 1.0
            out["max_latency_ms"] = self.base_latency * (raw["macs"] / self.base_macs) * ratio
        if self.instructions_per_mac is not None:
            ratio = median(self.ratios["max_instructions"]) if self.ratios["max_instructions"] else 1.0
            out["max_instructions"] = self.instructions_per_mac * raw["macs"] * ratio
        out["max_macs"] = raw["macs"]
        return out

    def observe(self, plan: Plan, measured: dict[str, float | None]) -> None:
        """Calibrate with a real artifact's figures (bytes, arena, latency, instructions)."""
        raw = self.raw(plan)
        self.compressed_observations += bool(plan.choices)
        for key in ("max_flash", "max_arena"):
            if measured.get(key) is not None:
                self.offsets[key].append(float(measured[key]) - raw[key])  # type: ignore[arg-type]
        if measured.get("max_latency_ms") is not None:
            if self.base_latency is None:
                self.base_latency, self.base_macs = float(measured["max_latency_ms"]), raw["macs"]  # type: ignore[arg-type]
            elif self.base_macs:
                expected = self.base_latency * raw["macs"] / self.base_macs
                self.ratios["max_latency_ms"].append(float(measured["max_latency_ms"]) / max(expected, 1e-9))  # type: ignore[arg-type]
        if measured.get("max_instructions") is not None and raw["macs"]:
            if self.instructions_per_mac is None:
                self.instructions_per_mac = float(measured["max_instructions"]) / raw["macs"]  # type: ignore[arg-type]
            else:
                expected = self.instructions_per_mac * raw["macs"]
                self.ratios["max_instructions"].append(float(measured["max_instructions"]) / expected)  # type: ignore[arg-type]


def _elements(tensor: Any) -> float:
    return float(math.prod(int(d) for d in tensor.shape[1:] if d is not None))
