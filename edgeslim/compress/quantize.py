"""The `quantize` stage: fold BatchNorm, set the recipe the export step applies, and optionally train for it.

``apply`` folds every BatchNorm it can into the layer before it and records the recipe
(``record.quantization``, an edgeslim.recipe.QuantRecipe as a dict) plus, per layer, the relative
error its kernels will suffer under that recipe. With ``qat=true`` ``run`` trains with fake int8
quantization (qat.py) for ``qat_epochs`` (default: the stage's fine-tuning epochs, else 2) and hands
back a standard model whose weights make LiteRT's full-int8 conversion keep the accuracy. The
record says whether QAT ran, and why not when it did not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edgeslim.compress.base import Finetuner, Stage, StageRecord, StageResult, finetune_summary
from edgeslim.limits import MAX_CALIB_SAMPLES
from edgeslim.recipe import IO_DTYPES, MODES, QuantRecipe
from edgeslim.train.config import MAX_EPOCHS

if TYPE_CHECKING:
    import keras

    from edgeslim.compress.accounting import Accounting
    from edgeslim.data.dataset import Dataset
    from edgeslim.train.config import FinetuneConfig

DEFAULT_QAT_EPOCHS = 2


@dataclass(kw_only=True)
class QuantizeStage(Stage):
    name: ClassVar[str] = "quantize"
    structural: ClassVar[bool] = False  # only QAT trains, and only in `run`

    mode: str = "int8"  # float32 | float16 | dynamic | int8 | int16x8
    per_channel: bool = True
    calib_samples: int = 500
    io_dtype: str = "int8"  # full int8: the model's input/output type, int8 or uint8
    fold_bn: bool = True
    qat: bool = False  # quantization-aware training (int8 only)
    qat_epochs: int | None = None  # default: the fine-tuning epochs, else DEFAULT_QAT_EPOCHS
    momentum: float = 0.99  # QAT: moving average of the activation ranges

    def validate(self) -> None:
        self.check_choice("mode", MODES)
        self.check_bool("per_channel")
        self.check_number("calib_samples", 1, MAX_CALIB_SAMPLES, integer=True)
        self.check_choice("io_dtype", IO_DTYPES)
        self.check_bool("fold_bn")
        self.check_bool("qat")
        self.check_number("qat_epochs", 1, MAX_EPOCHS, integer=True, optional=True)
        self.check_number("momentum", 0.0, 1.0, hi_open=True)
        if self.qat is True and self.mode != "int8":
            self.fail("qat", f"false unless mode is int8 (mode is {self.mode})", self.qat)

    def recipe(self) -> QuantRecipe:
        return QuantRecipe(self.mode, self.per_channel, self.calib_samples, self.io_dtype)

    def apply(self, model: keras.Model, dataset: Dataset) -> StageResult:
        from edgeslim.compress.accounting import Accounting
        from edgeslim.compress.bnfold import fold_batchnorm
        from edgeslim.layers.graph import ModelGraph

        start = time.perf_counter()
        graph = ModelGraph(model)
        accounting = Accounting(graph.model)
        if self.fold_bn:
            new_model, folded, kept = fold_batchnorm(graph.model)
        else:
            new_model, folded, kept = graph.rebuild(), {}, {}
        record = self._record(new_model, accounting, folded, kept)
        if self.qat:
            record.notes.append("QAT not run: apply() only folds and sets the recipe; run() trains")
        record.seconds = time.perf_counter() - start
        return StageResult(new_model, record)

    def _record(
        self, new_model: keras.Model, accounting: Accounting, folded: dict[str, str], kept: dict[str, str]
    ) -> StageRecord:
        from edgeslim.layers.graph import ModelGraph

        totals = accounting.finish(new_model)
        rows = []
        for bn, producer in folded.items():
            rows.append(accounting.row(bn, "folded", [], reason=f"folded into {producer}"))
        for bn, reason in kept.items():
            rows.append(accounting.skipped(bn, f"BatchNorm not folded: {reason}"))
        for name, node in ModelGraph(new_model).nodes.items():
            kernels = node.handler.kernels()
            if not kernels or name not in accounting.before:
                continue
            error = self._weight_error(node.handler)
            note = f"{self.mode} weights" + (
                " per channel" if self.per_channel and self.mode == "int8" else ""
            )
            rows.append(accounting.row(name, "quantized", error=error, reason=note))
        return StageRecord(self.name, self.get_config(), rows, totals, quantization=self.recipe().to_dict())

    def _weight_error(self, handler: Any) -> float:
        """Relative error of the layer's kernels under the recipe (what LiteRT will store)."""
        from edgeslim.compress.accounting import relative_error
        from edgeslim.layers.fakequant import quantize_weights_np

        kernels = [np.asarray(k) for k in handler.kernels()]
        if self.mode == "float32":
            return 0.0
        if self.mode == "float16":
            approx = [k.astype(np.float16).astype(np.float32) for k in kernels]
        else:
            approx = [
                quantize_weights_np(k, handler.quant_axes(i, self.per_channel)) for i, k in enumerate(kernels)
            ]
        flat = np.concatenate([k.ravel() for k in kernels])
        return relative_error(flat, np.concatenate([a.ravel() for a in approx]))

    def run(
        self,
        model: keras.Model,
        dataset: Dataset,
        finetune: FinetuneConfig | None = None,
        teacher: keras.Model | None = None,
        progress: Any = False,
        finetuner: Finetuner | None = None,
    ) -> StageResult:
        if not self.qat:
            return self.apply(model, dataset)
        if finetuner is None:
            result = self.apply(model, dataset)
            result.record.notes = ["QAT not run: no finetuner was passed to run()"]
            result.record.extra["qat"] = {"ran": False, "why": "no finetuner"}
            return result
        from edgeslim.compress import qat
        from edgeslim.compress.accounting import Accounting
        from edgeslim.train.config import FinetuneConfig

        start = time.perf_counter()
        base = self.apply(model, dataset)
        epochs = self.qat_epochs or (finetune.epochs if finetune is not None and finetune.epochs else None)
        epochs = epochs or DEFAULT_QAT_EPOCHS
        config = replace(finetune, epochs=epochs) if finetune is not None else FinetuneConfig(epochs=epochs)
        trainer, in_float = qat.build_qat_model(base.model, self.per_channel, self.momentum)
        calibration = qat.RangeCalibration(trainer, dataset.representative(self.calib_samples))
        initial = calibration.calibrate()
        trained = finetuner(
            trainer,
            dataset,
            config,
            teacher=teacher if teacher is not None else model,
            progress=progress,
            callbacks=[calibration],
        )
        final = qat.strip_qat(base.model, trainer, self.per_channel)
        record = self._record(final, Accounting(model), *self._fold_info(base.record))
        record.finetune = finetune_summary(trained, config)
        record.extra["qat"] = {
            "ran": True,
            "epochs": epochs,
            "fake_quant_points": len(initial),
            # Kernels of other layer kinds train in float; LiteRT still quantizes them.
            "float_kernels": in_float,
            "activation_ranges": {k: list(v) for k, v in qat.ranges(trainer).items()},
        }
        record.notes.append(f"QAT ran for {epochs} epoch(s) at {len(initial)} fake-quantization points")
        record.seconds = time.perf_counter() - start + base.record.seconds
        return StageResult(final, record)

    @staticmethod
    def _fold_info(record: StageRecord) -> tuple[dict[str, str], dict[str, str]]:
        folded = {
            r.name: r.reason.removeprefix("folded into ") for r in record.layers if r.action == "folded"
        }
        kept = {
            r.name: r.reason.removeprefix("BatchNorm not folded: ")
            for r in record.layers
            if r.action == "skipped"
        }
        return folded, kept
