"""The sensitivity table: every layer, every technique, every level, alone, without fine-tuning.

Each entry applies one option of one unit (space.py) to the input model and measures the validation
accuracy (AIMET's greedy compression-ratio selection starts from the same table). Pruning is measured
without the least-squares refit the trials use: the refit repairs one layer so well that removing 60
of conv1's 64 filters looked free on mnistnet3 (97.9 % -> 98.1 %), while the filters' own weight in the
trained network, which is what fine-tuning has to make up for, shows in the plain removal (-8 pt).

The entries are independent tasks, so they run in-process or spread over Ray workers. The table is
cached outside the run folder, keyed by the model file, the validation data and the search space, so a
second fit with another budget reuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgeslim.atomic import write_json
from edgeslim.fit.space import Option, Plan, Unit
from edgeslim.versions import code_fingerprint

CACHE_VERSION = 2


def fit_cache() -> Path:
    """Where fits keep what later fits reuse: ``$EDGESLIM_FIT_CACHE``, else ``$EDGESLIM_CACHE/fit``."""
    if os.environ.get("EDGESLIM_FIT_CACHE"):
        return Path(os.environ["EDGESLIM_FIT_CACHE"])
    base = os.environ.get("EDGESLIM_CACHE") or str(Path.home() / ".cache" / "edgeslim")
    return Path(base) / "fit"


def cache_dir() -> Path:
    return fit_cache() / "sensitivity"


def cache_key(model_file: bytes, data: Any, units: list[Unit]) -> str:
    digest = hashlib.sha256(model_file)
    digest.update(np.ascontiguousarray(data.x_val).tobytes())
    digest.update(np.ascontiguousarray(data.y_val).tobytes())
    digest.update(json.dumps([u.to_dict() for u in units], sort_keys=True).encode())
    digest.update(f"{CACHE_VERSION}|{code_fingerprint()}".encode())  # never what older code computed
    return digest.hexdigest()[:24]


def tasks(units: list[Unit]) -> list[tuple[str, Option]]:
    return [(u.name, o) for u in units for o in u.options[1:]]


def evaluate_chunk(
    model_file: bytes, data: Any, units: list[Unit], chunk: list[tuple[str, Option]]
) -> list[float]:
    """Validation accuracy with each (unit, option) applied alone; one model load per chunk."""
    import tempfile

    from edgeslim.fit.trial import apply_plan, load_model_bytes

    with tempfile.TemporaryDirectory(prefix="edgeslim-sensitivity-") as tmp:
        model = load_model_bytes(model_file, Path(tmp))
    by_name = {u.name: u for u in units}
    results = []
    for name, option in chunk:
        unit = by_name[name]
        plan = Plan(((unit.kind, name, option),), quantize=False)
        compressed, _, _ = apply_plan(model, data, plan, compensate="none")
        results.append(accuracy(compressed, data.x_val, data.y_val))
    return results


def accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    import keras

    outputs = np.concatenate(
        [keras.ops.convert_to_numpy(model(x[i : i + 512], training=False)) for i in range(0, len(x), 512)]
    )
    return float(np.mean(np.argmax(outputs, axis=-1) == y))


def load_cached(key: str) -> dict[str, Any] | None:
    path = cache_dir() / f"{key}.json"
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return table if isinstance(table, dict) and table.get("key") == key else None


def save_cached(key: str, table: dict[str, Any]) -> None:
    write_json(cache_dir() / f"{key}.json", table)


def build_table(
    baseline: float, units: list[Unit], entries: list[tuple[str, Option]], accs: list[float], key: str
) -> dict:
    rows: dict[str, dict[str, float]] = {}
    for (name, option), acc in zip(entries, accs, strict=True):
        rows.setdefault(name, {})[option.label()] = acc
    return {
        "key": key,
        "baseline_val_accuracy": baseline,
        "units": [u.to_dict() for u in units],
        "accuracy": rows,
    }


def losses(table: dict[str, Any], units: list[Unit]) -> list[list[float]]:
    """Predicted accuracy loss (fraction) of each option of each unit; 0 for "none", never negative.

    ``units`` may be a moved network's (architecture.py): an option the input model's table lacks (a
    layer whose shape a move changed, with another set of levels) takes the largest loss measured for
    that layer and technique, else the largest of the technique anywhere."""
    base = table["baseline_val_accuracy"]
    rows = table["accuracy"]
    worst: dict[str, float] = {}
    for row in rows.values():
        for label, acc in row.items():
            technique = label.split(" ")[0]
            worst[technique] = max(worst.get(technique, 0.0), base - acc)

    def loss(unit: Unit, option: Option) -> float:
        measured = rows.get(unit.name, {})
        if option.label() in measured:
            return max(0.0, base - measured[option.label()])
        same = [base - acc for label, acc in measured.items() if label.split(" ")[0] == option.technique]
        return max(0.0, max(same) if same else worst.get(option.technique, 0.0))

    return [[0.0] + [loss(u, o) for o in u.options[1:]] for u in units]
