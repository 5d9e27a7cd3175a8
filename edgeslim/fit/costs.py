"""The cost model: what a plan will cost, priced from the layer handlers without building a model.

Pruning keeps a fraction of each producer's channels; every layer's input and output fractions follow
from the channel analysis (which producer owns each channel), and its handler prices the resized layer
(``resized``), its factorization at a rank (``Factorization.resized``) and its depthwise-separable
form (``Separation``). From those:
- parameters and multiplications, exact up to rounding of the kept channels;
- model bytes: one byte per int8 weight and four per bias element (an int8 export stores biases as
  int32; a convolution gets a zero bias when it has none, and a folded BatchNorm gives its layer one);
  with per-channel quantization, a scale and a zero point per output channel past the first on each
  weight and bias tensor; plus the file's own overhead per tensor;
- TensorFlow Lite Micro arena: a walk over the graph in execution order that keeps every buffer alive
  until its last reader has run (int8: one byte per element). A layer the converter removes (dropout,
  a folded BatchNorm, a ReLU fused into the layer before it, a Flatten before a Dense that keeps the
  last axis) has no buffer of its own: its output *is* its input's buffer, which stays alive until the
  last reader of the alias (through chains of aliases) has run. A layer may run as several ops, each
  with its own buffer: a factorized or separated layer's intermediate tensor, an activation the
  converter cannot fuse (tanh, softmax...) after the layer's own output, a BatchNorm it cannot fold
  (MUL then ADD). TFLite Micro copies for RESHAPE, so a Flatten it keeps is a buffer too. The peak of
  live bytes, plus per tensor and per output channel bookkeeping (the int32 multiplier and shift of
  each requantized channel); while preparing a per-channel layer it also holds, for a moment, the
  int32 zero points of its weight and bias tensors, which on a wide Dense outgrow the activations;
- firmware instructions, per operator with the instruction model (instructions.py) learned from
  firmware profiles (a calibration model of the core's kernels, the input model, every trial): each
  layer's operators priced by their multiplications, patch and output sizes (``op_costs``); without a
  profile, and for the host's latency, in proportion to the multiplications.
The final figures always come from the real artifact: each measurement (the input model's, then every
trial's) calibrates the model, an additive overhead for bytes and arena, a ratio for time
(``prediction_error`` says how far a prediction was from the artifact).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import median
from typing import Any

from edgeslim.analysis.tflite_model import WEIGHTED
from edgeslim.errors import ConfigError
from edgeslim.export.mcu_scheme import ARENA_BYTES_PER_CHANNEL, FILE_BYTES_PER_CHANNEL
from edgeslim.fit.instructions import ACTIVATION_OPERATORS, OPERATORS, InstructionModel, OpCost
from edgeslim.fit.space import NONE, Plan, Unit, search_space
from edgeslim.layers import Call
from edgeslim.runtime.tflm import ARENA_MARGIN

# Layers the converter removes: their output is their input's tensor.
REMOVED = (
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "ActivityRegularization",
    "Identity",
)
RESHAPES = ("Flatten", "Reshape")  # removed before a FULLY_CONNECTED when the last axis stays
# Layers whose TFLite op takes a fused ReLU/ReLU6 (the converter folds a following ReLU into them).
FUSES_RELU = (
    "Conv2D",
    "DepthwiseConv2D",
    "SeparableConv2D",
    "Dense",
    "Add",
    "Subtract",
    "Multiply",
)
FUSED_ACTIVATIONS = ("linear", "relu", "relu6")
CONSTRAINTS = (
    "max_flash",
    "max_arena",
    "max_latency_ms",
    "max_instructions",
    "max_macs",
    "board_flash",
    "board_ram",
)
# What export's board rule counts (budget.py), from the model's bytes and its arena: flash the model
# plus a constant (the reserve, or the rest of the firmware), RAM the arena with its margin plus a
# constant; the constants come from the measurements, as the other offsets do.
BOARD_COUNTS = {"board_flash": ("max_flash", 1.0), "board_ram": ("max_arena", 1.0 + ARENA_MARGIN)}
# Measured on LiteRT int8 files here: each tensor (weights, bias, activation) costs about 210 bytes of
# flatbuffer (name, shape, quantization, buffer entry); the fixed rest is calibrated from the input
# model's own export.
TENSOR_FILE_BYTES = 210
# An unrolled recurrence's per-step tensors, after export compacts the file (no names, shared tables):
# about 100 bytes each, ops included (a GRU(32) over 28 steps: 629 tensors in 63.5 KB of structure).
UNROLLED_TENSOR_BYTES = 100
INT8_BIAS_BYTES = 4  # an int8 export's bias is int32 (input scale x weight scale)
# Per export mode: bytes of a weight, of a bias element, of an activation element (float16 and
# dynamic-range files compute in float32; int16x8 keeps int16 activations and int64 biases).
MODE_BYTES = {
    "int8": (1.0, INT8_BIAS_BYTES, 1.0),
    "int16x8": (1.0, 8.0, 2.0),
    "dynamic": (1.0, 4.0, 4.0),
    "float16": (2.0, 2.0, 4.0),
    "float32": (4.0, 4.0, 4.0),
}
# TFLite Micro's arena beside the activations, as its recording allocator itemizes it on this (64-bit)
# host, where the arena is measured: a TfLiteEvalTensor per tensor (24 B), per op its node and
# registration (64 B) and its kernel's data (about 50 B), about 1 KB of fixed structures; a Cortex-M's
# pointers are half as wide, which the calibration absorbs.
TENSOR_ARENA_BYTES = 24
OP_ARENA_BYTES = 110
FIXED_ARENA_BYTES = 1000
# TFLite Micro's int8 kernels keep an int32 output multiplier and shift per output channel in the arena
# (export/mcu_scheme.py): on a small model this is a good part of the arena, and it shrinks with
# pruning, so it has to be modelled, not left in the offset.
CHANNEL_ARENA_BYTES = ARENA_BYTES_PER_CHANNEL
# Two moments need more of the arena's planned part than the activations on a small or wide model
# (micro_allocator.cc). Preparing an op, TFLite Micro copies each per-channel tensor's zero points as
# int32, with about 64 B of tensor structures per tensor of the op: a per-channel Dense(1024) with a
# bias needs 8.4 KB there, four times its activations. Planning, it holds an AllocationInfo per tensor
# (32 B) and the greedy planner's 40 B per activation buffer.
TEMP_BYTES_PER_CHANNEL = 4
TEMP_TENSOR_BYTES = 64
PLAN_TENSOR_BYTES = 32
PLAN_BUFFER_BYTES = 40


@dataclass
class _Op:
    """One TFLite op a layer becomes, as the file and the arena see it."""

    channels: float  # output channels (per-channel scales, requantization multipliers)
    constants: int  # constant tensors (weights, bias)
    per_channel: bool  # its weights and bias take per-channel scales in a per-channel plan
    multipliers: bool  # TFLite Micro keeps a multiplier and shift per channel even per tensor (convs)


class CostModel:
    def __init__(
        self,
        graph: Any,
        analysis: Any,
        units: list[Unit],
        unquantized: str = "float32",
        instructions: InstructionModel | None = None,
    ) -> None:
        """``unquantized``: the mode the target exports a plan without int8 quantization in (its export
        default: float16 for a GPU, int8 post-training for a CPU), which prices its weights.
        ``instructions``: the firmware's instruction model (None without firmware measurements)."""
        self.graph, self.analysis, self.units = graph, analysis, units
        self.instructions = instructions
        # A plan with architecture moves is priced on the moved network, built once per set of moves
        # (``network``); the calibration below stays with the root, the input model's.
        self.moves: tuple[str, ...] = ()
        self.root = self
        self._moved: dict[tuple[str, ...], CostModel | None] = {}
        self.unquantized = unquantized
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
        self.aliases, self.folded = converted_away(graph)
        self.offsets: dict[str, list[float]] = {k: [] for k in ("max_flash", "max_arena", *BOARD_COUNTS)}
        self.ratios: dict[str, list[float]] = {
            "max_latency_ms": [],
            "max_instructions": [],
            "arena_target": [],
        }
        self.rests: dict[str, list[float]] = {k: [] for k in BOARD_COUNTS}
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
    def network(self, moves: tuple[str, ...]) -> CostModel:
        """The cost model of the network ``moves`` make of the input model: this one without moves
        (ConfigError when they do not apply together)."""
        if moves == self.moves:
            return self
        root = self.root
        if moves not in root._moved:
            root._moved[moves] = None  # a set that does not apply is tried once
            root._moved[moves] = root._build_moved(moves)
        moved = root._moved[moves]
        if moved is None:
            raise ConfigError(f"architecture moves {', '.join(moves)} do not apply together")
        return moved

    def _build_moved(self, moves: tuple[str, ...]) -> CostModel:
        from edgeslim.compress.channels import ChannelAnalysis
        from edgeslim.compress.moves import Move, apply_moves
        from edgeslim.layers.graph import ModelGraph

        model = apply_moves(self.graph.model, [Move.parse(m) for m in moves])
        graph = ModelGraph(model)
        analysis = ChannelAnalysis(graph, lambda layer: True)
        units = search_space(graph, analysis, ("prune", "lowrank", "separable"))
        moved = CostModel(graph, analysis, units, self.unquantized, self.instructions)
        moved.moves, moved.root = moves, self
        return moved

    def raw(self, plan: Plan) -> dict[str, float]:
        """Parameters, multiplications, bytes and arena before calibration."""
        network = self.network(plan.moves)
        if network is not self:
            return network.raw(plan)
        keep = self.keep(plan)
        params = macs = constant_bytes = unrolled = 0.0
        outputs = float(len(self.graph.functional.inputs))  # activation tensors (the arena plans them)
        constants = 0.0  # weight and bias tensors
        ops: list[_Op] = []
        tensor_scale: dict[str, float] = {}
        steps: dict[str, list[float]] = {}  # per layer: its ops' intermediate tensors, in elements
        mode = "int8" if plan.quantize else self.unquantized
        weight_bytes, bias_bytes, element_bytes = MODE_BYTES[mode]
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
            params += layer_params
            option = plan.option("factor", name)
            if option != NONE:
                dp, dm, mid, first, _ = self._factor(node, calls[0], option, fi, fo)
                params += dp
                layer_macs += dm * len(calls)
                layer_params += dp
                if first is not None:
                    steps[name] = [mid]
                    ops.append(first)
                    constant_bytes += first.channels * bias_bytes if first.constants > 1 else 0.0
                    outputs += len(calls)
                    constants += first.constants
            macs += layer_macs
            if name in self.aliases:
                continue
            bias = node.handler.bias_size() * fo
            out, layer_steps = self._ops(node, calls[0], fi, fo)
            steps[name] = steps.get(name, []) + layer_steps
            outputs += len(calls) * (1 + len(layer_steps))
            constants += sum(op.constants for op in out)
            ops.extend(out)
            if type(node.layer).__name__ == "BatchNormalization":  # not folded: two int8 vectors
                constant_bytes += 2 * out[0].channels * weight_bytes
                continue
            constant_bytes += (layer_params - bias) * weight_bytes
            constant_bytes += sum(op.channels for op in out if op.constants > 1) * bias_bytes
            step = getattr(node.handler, "unrolled_step", None)
            if step is not None and len(calls[0].in_shape) == 3 and calls[0].in_shape[1]:
                step_tensors, step_bytes = step(fo)  # an unrolled recurrence: its ops once per step
                unrolled += int(calls[0].in_shape[1]) * (UNROLLED_TENSOR_BYTES * step_tensors + step_bytes)
        integer = mode in ("int8", "int16x8")  # requantized: scales and multipliers per channel
        per_channel = integer and plan.per_channel
        tensors = outputs + constants
        flash = constant_bytes + TENSOR_FILE_BYTES * tensors + unrolled
        if per_channel:  # one scale and zero point per channel past the first, weights and bias alike
            flash += FILE_BYTES_PER_CHANNEL * sum(
                max(0.0, op.channels - 1) * op.constants for op in ops if op.per_channel
            )
        arena = FIXED_ARENA_BYTES + TENSOR_ARENA_BYTES * tensors + OP_ARENA_BYTES * len(ops)
        if integer:
            arena += CHANNEL_ARENA_BYTES * sum(
                op.channels for op in ops if op.multipliers or (op.per_channel and plan.per_channel)
            )
        # The planned part: the peak of live activations, or what preparing or planning holds there.
        planned = [
            self._arena(tensor_scale, steps, element_bytes),
            PLAN_TENSOR_BYTES * tensors + PLAN_BUFFER_BYTES * outputs,
        ]
        if per_channel:
            planned += [_prepare_bytes(op) for op in ops if op.per_channel]
        return {"params": params, "macs": macs, "max_flash": flash, "max_arena": arena + max(planned)}

    def _ops(self, node: Any, call: Call, fi: float, fo: float) -> tuple[list[_Op], list[float]]:
        """The ops a (kept) layer becomes, and the intermediate tensors between them (elements)."""
        handler = node.handler
        kind = type(node.layer).__name__
        positions = math.prod(int(d) for d in call.out_shape[1:-1] if d is not None)
        if kind == "BatchNormalization":  # not folded: a MUL and an ADD, each with its own output
            channels = _last(call.in_shape) * fi
            return [_Op(channels, 1, False, False), _Op(channels, 1, False, False)], [
                _elements_of(call.out_shape) * fo
            ]
        kernels = handler.kernels()
        ops: list[_Op] = []
        steps: list[float] = []
        if kernels:
            conv = len(kernels[0].shape) > 2  # TFLite gives a convolution a bias, zero if need be
            in_channels = handler.in_channels() or 0
            # a depthwise conv's outputs: each input channel depth_multiplier times
            out_channels = (handler.out_channels() or in_channels * handler.depth_multiplier()) * fo
            if len(kernels) > 1 and conv:  # a separable conv: its depthwise half, then the pointwise
                half = in_channels * fi * handler.depth_multiplier()
                ops.append(_Op(half, 2, True, True))
                steps.append(positions * half)
            biased = conv or handler.bias_size() > 0 or node.name in self.folded.values()
            ops.append(_Op(out_channels, 1 + biased, True, conv))
        else:
            ops.append(_Op(0.0, len(node.layer.weights), False, False))
        unrolled = getattr(handler, "unrolled_step", None) is not None  # priced per step, in raw()
        if kernels and not unrolled and handler.activation_name() not in FUSED_ACTIVATIONS:
            steps.append(_elements_of(call.out_shape) * fo)  # the layer's output, then the activation's
            ops.append(_Op(0.0, 0, False, False))
        return ops, steps

    def op_costs(self, plan: Plan) -> list[OpCost]:
        """The TFLite operators the plan's model runs, as the instruction model prices them."""
        network = self.network(plan.moves)
        if network is not self:
            return network.op_costs(plan)
        keep = self.keep(plan)
        out: list[OpCost] = []
        for name, node in self.graph.nodes.items():
            if name in self.aliases:
                continue
            fi = self._fraction(self.in_owners[name], keep)
            fo = self._fraction(self.out_owners[name], keep)
            for call in node.call_shapes():
                out += self._call_costs(node, call, fi, fo, plan.option("factor", name))
        return out

    def _call_costs(self, node: Any, call: Call, fi: float, fo: float, option: Any) -> list[OpCost]:
        kind, handler = type(node.layer).__name__, node.handler
        cin, cout = _last(call.in_shape) * fi, _last(call.out_shape) * fo
        inputs, outputs = _elements_of(call.in_shape) * fi, _elements_of(call.out_shape) * fo
        if kind in ("Activation", "ReLU"):
            operator = ACTIVATION_OPERATORS.get(handler.activation_name(), "ACTIVATION")
            return [OpCost(operator, 0.0, cout, outputs, cin, inputs)]
        if kind == "BatchNormalization":  # not folded: a MUL, then an ADD
            scale = OpCost("MUL", 0.0, cout, outputs, cin, inputs)
            return [scale, OpCost("ADD", 0.0, cout, outputs, cout, outputs)]
        operator = OPERATORS.get(kind, kind.upper())
        macs = handler.resized(call, fi, fo)[1]
        if operator in OPERATORS.values() and operator not in WEIGHTED:
            macs = 0.0  # a pooling's division is not a multiply-accumulate to the runtime's count
        ops: list[OpCost] = []
        first = None
        if option != NONE:
            _, _, mid, _, (first, second, rank) = self._factor(node, call, option, fi, fo)
        if first:  # a factorized layer: the first factor into the intermediate tensor, then the second
            separable = option.technique == "separable"
            ops.append(OpCost("DEPTHWISE_CONV_2D" if separable else operator, first, rank, mid, cin, inputs))
            ops.append(OpCost("CONV_2D" if separable else operator, second, cout, outputs, rank, mid))
        elif kind.startswith("SeparableConv"):  # its depthwise half, then the pointwise one
            half = cin * handler.depth_multiplier()
            taps = math.prod(int(d) for d in handler.kernels()[0].shape[:-2])
            positions = outputs / cout if cout else 0.0
            dw = positions * half * taps
            ops.append(OpCost("DEPTHWISE_CONV_2D", dw, half, positions * half, cin, inputs))
            ops.append(OpCost("CONV_2D", macs - dw, cout, outputs, half, positions * half))
        else:
            ops.append(OpCost(operator, macs, cout, outputs, cin, inputs))
        activation = handler.activation_name() if handler.kernels() else "linear"
        if activation not in FUSED_ACTIVATIONS:  # an op of its own after the layer's
            operator = ACTIVATION_OPERATORS.get(activation, activation.upper())
            ops.append(OpCost(operator, 0.0, cout, outputs, cout, outputs))
        return ops

    def _factor(
        self, node: Any, call: Call, option: Any, fi: float, fo: float
    ) -> tuple[float, float, float, _Op | None, tuple[float, float, float]]:
        """(parameter change, multiplication change, intermediate tensor elements, the first factor's
        op, and the split: the first factor's multiplications, the second's, the rank between) of
        factorizing a layer."""
        out_positions = math.prod(int(d) for d in call.out_shape[1:-1] if d is not None)
        kernels = node.handler.kernels()
        conv = bool(kernels) and len(kernels[0].shape) > 2  # its factors are convolutions too
        if option.technique == "separable":
            sep = self._cached(("separation", node.name), lambda: node.handler.separation(call))
            d_out = (node.handler.out_channels() or 1) * fo
            r = max(1, min(int(option.level), sep.exact_rank, round(d_out)))  # the stage caps r the same way
            before = (sep.params_before - sep.bias) * fi * fo + sep.bias * fo  # as the handler resizes it
            d_params = sep.params(r, fi, fo) - before
            d_macs = sep.macs(r, fi, fo) - sep.macs_before * fi * fo
            d_in = (node.handler.in_channels() or 0) * fi
            split = (r * sep.dw_macs * fi, r * sep.pw_macs * fi * fo, d_in * r)
            return d_params, d_macs, out_positions * d_in * r, _Op(d_in * r, 2, True, True), split
        options = self._cached(("factorizations", node.name), lambda: node.handler.factorizations(call))
        options = [o.resized(fi, fo) for o in options if o.auto]  # the stage runs with method "auto"
        rank = max(1, round(option.level * options[0].full_rank))
        valid = [o for o in options if o.saves(min(rank, o.full_rank))]
        if not valid:  # the stage skips a split that would not save anything
            return 0.0, 0.0, 0.0, None, (0.0, 0.0, 0.0)
        best = min(valid, key=lambda o: o.macs(min(rank, o.full_rank)) - o.macs_before)  # as the stage picks
        r = min(rank, best.full_rank)
        mid_positions = out_positions
        if best.scheme == "spatial":  # the K_h x 1 conv keeps the input's width
            mid_positions = int(call.out_shape[1]) * int(call.in_shape[2])
        first = _Op(float(r), 1 + conv, True, conv)  # no bias of its own; a conv gets a zero one
        split = (r * best.macs_in, r * best.macs_out, float(r))
        d_params, d_macs = best.params(r) - best.params_before, best.macs(r) - best.macs_before
        return d_params, d_macs, mid_positions * r, first, split

    def _arena(self, scale: dict[str, float], steps: dict[str, list[float]], bytes_per: float) -> float:
        """Peak of live buffer bytes over the graph in execution order.

        An alias's output is its input's buffer (``root``); a buffer is freed once the last layer that
        reads it, directly or through aliases, has run. A layer of several ops holds its inputs through
        its first op and each intermediate tensor from the op that writes it to the op that reads it.
        """
        nodes = self.graph.operation_nodes()
        root: dict[int, int] = {id(t): id(t) for t in self.graph.functional.inputs}
        readers: dict[int, int] = {}
        for knode in nodes:
            if knode.operation.name in self.aliases:
                source = root.get(id(knode.input_tensors[0]), id(knode.input_tensors[0]))
                for t in knode.outputs:
                    root[id(t)] = source
                continue
            for t in knode.input_tensors:
                buffer = root.get(id(t), id(t))
                readers[buffer] = readers.get(buffer, 0) + 1
            for t in knode.outputs:
                root[id(t)] = id(t)
        kept = {root.get(id(t), id(t)) for t in self.graph.functional.outputs}
        size = {id(t): _elements(t) * bytes_per for t in self.graph.functional.inputs}
        live = sum(size.values())
        peak = live

        def release(knode: Any) -> float:
            freed = 0.0
            for t in knode.input_tensors:
                buffer = root.get(id(t), id(t))
                readers[buffer] -= 1
                if readers[buffer] == 0 and buffer not in kept:
                    freed += size.get(buffer, 0.0)
            return freed

        for knode in nodes:
            name = knode.operation.name
            if name in self.aliases:
                continue
            held = 0.0  # the intermediate tensor the next op reads
            for i, elements in enumerate(steps.get(name, [])):
                peak = max(peak, live + elements * bytes_per)
                live += elements * bytes_per - (release(knode) if i == 0 else held)
                held = elements * bytes_per
            produced = 0.0
            for t in knode.outputs:
                size[id(t)] = _elements(t) * scale.get(name, 1.0) * bytes_per
                produced += size[id(t)]
            peak = max(peak, live + produced)
            live += produced - (held if steps.get(name) else release(knode))
        return peak

    def predict(self, plan: Plan) -> dict[str, float]:
        """Calibrated figures per budget constraint, plus parameters and multiplications; infinite for
        architecture moves that do not apply together."""
        try:
            raw = self.raw(plan)
        except ConfigError:
            return dict.fromkeys(("params", "macs", *CONSTRAINTS), math.inf)
        out = dict(raw)
        for key in ("max_flash", "max_arena"):
            if self.offsets[key]:
                out[key] = raw[key] + median(self.offsets[key])
        if self.ratios["arena_target"]:  # the arena the firmware measures, from the host's
            out["max_arena"] *= median(self.ratios["arena_target"])
        for key, (base, factor) in BOARD_COUNTS.items():
            if self.rests[key]:  # the rest of the firmware beside the model or the arena: a constant
                out[key] = factor * out[base] + median(self.rests[key])
            elif self.offsets[key]:
                out[key] = factor * raw[base] + median(self.offsets[key])
        if self.base_latency is not None and self.base_macs:
            ratio = median(self.ratios["max_latency_ms"]) if self.ratios["max_latency_ms"] else 1.0
            out["max_latency_ms"] = self.base_latency * (raw["macs"] / self.base_macs) * ratio
        if self.instructions is not None and self.instructions.ready:
            out["max_instructions"] = self.instructions.predict(self.op_costs(plan))
        elif self.instructions_per_mac is not None:
            ratio = median(self.ratios["max_instructions"]) if self.ratios["max_instructions"] else 1.0
            out["max_instructions"] = self.instructions_per_mac * raw["macs"] * ratio
        out["max_macs"] = raw["macs"]
        return out

    def observe(
        self, plan: Plan, measured: dict[str, float | None], profile: dict[str, Any] | None = None
    ) -> None:
        """Calibrate with a real artifact's figures (bytes, arena, latency, instructions), and the
        instruction model with its firmware's per-operator ``profile``."""
        if self.instructions is not None:
            self.instructions.observe_profile(profile)
        raw = self.raw(plan)
        self.compressed_observations += plan.compressed
        arena, host = measured.get("max_arena"), measured.get("arena_host")
        if measured.get("max_flash") is not None:
            self.offsets["max_flash"].append(float(measured["max_flash"]) - raw["max_flash"])  # type: ignore[arg-type]
        # The raw arena models TFLite Micro's reference kernels on this 64-bit host, where the export's
        # bisection measures ("arena_host"): calibrate on that, additively (struct sizes, a constant).
        # The firmware's own arena (32-bit structs, CMSIS-NN's scratch buffers and the planner's
        # placement of them) is a ratio of it: an additive offset taken from the input model, 12 KB of
        # scratch and fragmentation on mnistnet3 with CMSIS-NN, once swamped a 5 KB compressed plan.
        base_arena = host if host is not None else arena
        if base_arena is not None:
            self.offsets["max_arena"].append(float(base_arena) - raw["max_arena"])
        if arena is not None and host and plan.compressed:
            # From compressed plans only: the input model's ratio (1.2 on mnistnet3 with CMSIS-NN: the
            # scratch of its wide early convolutions) does not carry over to a model a tenth its size.
            self.ratios["arena_target"].append(float(arena) / float(host))
        for key, (base, factor) in BOARD_COUNTS.items():
            if measured.get(key) is None:
                continue
            if measured.get(base) is not None:
                self.rests[key].append(float(measured[key]) - factor * float(measured[base]))  # type: ignore[arg-type]
            else:
                self.offsets[key].append(float(measured[key]) - factor * raw[base])  # type: ignore[arg-type]
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


def converted_away(graph: Any) -> tuple[set[str], dict[str, str]]:
    """The layers an int8 export leaves no op of, whose output is their input's tensor (``aliases``),
    and among them each folded BatchNorm with the layer it folds into (``folded``).

    What the converter does, as far as the graph tells: it drops dropout, noise and identities, folds a
    BatchNorm into the layer before it (the quantize stage's rule, edgeslim.layers.fold), fuses a ReLU
    or ReLU6 into the conv, Dense or Add before it when nothing else reads that layer, and drops a
    Flatten or Reshape that keeps the last axis before a Dense (FULLY_CONNECTED flattens by itself).
    Any other Flatten or Reshape stays a RESHAPE, which TFLite Micro runs as a copy into a buffer of its
    own; a BatchNorm it cannot fold is a MUL and an ADD.
    """
    from edgeslim.layers.fold import foldable

    aliases: set[str] = set()
    folded: dict[str, str] = {}
    for name, node in graph.nodes.items():
        kind = type(node.layer).__name__
        if kind in REMOVED or (kind == "Activation" and node.handler.activation_name() == "linear"):
            aliases.add(name)
        elif kind == "BatchNormalization":
            producer, _ = foldable(graph, name)
            if producer is not None:
                aliases.add(name)
                folded[name] = producer

    def readers(name: str) -> list[str]:
        """The layers that read a layer's buffer, through aliases; "" stands for a model output."""
        out = [""] if name in graph.output_names else []
        for consumer in graph.consumers(name):
            out += readers(consumer) if consumer in aliases else [consumer]
        return out

    for name, node in graph.nodes.items():
        kind, layer = type(node.layer).__name__, node.layer
        if node.calls != 1 or len(node.inputs[0]) != 1 or name in aliases:
            continue
        if kind in RESHAPES:
            call = node.call_shapes()[0]
            after = readers(name)
            dense = all(r and type(graph.nodes[r].layer).__name__ == "Dense" for r in after)
            if call.in_shape[-1] == call.out_shape[-1] and after and dense:
                aliases.add(name)
            continue
        plain = getattr(layer, "negative_slope", 0) == 0 and getattr(layer, "threshold", 0) == 0
        plain = plain and getattr(layer, "max_value", None) in (None, 6)
        if kind not in ("Activation", "ReLU") or not plain:
            continue
        if node.handler.activation_name() not in ("relu", "relu6"):
            continue
        source = node.inputs[0][0]
        while source in aliases:
            source = graph.nodes[source].inputs[0][0]
        if graph.is_input(source):
            continue
        producer = graph.nodes[source]
        if (
            type(producer.layer).__name__ in FUSES_RELU
            and producer.calls == 1
            and producer.handler.activation_name() == "linear"
            and readers(source) == [name]
        ):
            aliases.add(name)
    return aliases, folded


def prediction_error(predicted: dict[str, Any], measured: dict[str, Any]) -> dict[str, float]:
    """The relative error of a prediction against the artifact's measurement, predicted / measured - 1,
    per budget constraint present (and not None) in both: + when the cost model over-predicted. A
    constraint measured as 0 has no relative error and is left out."""
    out: dict[str, float] = {}
    for key in CONSTRAINTS:
        guess, real = predicted.get(key), measured.get(key)
        if guess is None or real is None or isinstance(guess, bool) or isinstance(real, bool):
            continue
        if float(real) == 0.0 or not (math.isfinite(float(guess)) and math.isfinite(float(real))):
            continue
        out[key] = float(guess) / float(real) - 1.0
    return out


def _prepare_bytes(op: _Op) -> float:
    """The temporary arena a per-channel op takes while TFLite Micro prepares it."""
    return TEMP_BYTES_PER_CHANNEL * op.channels * op.constants + TEMP_TENSOR_BYTES * (op.constants + 2)


def _elements(tensor: Any) -> float:
    return float(math.prod(int(d) for d in tensor.shape[1:] if d is not None))


def _elements_of(shape: Any) -> float:
    return float(math.prod(int(d) for d in shape[1:] if d is not None))


def _last(shape: Any) -> float:
    return float(shape[-1]) if shape and shape[-1] is not None else 0.0
