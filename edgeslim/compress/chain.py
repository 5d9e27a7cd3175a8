"""Running stages in order, each fine-tuned (by default distilled from the chain's input model).

With ``out_dir``, every stage leaves ``NN-<stage>/model.keras``, ``record.json`` and
``metrics.json`` (test accuracy in Keras, parameters, multiplications), and the chain a
``chain.json`` summary; every write is atomic.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeslim.atomic import write_json
from edgeslim.compress.base import Stage, StageResult

if TYPE_CHECKING:
    import keras

    from edgeslim.data.dataset import Dataset
    from edgeslim.train.finetune import FinetuneConfig


def model_metrics(model: keras.Model, dataset: Dataset) -> dict[str, Any]:
    """Keras test accuracy plus the counts `inspect` shows."""
    from edgeslim.analysis.keras_model import analyze_keras
    from edgeslim.train.fit import evaluate_keras

    stats = analyze_keras(model)
    return evaluate_keras(model, dataset) | {
        "params": stats.total_params,
        "nonzero_params": stats.nonzero_params,
        "macs": stats.total_macs,
        "sparsity": stats.sparsity,
    }


def stage_dir(out_dir: str | Path, index: int, stage: Stage) -> Path:
    return Path(out_dir) / f"{index:02d}-{stage.name}"


def run_chain(
    model: keras.Model,
    dataset: Dataset,
    stages: list[Stage],
    finetune: FinetuneConfig | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> list[StageResult]:
    """Apply ``stages`` in order to ``model`` (left untouched); the teacher is ``model`` itself."""
    from edgeslim.modelio import save_keras_model

    console = _console() if progress else None
    teacher, current = model, model
    results: list[StageResult] = []
    summary: dict[str, Any] = {"input": model_metrics(model, dataset), "stages": []}
    for index, stage in enumerate(stages, start=1):
        if console:
            console.print(
                f"[bold]stage {index}/{len(stages)}[/] {stage.name} {_params(stage)}", highlight=False
            )
        result = stage.run(current, dataset, finetune, teacher=teacher, progress=progress)
        metrics = model_metrics(result.model, dataset)
        result.record.extra["test_metrics"] = metrics
        if out_dir is not None:
            folder = stage_dir(out_dir, index, stage)
            save_keras_model(result.model, folder / "model.keras")
            write_json(folder / "record.json", result.record.to_dict())
            write_json(folder / "metrics.json", metrics)
        summary["stages"].append(
            {
                "stage": stage.name,
                "params": stage.get_config(),
                "metrics": metrics,
                "totals": result.record.totals,
                "seconds": result.record.seconds,
            }
        )
        if console:
            console.print(
                f"  accuracy {metrics['test_accuracy']:.4f}  params {metrics['params']:,}  "
                f"MACs {metrics['macs']:,}  ({result.record.seconds:.1f} s)",
                highlight=False,
            )
        results.append(result)
        current = result.model
    if out_dir is not None:
        write_json(Path(out_dir) / "chain.json", summary)
    return results


def _params(stage: Stage) -> str:
    return ", ".join(f"{k}={v}" for k, v in stage.get_config().items() if v is not None)


def _console() -> Any:
    from edgeslim.cli.app import console

    return console
