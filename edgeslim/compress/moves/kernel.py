"""``kernel``: a 2-D convolution's square kernel cut to a smaller odd size (7x7 to 5x5 or 3x3), from
its centre: exact when the cut ring is zero, otherwise the centre taps, which carry most of a trained
kernel's weight. With ``valid`` padding the output grows by the taps removed; ``same`` keeps it."""

from __future__ import annotations

from typing import Any

from edgeslim.compress.moves.base import LayerMove, Move, plain_call, why_not_resizable

KINDS = ("Conv2D", "DepthwiseConv2D")
SMALLEST = 3


class Kernel(LayerMove):
    name = "kernel"

    def candidates(self, graph: Any) -> list[Move]:
        out = []
        for name, node in graph.nodes.items():
            size = _size(node.layer)
            for new in range(size - 2, SMALLEST - 1, -2) if size else ():
                if not self.why_not(graph, Move(self.name, name, new)):
                    out.append(Move(self.name, name, new))
        return out

    def check(self, graph: Any, move: Move, node: Any) -> str:
        kind = type(node.layer).__name__
        if kind not in KINDS:
            return f"{kind}: only a 2-D convolution's kernel is cut"
        size = _size(node.layer)
        if not size:
            return f"kernel {tuple(node.layer.kernel_size)}: not square and odd"
        new = move.arg
        if new is None or new < SMALLEST or new >= size or new % 2 == 0:
            return f"the new size must be odd, from {SMALLEST} to {size - 2}, got {new}"
        if any(d != 1 for d in node.layer.dilation_rate) or not plain_call(node):
            return "dilated, shared or with several inputs"
        if node.layer.padding == "valid":  # the output grows
            return why_not_resizable(graph, move.layer)
        return ""

    def replacements(self, graph: Any, move: Move) -> dict[str, Any]:
        from edgeslim.layers.base import Replacement, copy_layer

        layer = graph.nodes[move.layer].layer
        cut = (_size(layer) - int(move.arg)) // 2  # type: ignore[arg-type]
        weights = layer.get_weights()
        weights[0] = weights[0][cut : weights[0].shape[0] - cut, cut : weights[0].shape[1] - cut]
        new = copy_layer(layer, kernel_size=(move.arg, move.arg))
        return {move.layer: Replacement([new], [weights])}


def _size(layer: Any) -> int:
    """The layer's square odd kernel size, else 0."""
    kernel = tuple(getattr(layer, "kernel_size", ()) or ())
    if len(kernel) != 2 or kernel[0] != kernel[1] or kernel[0] % 2 == 0:
        return 0
    return int(kernel[0])
