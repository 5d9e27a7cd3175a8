"""`edgeslim compress`: run compression stages in order, each fine-tuned, and write every stage's result."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeslim.cli.app import app, console, print_json


@app.command()
def compress(
    model: Annotated[Path, typer.Argument(help="The .keras model to compress (it is never modified).")],
    stage: Annotated[
        list[str],
        typer.Option(
            "--stage",
            help="NAME[:key=value,...], repeatable, run in order: prune, lowrank, separable, quantize. "
            "E.g. prune:sparsity=0.5,mode=structured  lowrank:energy=0.95  separable:rank=2  "
            "quantize:mode=int8",
        ),
    ],
    dataset: Annotated[str, typer.Option(help="digits, mnist, fashion_mnist or npz.")] = "digits",
    data_dir: Annotated[Path | None, typer.Option(help="IDX folder (mnist) or .npz file (npz).")] = None,
    out: Annotated[
        Path, typer.Option(help="Folder for NN-<stage>/model.keras, record.json, metrics.json.")
    ] = Path("runs/compress"),
    finetune_epochs: Annotated[int, typer.Option(help="Fine-tuning epochs after each stage (0: none).")] = 2,
    distill: Annotated[bool, typer.Option(help="Distil from the input model while fine-tuning.")] = True,
    alpha: Annotated[float, typer.Option(help="Distillation: weight of the label loss.")] = 0.5,
    temperature: Annotated[float, typer.Option(help="Distillation temperature T.")] = 2.0,
    lr: Annotated[float, typer.Option(help="Fine-tuning learning rate (Adam, cosine decay).")] = 5e-4,
    batch_size: Annotated[int, typer.Option(help="Fine-tuning batch size.")] = 64,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    unsafe_load: Annotated[
        bool, typer.Option(help="Allow a .keras model that carries code (Lambda).")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the chain summary as JSON.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
) -> None:
    """Compress MODEL with the given stages; every stage's model and record land in OUT."""
    from edgeslim.compress import parse_stage_spec

    stages = [parse_stage_spec(spec) for spec in stage]  # bad specs fail before anything heavy loads
    from dataclasses import replace

    from edgeslim.compress.chain import run_chain
    from edgeslim.data import load_dataset
    from edgeslim.modelio import load_keras_model
    from edgeslim.train.finetune import FinetuneConfig, default_train
    from edgeslim.train.fit import check_compatible

    train = replace(default_train(), learning_rate=lr, batch_size=batch_size, seed=seed)
    train.validate("finetune")
    config = FinetuneConfig(
        epochs=finetune_epochs, distill=distill, alpha=alpha, temperature=temperature, train=train
    )
    keras_model = load_keras_model(model, unsafe=unsafe_load)
    data = load_dataset(dataset, data_dir, seed=seed)
    check_compatible(keras_model, data)
    results = run_chain(
        keras_model,
        data,
        stages,
        config if finetune_epochs else None,
        out_dir=out,
        progress=not (quiet or json_output),
    )
    if json_output:
        print_json(
            [{"record": r.record.to_dict(), "metrics": r.record.extra.get("test_metrics")} for r in results]
        )
        return
    _print_table(results, out)


def _print_table(results: list, out: Path) -> None:
    from rich.table import Table

    table = Table(title="compression chain")
    for column in ("stage", "test acc", "params", "MACs", "changed", "skipped", "seconds"):
        table.add_column(column, justify="right" if column not in ("stage",) else "left")
    for index, result in enumerate(results, start=1):
        record, metrics = result.record, result.record.extra.get("test_metrics", {})
        table.add_row(
            f"{index:02d}-{record.stage}",
            f"{metrics.get('test_accuracy', float('nan')):.2%}",
            f"{record.totals['params_before']:,} -> {record.totals['params_after']:,}",
            f"{record.totals['macs_before']:,} -> {record.totals['macs_after']:,}",
            str(len(record.changed)),
            str(len(record.skipped)),
            f"{record.seconds:.1f}",
        )
    console.print(table)
    for result in results:
        for row in result.record.skipped:
            console.print(
                f"  [dim]{result.record.stage}: {row.name} skipped: {row.reason}[/]", highlight=False
            )
    console.print(f"wrote {out}")
