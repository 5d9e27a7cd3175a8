"""The per-layer statistics every report and record shares (plain data, no TensorFlow)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class LayerStats:
    """One layer: ``params`` and ``macs`` (multiply-accumulates) by the course's formulas."""

    name: str
    type: str
    output_shape: list[int | None]
    params: int
    macs: int
    sparsity: float = 0.0  # share of exact zeros among the layer's weights
    nonzero_params: int = 0
    rank: int | None = None
    dtype: str = "float32"
    note: str = ""
    family: str = ""  # the handler family (edgeslim.layers) that counted it
    calls: int = 1  # a shared layer runs once per call
    macs_known: bool = True  # False: a kind whose multiplications are not counted (see note)
    output_bytes: int = 0  # float32 bytes of one call's output (activation memory)
    folded_into: str | None = (
        None  # a BatchNorm the deployed model folds into this layer (no multiplications)
    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ModelStats:
    name: str
    layers: list[LayerStats] = field(default_factory=list)

    @property
    def total_params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def total_macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def deployed_macs(self) -> int:
        """The multiplications left once each foldable BatchNorm is folded into the layer before it, as
        the quantize stage and the converters do: what the deployed model computes."""
        return sum(layer.macs for layer in self.layers if layer.folded_into is None)

    @property
    def macs_complete(self) -> bool:
        return all(layer.macs_known for layer in self.layers)

    @property
    def nonzero_params(self) -> int:
        return sum(layer.nonzero_params for layer in self.layers)

    @property
    def sparsity(self) -> float:
        total = self.total_params
        return 0.0 if total == 0 else 1.0 - self.nonzero_params / total

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "total_params": self.total_params,
            "total_macs": self.total_macs,
            "deployed_macs": self.deployed_macs,
            "nonzero_params": self.nonzero_params,
            "sparsity": self.sparsity,
            "macs_complete": self.macs_complete,
            "layers": [layer.to_dict() for layer in self.layers],
        }
