"""Who takes the firmware's bytes: the linker map file's input sections, summed by where they came from.

``ld -Map`` lists every input section placed in an output section with its size and its object file
(an archive member reads ``/path/libfoo.a(member.o)``). Summing them by origin splits the firmware into
the model array, the TFLite Micro runtime, the C/C++ libraries, the harness and the linker's padding.
"""

from __future__ import annotations

import re
from pathlib import Path

# Output sections by what `size` (Berkeley format) calls them.
KINDS = {".text": "text", ".ARM.exidx": "text", ".data": "data", ".bss": "bss"}
GROUPS = ("model", "tflm", "c_libraries", "harness", "padding")

_OUTPUT = re.compile(r"^(\.[\w.]+)(?:\s+0x[0-9a-f]+\s+0x[0-9a-f]+.*)?$")
_INPUT_FULL = re.compile(r"^ (\S+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(.+)$")
_INPUT_NAME = re.compile(r"^ (\S+)$")
_INPUT_REST = re.compile(r"^\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(.+)$")
_FILL = re.compile(r"^ \*fill\*\s+0x[0-9a-f]+\s+0x([0-9a-f]+)")


def group_of(origin: str, harness_objects: frozenset[str]) -> str:
    name = Path(origin.split("(")[0]).name
    if name == "model_data.o":
        return "model"
    if name.startswith("libtensorflow-microlite"):
        return "tflm"
    if name in harness_objects:
        return "harness"
    return "c_libraries"  # newlib, libm, libgcc, libstdc++ (members of the toolchain's archives)


def split_sizes(map_path: Path, harness_objects: frozenset[str]) -> dict[str, dict[str, int]]:
    """{group: {"text": bytes, "data": bytes, "bss": bytes}} for the sections that `size` counts."""
    totals = {group: {"text": 0, "data": 0, "bss": 0} for group in GROUPS}
    lines = map_path.read_text(errors="replace").splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("Linker script and memory map"))
    except StopIteration:
        raise ValueError(f"{map_path}: not a GNU ld map file") from None
    kind: str | None = None
    pending: str | None = None  # an input section name whose address and size are on the next line
    for line in lines[start + 1 :]:
        if line and not line[0].isspace():
            match = _OUTPUT.match(line)
            kind = KINDS.get(match.group(1)) if match else None
            pending = None
            continue
        if kind is None:
            continue
        fill = _FILL.match(line)
        if fill:
            totals["padding"][kind] += int(fill.group(1), 16)
            continue
        full = _INPUT_FULL.match(line)
        if full and not full.group(1).startswith("*"):
            totals[group_of(full.group(4), harness_objects)][kind] += int(full.group(3), 16)
            pending = None
            continue
        name = _INPUT_NAME.match(line)
        if name and not name.group(1).startswith("*"):
            pending = name.group(1)
            continue
        rest = _INPUT_REST.match(line)
        if rest and pending is not None:
            totals[group_of(rest.group(3), harness_objects)][kind] += int(rest.group(2), 16)
        pending = None
    return totals
