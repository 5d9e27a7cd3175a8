"""The `quantize` stage: fold BatchNorm, set the recipe the export step applies, and optionally train for it.

``apply`` folds every BatchNorm it can into the conv/Dense before it and records the recipe
(``record.quantization``: mode, per_channel, calib_samples, io_dtype) plus, per layer, the relative
error its weights will suffer under that recipe. With ``qat=true`` and fine-tuning epochs,
``run`` trains with fake int8 quantization (qat.py) and hands back a standard model whose weights
make LiteRT's full-int8 conversion keep the accuracy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import keras
import numpy as np

from edgeslim.compress.accounting import Accounting, relative_error
from edgeslim.compress.base import Stage, StageRecord, StageResult, finetune_summary
from edgeslim.compress.bnfold import fold_batchnorm
from edgeslim.compress.fakequant import quantize_weights_np, weight_axes
from edgeslim.compress.magnitude import kernel_variables
from edgeslim.compress.recipe import IO_DTYPES, MODES, normalize_recipe
from edgeslim.data.dataset import Dataset

if TYPE_CHECKING:
    from edgeslim.train.finetune import FinetuneConfig


@dataclass(kw_only=True)
class QuantizeStage(Stage):
    name: ClassVar[str] = "quantize"
    structural: ClassVar[bool] = False  # only QAT trains, and only in `run`

    mode: str = "int8"  # float32 | float16 | dynamic | int8 | int16x8
    per_channel: bool = True
    calib_samples: int = 500
    io_dtype: str = "int8"  # full int8: the model's input/output type, int8 or uint8
    fold_bn: bool = True
    qat: bool = False  # quantization-aware training (int8 only), when fine-tuning epochs are given
    qat_epochs: int | None = None  # defaults to the fine-tuning epochs
    momentum: float = 0.99  # QAT: moving average of the activation ranges

    def validate(self) -> None:
        self.check_choice("mode", MODES)
        self.check_bool("per_channel")
        self.check_number("calib_samples", 1, integer=True)
        self.check_choice("io_dtype", IO_DTYPES)
        self.check_bool("fold_bn")
        self.check_bool("qat")
        self.check_number("qat_epochs", 1, integer=True, optional=True)
        self.check_number("momentum", 0.0, 1.0, hi_open=True)
        if self.qat and self.mode != "int8":
            self.fail("qat", f"false unless mode is int8 (mode is {self.mode})", self.qat)

    def recipe(self) -> dict:
        return normalize_recipe(
            {
                "mode": self.mode,
                "per_channel": self.per_channel,
                "calib_samples": self.calib_samples,
                "io_dtype": self.io_dtype,
            }
        )

    def apply(self, model: keras.Model, dataset: Dataset) -> StageResult:
        start = time.perf_counter()
        accounting = Accounting(model)
        if self.fold_bn:
            new_model, folded, kept = fold_batchnorm(model)
        else:
            from edgeslim.compress.graph import ModelGraph

            new_model, folded, kept = ModelGraph(model).rebuild(), {}, {}
        record = self._record(new_model, accounting, folded, kept)
        record.seconds = time.perf_counter() - start
        return StageResult(new_model, record)

    def _record(
        self, new_model: keras.Model, accounting: Accounting, folded: dict[str, str], kept: dict[str, str]
    ) -> StageRecord:
        totals = accounting.finish(new_model)
        rows = []
        for bn, producer in folded.items():
            rows.append(accounting.row(bn, "folded", [], reason=f"folded into {producer}"))
        for bn, reason in kept.items():
            rows.append(accounting.skipped(bn, f"BatchNorm not folded: {reason}"))
        for layer in new_model.layers:
            variables = kernel_variables(layer)
            if not variables or layer.name not in accounting.before:
                continue
            error = self._weight_error(layer)
            note = f"{self.mode} weights" + (
                " per channel" if self.per_channel and self.mode == "int8" else ""
            )
            rows.append(accounting.row(layer.name, "quantized", error=error, reason=note))
        return StageRecord(self.name, self.get_config(), rows, totals, quantization=self.recipe())

    def _weight_error(self, layer: keras.layers.Layer) -> float:
        """Relative error of the layer's kernel under the recipe (what LiteRT will store)."""
        kernel = np.asarray(layer.kernel if hasattr(layer, "kernel") else layer.depthwise_kernel)
        if self.mode == "float32":
            return 0.0
        if self.mode == "float16":
            return relative_error(kernel, kernel.astype(np.float16).astype(np.float32))
        axes = weight_axes(layer, self.per_channel) if hasattr(layer, "kernel") else tuple(range(kernel.ndim))
        return relative_error(kernel, quantize_weights_np(kernel, axes))

    def run(
        self,
        model: keras.Model,
        dataset: Dataset,
        finetune: FinetuneConfig | None = None,
        teacher: keras.Model | None = None,
        progress: bool = False,
    ) -> StageResult:
        epochs = self.qat_epochs or (finetune.epochs if finetune is not None else 0)
        if not self.qat or epochs == 0:
            result = self.apply(model, dataset)
            if self.qat:
                result.record.extra["qat"] = (
                    "not run: no fine-tuning epochs (set qat_epochs or finetune epochs)"
                )
            return result
        from dataclasses import replace

        from edgeslim.compress import qat
        from edgeslim.train.finetune import FinetuneConfig
        from edgeslim.train.finetune import finetune as run_finetune

        start = time.perf_counter()
        base = self.apply(model, dataset)
        config = replace(finetune, epochs=epochs) if finetune is not None else FinetuneConfig(epochs=epochs)
        trainer = qat.build_qat_model(base.model, self.per_channel, self.momentum)
        calibration = qat.RangeCalibration(trainer, dataset.representative(self.calib_samples))
        initial = calibration.calibrate()
        trained = run_finetune(
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
            "epochs": epochs,
            "fake_quant_points": len(initial),
            # Kernels of other layer types (SeparableConv2D...) train in float; LiteRT still quantizes them.
            "float_kernels": [
                layer.name
                for layer in base.model.layers
                if kernel_variables(layer) and type(layer) not in qat.QAT_CLASSES
            ],
            "activation_ranges": {k: list(v) for k, v in qat.ranges(trainer).items()},
        }
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
