"""The `architecture` stage: architecture moves (edgeslim.compress.moves) applied in order.

``moves`` lists them as ``family:layer[=arg]`` ("stride:conv1|kernel:conv2=3|global_pool:flatten"):
a stride or a pooling early, a smaller kernel, valid padding made same, a layer dropped, global
pooling for a flattened classifier, a smaller input. Each keeps the weights that still mean something;
the fine-tuning that follows (distillation from the input model) does the rest. A move that does not
apply is refused with the reason, before anything is built.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from edgeslim.compress.base import Stage, StageRecord, StageResult
from edgeslim.errors import ConfigError

if TYPE_CHECKING:
    import keras

    from edgeslim.compress.moves import Move
    from edgeslim.data.dataset import Dataset


@dataclass(kw_only=True)
class ArchitectureStage(Stage):
    name: ClassVar[str] = "architecture"

    moves: str | list[str] = ""

    def validate(self) -> None:
        if not isinstance(self.moves, str | list | tuple):
            self.fail("moves", "moves as family:layer[=arg], separated by '|' (or a list)", self.moves)
            return
        try:
            parsed = self.parsed()
        except ConfigError as exc:
            self.fail("moves", f"moves as family:layer[=arg] ({exc.message})", self.moves)
            return
        from edgeslim.compress.moves import FAMILIES

        for move in parsed:
            if move.family not in FAMILIES:
                self.fail("moves", f"moves of the families {', '.join(FAMILIES)}", move.label())

    def parsed(self) -> list[Move]:
        from edgeslim.compress.moves import Move

        items = self.moves.split("|") if isinstance(self.moves, str) else list(self.moves)
        return [Move.parse(item.strip()) for item in items if str(item).strip()]

    def apply(self, model: keras.Model, dataset: Dataset) -> StageResult:
        from edgeslim.compress.accounting import Accounting
        from edgeslim.compress.moves import apply_moves
        from edgeslim.layers.graph import ModelGraph

        start = time.perf_counter()
        graph = ModelGraph(model)
        accounting = Accounting(graph.model)
        moves = self.parsed()
        new_model = apply_moves(graph.model, moves)
        totals = accounting.finish(new_model)
        rows = []
        for move in moves:
            if move.layer:  # the input's move has no layer of the input model to report on
                row = accounting.row(move.layer, "replaced", None, reason=move.label())
                rows.append(row)
        record = StageRecord(self.name, self.get_config(), rows, totals)
        record.extra["moves"] = [m.label() for m in moves]
        record.seconds = time.perf_counter() - start
        return StageResult(new_model, record)
