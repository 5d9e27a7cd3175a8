"""The one contract every layer kind implements: what edgeslim knows about it, in one place.

A handler wraps one Keras layer and answers the same small set of questions for every kind:
its parameters and multiplications per call (the course's N_p and N_x), the bytes of what it
outputs, how its channels couple to its neighbours', how to drop output units or input channels,
how to factorize or separate it, how to fold a following BatchNorm into it and how to train it
with fake-quantized weights. A question a kind cannot answer gets a reason, never a guess:
``macs`` returns None (counted as unknown, with a note) and every "cannot" method returns the
sentence that the stage records when it skips the layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import keras
import numpy as np

from edgeslim.errors import EdgeslimError

Shape = tuple[int | None, ...]

# How a layer's output channels (last axis) relate to its inputs' (see edgeslim/compress/channels.py):
PRODUCER = "producer"  # new channels, computed from all input channels (Dense, conv, recurrent)
DEPTHWISE = "depthwise"  # output channel c*m + j comes from input channel c alone
NORM = "norm"  # one parameter set per channel, channels pass through (BatchNorm)
PASS = "pass"  # channels pass through unchanged (activations, pooling, padding, dropout)
FLATTEN = "flatten"  # channels repeat once per spatial position
CONCAT = "concat"  # inputs' channels follow each other
MERGE = "merge"  # channel i of every input is one channel (Add, Multiply)
STOP = "stop"  # the layer mixes channels in a way we do not rewrite: its inputs stay whole


@dataclass(frozen=True)
class Call:
    """The shapes of one call of a layer (a shared layer has several), batch axis included."""

    inputs: tuple[Shape, ...]
    outputs: tuple[Shape, ...]

    @property
    def in_shape(self) -> Shape:
        return self.inputs[0] if self.inputs else ()

    @property
    def out_shape(self) -> Shape:
        return self.outputs[0] if self.outputs else ()


@dataclass
class Edit:
    """A layer rewritten in place: config changes for ``copy_layer`` and the new weights."""

    changes: dict[str, Any]
    weights: list[np.ndarray]


@dataclass
class Replacement:
    """What a layer becomes: new layers called in sequence on its input, and their weights.

    A first layer of the replaced layer's own class is called as the original was (every argument,
    e.g. attention's query and value); any other layer gets the original's first input.

    An empty ``layers`` list removes the layer (its input passes straight through). ``weights[i]`` is
    set on ``layers[i]`` once the new model is built; ``None`` keeps that layer's fresh initial weights.
    """

    layers: list[keras.layers.Layer]
    weights: list[list[np.ndarray] | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.weights:
            self.weights = [None] * len(self.layers)


@dataclass
class Factorization:
    """One way to split a layer's weight matrix (M x N) at rank r, priced without building anything.

    ``sigma``: singular values of that matrix. Multiplications and parameters are linear in r, with a
    part that grows with the layer's input channels and a part that grows with its output channels, so
    the price after pruning follows from the kept fractions (``resized``).
    """

    scheme: str
    sigma: np.ndarray
    m: int
    n: int
    macs_in: float  # per rank: the first factor's multiplications (scale with the input channels)
    macs_out: float  # per rank: the second factor's (scale with the output channels)
    params_in: float
    params_out: float
    macs_before: int
    params_before: int
    bias: int = 0
    auto: bool = True  # False: only an explicit ``method`` picks it (it would cost a faster kernel)

    @classmethod
    def of_matrix(
        cls, scheme: str, matrix: np.ndarray, positions: int, bias: int = 0, auto: bool = True
    ) -> Factorization:
        """A plain M x N matrix applied at ``positions`` places (pixels, time steps): M -> R -> N."""
        m, n = matrix.shape
        return cls(
            scheme,
            singular_values(matrix),
            m,
            n,
            macs_in=positions * m,
            macs_out=positions * n,
            params_in=m,
            params_out=n,
            macs_before=positions * m * n,
            params_before=m * n + bias,
            bias=bias,
            auto=auto,
        )

    @property
    def macs_per_rank(self) -> float:
        return self.macs_in + self.macs_out

    @property
    def params_per_rank(self) -> float:
        return self.params_in + self.params_out

    def macs(self, rank: int) -> int:
        return int(round(self.macs_per_rank * rank))

    def params(self, rank: int) -> int:
        return int(round(self.params_per_rank * rank + self.bias))

    def error(self, rank: int) -> float:
        """Relative Frobenius error of the rank-r truncation (Eckart-Young)."""
        total = float(np.sum(self.sigma**2))
        return 0.0 if total == 0 else math.sqrt(max(0.0, float(np.sum(self.sigma[rank:] ** 2)) / total))

    def saves(self, rank: int) -> bool:
        return rank >= 1 and (self.m + self.n) * rank < self.m * self.n

    @property
    def full_rank(self) -> int:
        return min(len(self.sigma), self.m, self.n)

    def resized(self, keep_in: float, keep_out: float) -> Factorization:
        """The same split on the layer after pruning kept these fractions of its inputs and outputs."""
        # M is the input channels, except for a table's rows and a recurrent kernel's units
        m_in = {"embedding": 1.0, "recurrent": keep_out}.get(self.scheme, keep_in)
        return Factorization(
            self.scheme,
            self.sigma,
            max(1, round(self.m * m_in)),
            max(1, round(self.n * keep_out)),
            self.macs_in * m_in,
            self.macs_out * keep_out,
            self.params_in * m_in,
            self.params_out * keep_out,
            int(round(self.macs_before * m_in * keep_out)),
            int(round((self.params_before - self.bias) * m_in * keep_out + self.bias * keep_out)),
            int(round(self.bias * keep_out)),
            self.auto,
        )


@dataclass
class Separation:
    """A K-wide convolution as depthwise (multiplier r) + pointwise, priced per rank r.

    Per rank, the depthwise part costs ``dw_macs`` (it grows with the input channels) and the pointwise
    part ``pw_macs`` (input times output channels).
    """

    exact_rank: int  # min(K^n, D_out): the rank at which the substitution is exact
    dw_macs: float
    pw_macs: float
    dw_params: float
    pw_params: float
    bias: int
    macs_before: int
    params_before: int
    slice_sigma: np.ndarray  # (D_in, exact_rank) singular values of each input channel's K^n x D_out slice

    def macs(self, rank: int, keep_in: float = 1.0, keep_out: float = 1.0) -> int:
        return int(round(rank * (self.dw_macs * keep_in + self.pw_macs * keep_in * keep_out)))

    def params(self, rank: int, keep_in: float = 1.0, keep_out: float = 1.0) -> int:
        return int(
            round(
                rank * (self.dw_params * keep_in + self.pw_params * keep_in * keep_out) + self.bias * keep_out
            )
        )

    def error(self, rank: int) -> float:
        total = float(np.sum(self.slice_sigma**2))
        return 0.0 if total == 0 else math.sqrt(float(np.sum(self.slice_sigma[:, rank:] ** 2)) / total)

    def rank_for_energy(self, energy: float) -> int:
        """The smallest r keeping ``energy`` of sum sigma^2 over all slices."""
        total = float(np.sum(self.slice_sigma**2))
        if total == 0:
            return 1
        kept = np.cumsum(np.sum(self.slice_sigma**2, axis=0)) / total
        return int(min(self.exact_rank, np.searchsorted(kept, energy - 1e-9) + 1))

    def saves(self, rank: int) -> bool:
        return self.macs(rank) < self.macs_before


class LayerHandler:
    """What edgeslim knows about one kind of Keras layer. Subclasses override what their kind supports."""

    family: ClassVar[str] = "unknown"
    handles: ClassVar[tuple[type, ...]] = ()  # Keras classes; a subclass of one is found along its MRO
    kernel_attrs: ClassVar[tuple[str, ...]] = ()  # the multiplying weights (pruned, quantized)
    bias_attr: ClassVar[str | None] = None  # the per-output-channel bias, where the kind has one

    def __init__(self, layer: keras.layers.Layer, note: str = "") -> None:
        self.layer = layer
        self.reason_unknown = note

    @property
    def name(self) -> str:
        return self.layer.name

    # -- counting ---------------------------------------------------------------------------
    def params(self) -> int:
        return int(sum(math.prod(w.shape) for w in self.layer.weights))

    def macs(self, call: Call) -> int | None:
        """Multiplications of one call (the course's N_x); None when unknown."""
        return None

    def resized(self, call: Call, keep_in: float, keep_out: float) -> tuple[float, float]:
        """(parameters, multiplications) of one call once pruning kept these fractions of the layer's
        input and output channels: what the budget search prices without rebuilding the layer."""
        return float(self.params()), float(self.macs(call) or 0)

    def bias_size(self) -> int:
        """Elements of the layer's bias (0 without one), a part of ``params()``: one per output channel,
        so pruning keeps ``keep_out`` of them. An int8 export stores them as int32, not int8."""
        bias = getattr(self.layer, self.bias_attr, None) if self.bias_attr else None
        return int(math.prod(bias.shape)) if bias is not None else 0

    def output_elements(self, call: Call) -> int:
        return sum(math.prod(int(d) for d in s[1:] if d is not None) for s in call.outputs)

    def note(self) -> str:
        """Why this layer's count is incomplete, or ""."""
        if self.reason_unknown:
            return self.reason_unknown
        return f"multiplications of {type(self.layer).__name__} are not counted" if self.params() else ""

    # -- weights ----------------------------------------------------------------------------
    def kernels(self) -> list[keras.Variable]:
        """The multiplying weights: what pruning zeroes and quantization rounds (not biases)."""
        return [getattr(self.layer, a) for a in self.kernel_attrs if getattr(self.layer, a, None) is not None]

    def quant_axes(self, kernel_index: int, per_channel: bool) -> tuple[int, ...]:
        """Axes a per-channel int8 scale reduces over (all but the output channel axis)."""
        rank = len(self.kernels()[kernel_index].shape)
        return tuple(range(rank - 1)) if per_channel else tuple(range(rank))

    # -- channels ---------------------------------------------------------------------------
    def coupling(self, call: Call) -> tuple[str, str]:
        """(coupling kind, reason when STOP)."""
        return STOP, f"{type(self.layer).__name__} is not understood by structured pruning"

    def in_channels(self) -> int | None:
        return None

    def out_channels(self) -> int | None:
        return None

    def depth_multiplier(self) -> int:
        return 1

    def output_columns(self) -> np.ndarray:
        """The weights producing each output channel, as (rows, channels): what channel norms rank."""
        kernel = np.asarray(self.kernels()[-1])
        return kernel.reshape(-1, kernel.shape[-1])

    # -- rewriting: each "why not" returns "" when the operation is possible -------------------
    def prune(self, keep_out: np.ndarray | None, keep_in: np.ndarray | None) -> Edit:
        """Drop output channels (``keep_out``) and/or input channels (``keep_in``); masks are boolean."""
        raise NotImplementedError(f"{type(self).__name__} cannot prune")

    def why_not_factorize(self) -> str:
        return f"{type(self.layer).__name__} is not factorized"

    def factorizations(self, call: Call) -> list[Factorization]:
        return []

    def factorize(self, scheme: str, rank: int, taken: set[str]) -> Replacement:
        raise NotImplementedError(f"{type(self).__name__} cannot factorize")

    def why_not_separate(self) -> str:
        return f"{type(self.layer).__name__} has no spatial kernel to separate"

    def separation(self, call: Call) -> Separation:
        raise NotImplementedError(f"{type(self).__name__} cannot separate")

    def separate(self, rank: int, taken: set[str]) -> Replacement:
        raise NotImplementedError(f"{type(self).__name__} cannot separate")

    def why_not_fold(self) -> str:
        return f"{type(self.layer).__name__} {self.name!r} cannot absorb a BatchNorm"

    def fold(self, a: np.ndarray, b: np.ndarray) -> Edit:
        """Scale output channel c by a[c] and add b[c]: y = a * layer(x) + b in one layer."""
        raise NotImplementedError(f"{type(self).__name__} cannot fold")

    def why_not_qat(self) -> str:
        return f"{type(self.layer).__name__} kernels train in float (LiteRT still quantizes them)"

    def qat_layer(self, per_channel: bool) -> keras.layers.Layer:
        """A copy computing with fake-quantized kernels (same config and weights)."""
        raise NotImplementedError(f"{type(self).__name__} has no QAT form")

    def keeps_range(self) -> bool:
        """True when LiteRT's int8 output reuses the input's scale (no new quantization point after it)."""
        return False

    # -- activations ------------------------------------------------------------------------
    def activation_name(self) -> str:
        return getattr(getattr(self.layer, "activation", None), "__name__", "linear")


class KernelBiasHandler(LayerHandler):
    """A layer computing kernel . x + bias per output channel (Dense, convolutions, transposed ones):
    the kernel grows with its input and output channels, the bias with its outputs, and a following
    BatchNorm folds in by scaling the kernel's output axis (``out_axis``) and the bias."""

    kernel_attrs = ("kernel",)
    bias_attr = "bias"
    out_axis: ClassVar[int] = -1

    def resized(self, call: Call, keep_in: float, keep_out: float) -> tuple[float, float]:
        bias = float(self.bias_size())
        kernel = self.params() - bias
        return kernel * keep_in * keep_out + bias * keep_out, (self.macs(call) or 0) * keep_in * keep_out

    def fold(self, a: np.ndarray, b: np.ndarray) -> Edit:
        w = [np.asarray(x, np.float64) for x in weights_of(self.layer)]
        bias = w[1] if self.layer.use_bias else np.zeros(len(a))
        shape = [1] * w[0].ndim
        shape[self.out_axis] = len(a)
        kernel = w[0] * a.reshape(shape)
        return Edit({"use_bias": True}, [kernel.astype(np.float32), (bias * a + b).astype(np.float32)])


def weights_of(layer: keras.layers.Layer) -> list[np.ndarray]:
    return [np.asarray(w) for w in layer.get_weights()]


def copy_layer(layer: keras.layers.Layer, **changes: Any) -> keras.layers.Layer:
    """A new, unbuilt layer with the same config (plus ``changes``)."""
    if isinstance(layer, keras.layers.Lambda) and not changes:
        # The function is already in memory: reuse it rather than deserialize code (safe mode refuses).
        return keras.layers.Lambda(
            layer.function,
            output_shape=getattr(layer, "_output_shape", None),
            mask=getattr(layer, "mask", None),
            arguments=getattr(layer, "arguments", None),
            name=layer.name,
        )
    try:
        config = layer.get_config()
        config.update(changes)
        return layer.__class__.from_config(config)
    except (NotImplementedError, TypeError, ValueError) as exc:
        raise EdgeslimError(
            f"layer {layer.name!r} ({type(layer).__name__}) cannot be copied from its config: {exc}",
            "give the class a get_config() that returns its constructor arguments",
        ) from None


def unique_name(base: str, taken: set[str]) -> str:
    """``base``, or ``base_2``, ``base_3``... whichever is free; the result is added to ``taken``."""
    name, i = base, 2
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


def spatial(shape: Shape) -> int:
    """Product of the dimensions between batch and channels (1 for a (batch, features) tensor)."""
    return math.prod(int(d) for d in shape[1:-1] if d is not None)


def svd_split(matrix: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) with A B the best rank-r approximation; sqrt(sigma) goes to each side so both factors have
    similar ranges, which int8 quantization later appreciates."""
    u, s, vt = np.linalg.svd(matrix.astype(np.float64), full_matrices=False)
    root = np.sqrt(s[:rank])
    return (u[:, :rank] * root).astype(np.float32), (root[:, None] * vt[:rank]).astype(np.float32)


def singular_values(matrix: np.ndarray) -> np.ndarray:
    return np.linalg.svd(matrix.astype(np.float64), compute_uv=False)


def keep_index(mask: np.ndarray | None, size: int) -> np.ndarray:
    return np.arange(size) if mask is None else np.flatnonzero(mask)
