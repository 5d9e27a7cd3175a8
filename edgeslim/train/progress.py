"""Keras training reported through a :class:`~edgeslim.progress.ProgressReporter`: one task over all
batches, its status the epoch's loss and headline metrics."""

from __future__ import annotations

import keras

from edgeslim.progress import ProgressReporter

SHOWN = ("loss", "accuracy", "mae", "val_loss", "val_accuracy", "val_mae")


class ProgressCallback(keras.callbacks.Callback):
    def __init__(
        self, reporter: ProgressReporter, epochs: int, steps_per_epoch: int, description: str = "train"
    ) -> None:
        super().__init__()
        self.reporter, self.epochs, self.steps, self.description = (
            reporter,
            epochs,
            steps_per_epoch,
            description,
        )

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
        self.reporter.start(self.description, self.epochs * self.steps)

    def on_train_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
        self.reporter.advance(1)

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        parts = [f"epoch {epoch + 1}/{self.epochs}"]
        parts += [f"{k} {v:.4f}" for k, v in (logs or {}).items() if k in SHOWN]
        self.reporter.update("  ".join(parts), completed=(epoch + 1) * self.steps)

    def on_train_end(self, logs: dict[str, float] | None = None) -> None:
        self.reporter.stop()
