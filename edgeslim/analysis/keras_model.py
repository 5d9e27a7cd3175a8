"""Per-layer counts for a Keras 3 model, from each layer's handler (edgeslim.layers): the course's formulas.

Convolution, kernel K_h x K_w x D_in x D_out, output M x N x D_out:
    N_p = K_h K_w D_in D_out + D_out,   N_x = M N K_h K_w D_in D_out
Dense, M_out x M_in:  N_p = M_out (M_in + 1),   N_x = M_out M_in
The handlers extend them to 1-D and 3-D, depthwise, separable and transposed convolutions,
recurrent layers, embeddings and merges. A layer shared between several calls is counted once per
call; a nested model is counted through its own layers. A kind without a handler still counts its
parameters, and says that its multiplications are unknown. A BatchNorm that folds into the layer
before it (``folded_into``) keeps its count here but not in ``deployed_macs``.
"""

from __future__ import annotations

import keras
import numpy as np

from edgeslim.analysis.stats import LayerStats, ModelStats
from edgeslim.layers.fold import foldable
from edgeslim.layers.graph import ModelGraph


def analyze_keras(model: keras.Model) -> ModelStats:
    graph = ModelGraph(model)
    stats = ModelStats(name=model.name)
    for name, node in graph.nodes.items():
        row = node_stats(node)
        if isinstance(node.layer, keras.layers.BatchNormalization):
            row.folded_into = foldable(graph, name)[0]
        stats.layers.append(row)
    return stats


def node_stats(node) -> LayerStats:  # noqa: ANN001 - a layers.graph.GraphNode
    layer, handler = node.layer, node.handler
    weights = [np.asarray(w) for w in layer.get_weights()]
    params = int(sum(w.size for w in weights))
    nonzero = int(sum(np.count_nonzero(w) for w in weights))
    calls = node.call_shapes()
    per_call = [handler.macs(call) for call in calls]
    note = handler.note() if any(m is None for m in per_call) else ""
    if len(calls) > 1:
        note = (note + "; " if note else "") + f"shared: {len(calls)} calls, counted per call"
    custom = getattr(layer, "edgeslim_macs", None)  # a layer of ours may know its own count
    macs = custom(calls[0].out_shape) if callable(custom) else sum(m or 0 for m in per_call)
    return LayerStats(
        name=layer.name,
        type=type(layer).__name__,
        output_shape=list(calls[0].out_shape) if calls else [],
        params=params,
        macs=int(macs),
        sparsity=0.0 if params == 0 else 1.0 - nonzero / params,
        nonzero_params=nonzero,
        rank=getattr(layer, "edgeslim_rank", None),
        dtype=str(getattr(layer, "dtype", "float32")),
        note=note,
        family=handler.family,
        calls=len(calls),
        macs_known=all(m is not None for m in per_call),
        output_bytes=4 * sum(handler.output_elements(call) for call in calls[:1]),
    )
