"""The firmware option `export`, `fit` and `firmware` share: one flag, one help text, one default."""

from __future__ import annotations

from typing import Annotated

import typer

Kernels = Annotated[
    str,
    typer.Option(
        help="mcu with --firmware: TFLite Micro's kernels, cmsis_nn (what products ship on Arm) or "
        "reference (for comparison)."
    ),
]
