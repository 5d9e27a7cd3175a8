"""Reports built from a run directory's records: report.json, report.md and a self-contained report.html."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeslim.atomic import write_json, write_text
from edgeslim.report.model import SCHEMA, build_report


def write_report(
    report: dict[str, Any], out_dir: str | Path, formats: list[str] | None = None, plots: bool = True
) -> dict[str, Path]:
    """Write the requested formats (json, md, html) and the plots; return what was written."""
    from edgeslim.report.html import render_html
    from edgeslim.report.markdown import render_markdown

    out_dir = Path(out_dir)
    formats = formats or ["json", "md", "html"]
    written: dict[str, Path] = {}
    pngs: dict[str, Path] = {}
    if plots:
        from edgeslim.report.plots import write_plots

        pngs = write_plots(report, out_dir / "plots")
        written.update({f"plot:{k}": v for k, v in pngs.items()})
    if "json" in formats:
        written["json"] = write_json(out_dir / "report.json", report)
    if "md" in formats:
        rel = {k: str(v.relative_to(out_dir)) for k, v in pngs.items()}
        written["md"] = write_text(out_dir / "report.md", render_markdown(report, rel))
    if "html" in formats:
        written["html"] = write_text(out_dir / "report.html", render_html(report, pngs))
    return written


__all__ = ["SCHEMA", "build_report", "write_report"]
