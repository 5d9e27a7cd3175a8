"""Writes one benchmark's section of benchmarks/RESULTS.md, leaving the other sections as they are."""

from __future__ import annotations

import platform
import re
import time
from pathlib import Path

from edgeslim.report.markdown import markdown_table  # one table renderer for reports and benchmarks

__all__ = ["markdown_table", "update_section"]

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = (
    "# Benchmark results\n\nEach section is written by the script it names; rerun the script to refresh it.\n"
)


def update_section(name: str, markdown: str, path: Path = RESULTS) -> None:
    """Replace (or append) the section between ``<!-- name:begin -->`` and ``<!-- name:end -->``."""
    when = time.strftime("%Y-%m-%d %H:%M")
    stamp = f"_{when} UTC, {platform.machine()}, {_cores()} cores, Python {platform.python_version()}_"
    block = f"<!-- {name}:begin -->\n{markdown.rstrip()}\n\n{stamp}\n<!-- {name}:end -->"
    text = path.read_text() if path.exists() else HEADER
    pattern = re.compile(rf"<!-- {re.escape(name)}:begin -->.*?<!-- {re.escape(name)}:end -->", re.S)
    text = (
        pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    )
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
