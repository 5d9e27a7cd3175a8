"""What per-channel int8 costs on a microcontroller against per-tensor, read from the file itself.

Per-channel scales keep accuracy where a layer's channels differ in range, but every channel past the
first stores a float32 scale and an int64 zero point in the file (12 B), and TFLite Micro's per-channel
fully connected kernel keeps an int32 multiplier and an int32 shift per output channel in the arena
(8 B; its convolutions keep them in either scheme). Measured against per-tensor exports of the same
models (benchmarks/RESULTS.md, "int8 scheme on the mcu target"): the file figure is exact to a few
bytes; the arena figure is a lower bound (the kernel's own records add up to 25 % more).
"""

from __future__ import annotations

from typing import Any

from edgeslim.runtime.tflite_file import TFLiteModelInfo

FILE_BYTES_PER_CHANNEL = 12  # a float32 scale and an int64 zero point
ARENA_BYTES_PER_CHANNEL = 8  # an int32 multiplier and an int32 shift
WORTH_SAYING = 0.03  # a share of the file or the arena below which the scheme is not worth a word


def per_channel_cost(info: TFLiteModelInfo, file_bytes: int, arena_bytes: int) -> dict[str, Any] | None:
    """Flash and arena a per-tensor export would save, with a hint where either share is noticeable;
    None for a file with no per-channel tensor."""
    extra = [len(t.scale) - 1 for t in info.tensors if len(t.scale) > 1]
    if not extra:
        return None
    dense_channels = 0
    for op in info.ops:
        weights = info.tensors[op.inputs[1]] if op.op == "FULLY_CONNECTED" and len(op.inputs) > 1 else None
        if weights is not None and len(weights.scale) > 1:
            dense_channels += len(weights.scale)
    flash = FILE_BYTES_PER_CHANNEL * sum(extra)
    arena = ARENA_BYTES_PER_CHANNEL * dense_channels
    cost: dict[str, Any] = {
        "flash_bytes": flash,
        "flash_share": flash / file_bytes if file_bytes else 0.0,
        "arena_bytes_at_least": arena,
        "arena_share_at_least": arena / arena_bytes if arena_bytes else 0.0,
        "hint": "",
    }
    if max(cost["flash_share"], cost["arena_share_at_least"]) > WORTH_SAYING:
        cost["hint"] = (
            f"per-channel int8 costs {flash:,} B of flash ({cost['flash_share']:.0%}) and at least "
            f"{arena:,} B of arena ({cost['arena_share_at_least']:.0%}) over per-tensor; where the accuracy "
            "allows, export with --per-tensor (or quantize with per_channel=false)"
        )
    return cost
