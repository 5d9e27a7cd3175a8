"""A rich progress bar for Keras training: one bar over all batches, with the epoch's loss and accuracy."""

from __future__ import annotations

from typing import Any

import keras
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class RichProgress(keras.callbacks.Callback):
    def __init__(self, epochs: int, steps_per_epoch: int, description: str = "train") -> None:
        super().__init__()
        self.epochs, self.steps, self.description = epochs, steps_per_epoch, description
        from edgeslim.cli.app import console

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task: Any = None

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
        self.progress.start()
        self.task = self.progress.add_task(self.description, total=self.epochs * self.steps, status="")

    def on_train_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
        self.progress.advance(self.task)

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        logs = logs or {}
        parts = [f"epoch {epoch + 1}/{self.epochs}"]
        parts += [
            f"{k} {v:.4f}" for k, v in logs.items() if k in ("loss", "accuracy", "val_loss", "val_accuracy")
        ]
        self.progress.update(self.task, completed=(epoch + 1) * self.steps, status="  ".join(parts))

    def on_train_end(self, logs: dict[str, float] | None = None) -> None:
        self.progress.stop()
