"""Embedding: a table lookup (no multiplications), V x d parameters.

Its output features are channels like any producer's (pruned by dropping table columns); low rank
splits the table, E = A B: an Embedding to R features, then a Dense R -> d without bias.
"""

from __future__ import annotations

import keras
import numpy as np

from edgeslim.layers.base import (
    PRODUCER,
    Call,
    Edit,
    Factorization,
    LayerHandler,
    Replacement,
    copy_layer,
    keep_index,
    singular_values,
    spatial,
    svd_split,
    unique_name,
)


class EmbeddingHandler(LayerHandler):
    family = "embedding"
    handles = (keras.layers.Embedding,)
    kernel_attrs = ("embeddings",)

    def macs(self, call: Call) -> int:
        return 0

    def resized(self, call: Call, keep_in: float, keep_out: float) -> tuple[float, float]:
        return self.params() * keep_out, 0.0

    def note(self) -> str:
        return ""

    def coupling(self, call: Call) -> tuple[str, str]:
        return PRODUCER, ""

    def in_channels(self) -> None:
        return None  # token ids, not channels

    def out_channels(self) -> int:
        return int(self.layer.output_dim)

    def prune(self, keep_out: np.ndarray | None, keep_in: np.ndarray | None) -> Edit:
        table = np.asarray(self.layer.embeddings)
        cols = keep_index(keep_out, table.shape[1])
        return Edit({"output_dim": len(cols)}, [table[:, cols]])

    def why_not_factorize(self) -> str:
        return ""

    def factorizations(self, call: Call) -> list[Factorization]:
        table = np.asarray(self.layer.embeddings)
        v, d = table.shape
        positions = spatial(call.out_shape)
        return [
            Factorization(
                "embedding",
                singular_values(table),
                v,
                d,
                macs_in=0,
                macs_out=positions * d,
                params_in=v,
                params_out=d,
                macs_before=0,
                params_before=v * d,
            )
        ]

    def factorize(self, scheme: str, rank: int, taken: set[str]) -> Replacement:
        a, b = svd_split(np.asarray(self.layer.embeddings), rank)
        first = copy_layer(self.layer, output_dim=rank, name=unique_name(f"{self.name}_lr1", taken))
        second = keras.layers.Dense(
            int(self.layer.output_dim),
            use_bias=False,
            dtype=self.layer.dtype_policy,
            name=unique_name(f"{self.name}_lr2", taken),
        )
        first.edgeslim_rank = rank
        return Replacement([first, second], [[a], [b]])
