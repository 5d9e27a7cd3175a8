"""One handler per Keras layer family: the one place that knows how to count, shrink, factorize,
separate, fold and fake-quantize each kind (see base.LayerHandler).

``handler_for(layer)`` finds the handler along the layer's class hierarchy, so one entry covers
Conv1D/2D/3D or a user's subclass that only changes defaults. A user subclass that computes its own
``call`` may compute anything: it gets the unknown handler, which counts its parameters, says its
multiplications are unknown, and makes every stage leave it alone with that reason. Adding a layer
kind: one module with a handler, one line in HANDLERS.
"""

from __future__ import annotations

import keras

from edgeslim.layers.attention import AttentionHandler
from edgeslim.layers.base import (
    CONCAT,
    DEPTHWISE,
    FLATTEN,
    MERGE,
    NORM,
    PASS,
    PRODUCER,
    STOP,
    Call,
    Edit,
    Factorization,
    LayerHandler,
    Replacement,
    Separation,
    copy_layer,
    unique_name,
)
from edgeslim.layers.batchnorm import BatchNormHandler
from edgeslim.layers.conv import ConvHandler
from edgeslim.layers.dense import DenseHandler
from edgeslim.layers.depthwise import DepthwiseHandler
from edgeslim.layers.einsum import EinsumDenseHandler
from edgeslim.layers.elementwise import ElementwiseHandler
from edgeslim.layers.embedding import EmbeddingHandler
from edgeslim.layers.merge import MergeHandler
from edgeslim.layers.recurrent import BidirectionalHandler, RecurrentHandler
from edgeslim.layers.reshape import ReshapeHandler
from edgeslim.layers.separable_conv import SeparableConvHandler
from edgeslim.layers.transpose import TransposeConvHandler

HANDLERS: list[type[LayerHandler]] = [
    DenseHandler,
    EinsumDenseHandler,
    ConvHandler,
    DepthwiseHandler,
    SeparableConvHandler,
    TransposeConvHandler,
    BatchNormHandler,
    ElementwiseHandler,
    ReshapeHandler,
    MergeHandler,
    RecurrentHandler,
    BidirectionalHandler,
    EmbeddingHandler,
    AttentionHandler,
]

_BY_CLASS: dict[type, type[LayerHandler]] = {cls: h for h in HANDLERS for cls in h.handles}


def handler_for(layer: keras.layers.Layer) -> LayerHandler:
    """The handler for ``layer``: its own class's, the nearest registered base's, or the unknown one."""
    kind = type(layer)
    for base in kind.__mro__:
        handler = _BY_CLASS.get(base)
        if handler is None:
            continue
        if base is not kind and _computes_its_own_call(kind, base):
            return LayerHandler(
                layer, note=f"{kind.__name__} overrides {base.__name__}.call, so its count is unknown"
            )
        return handler(layer)
    return LayerHandler(layer)


def _computes_its_own_call(kind: type, base: type) -> bool:
    """A subclass outside Keras that defines ``call`` anywhere between itself and the registered base."""
    if kind.__module__.startswith("keras."):
        return False
    for cls in kind.__mro__:
        if cls is base:
            return False
        if "call" in vars(cls):
            return True
    return False


def is_known(handler: LayerHandler) -> bool:
    return type(handler) is not LayerHandler


__all__ = [
    "CONCAT",
    "DEPTHWISE",
    "FLATTEN",
    "HANDLERS",
    "MERGE",
    "NORM",
    "PASS",
    "PRODUCER",
    "STOP",
    "Call",
    "Edit",
    "Factorization",
    "LayerHandler",
    "Replacement",
    "Separation",
    "copy_layer",
    "handler_for",
    "is_known",
    "unique_name",
]
