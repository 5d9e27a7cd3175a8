"""Architecture moves: changes to a network's shape, each family one module, one registry line.

``candidates(model)`` lists every move the model allows; ``why_not(model, move)`` says why one does not
apply; ``apply_moves(model, moves)`` returns a new model (the input is never modified) with the moves
applied in order, the Dense layers that read a resized flattened map repaired (``base.resample_kernel``).
"""

from __future__ import annotations

from typing import Any

from edgeslim.compress.moves.base import Family, Move, flattened_readers, resample_kernel
from edgeslim.compress.moves.drop import Drop
from edgeslim.compress.moves.global_pool import GlobalPool
from edgeslim.compress.moves.kernel import Kernel
from edgeslim.compress.moves.padding import Padding
from edgeslim.compress.moves.pool import Pool
from edgeslim.compress.moves.smaller_input import SmallerInput
from edgeslim.compress.moves.stride import Stride
from edgeslim.errors import ConfigError

FAMILIES: dict[str, Family] = {
    f.name: f for f in (Stride(), Pool(), SmallerInput(), Kernel(), Padding(), Drop(), GlobalPool())
}

__all__ = ["FAMILIES", "Move", "apply_moves", "candidates", "why_not"]


def candidates(model: Any) -> list[Move]:
    """Every move that applies to ``model`` alone (each is tried: a move whose new sizes the layers
    after it cannot take, a valid convolution left with nothing to convolve, is not one)."""
    from edgeslim.layers.graph import ModelGraph

    graph = ModelGraph(model)
    out = []
    for family in FAMILIES.values():
        for move in family.candidates(graph):
            try:
                _apply(model, move)
            except ConfigError:
                continue
            out.append(move)
    return out


def why_not(model: Any, move: Move) -> str:
    from edgeslim.layers.graph import ModelGraph

    return _family(move).why_not(ModelGraph(model), move)


def apply_moves(model: Any, moves: list[Move]) -> Any:
    """The model with ``moves`` applied one after another; ConfigError names a move that cannot apply."""
    for move in moves:
        model = _apply(model, move)
    return model


def _family(move: Move) -> Family:
    if move.family not in FAMILIES:
        raise ConfigError(
            f"architecture move {move.label()}: unknown family {move.family!r}",
            f"choose one of {', '.join(FAMILIES)}",
        )
    return FAMILIES[move.family]


def _apply(model: Any, move: Move) -> Any:
    from edgeslim.layers.base import Replacement, copy_layer
    from edgeslim.layers.graph import ModelGraph

    graph = ModelGraph(model)
    family = _family(move)
    reason = family.why_not(graph, move)
    if reason:
        raise ConfigError(f"architecture move {move.label()} does not apply: {reason}")
    replacements = family.replacements(graph, move)
    # the Dense layers that read a flattened map and that the move itself leaves alone
    old_maps = {k: v for k, v in flattened_readers(graph).items() if k not in replacements}
    for name in old_maps:  # rebuilt fresh, then given the resampled kernel below
        replacements.setdefault(name, Replacement([copy_layer(graph.nodes[name].layer)], [None]))
    try:
        new = graph.rebuild(replacements)
    except ValueError as exc:  # Keras on a layer the new size does not suit; ours say "internal error"
        if "internal error" in str(exc):
            raise
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"architecture move {move.label()} does not apply: the layers after it cannot "
                          f"take the new size ({first})") from None  # fmt: skip
    new_graph = ModelGraph(new)
    for name, old_map in old_maps.items():
        weights = [w.copy() for w in graph.nodes[name].layer.get_weights()]
        weights[0] = resample_kernel(weights[0], old_map, _map_read_by(new_graph, name, old_map[-1]))
        new_graph.nodes[name].layer.set_weights(weights)
    return new_graph.model


def _map_read_by(graph: Any, dense: str, channels: int) -> tuple[int, ...]:
    """The feature map a Dense now reads: through its Flatten, or a global pooling's (one position)."""
    producer = graph.nodes[graph.nodes[dense].inputs[0][0]]
    shape = producer.call_shapes()[0].in_shape
    if type(producer.layer).__name__ == "Flatten":
        return tuple(int(d) for d in shape[1:])
    return (*[1] * (len(shape) - 2), channels)  # a global pooling: its map's positions summed into one
