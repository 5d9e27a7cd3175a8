"""report.html: one self-contained page (inline CSS, plots embedded as base64 PNG) that opens offline."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from edgeslim.report.columns import task_of
from edgeslim.report.markdown import (
    CHANGE_HEADERS,
    LAYER_HEADERS,
    PROFILE_HEADERS,
    artifact_headers,
    artifact_row,
    baseline_text,
    change_row,
    firmware_profiles,
    layer_row,
    profile_rows,
    stage_headers,
    stage_row,
)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.85rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }
th { background: #f0f3f7; } td:first-child, th:first-child { text-align: left; }
#artifacts-table td:last-child { text-align: left; }
.failure { color: #b00020; font-weight: bold; } .pareto { background: #eefbea; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5rem 0; }
details { margin: 0.5rem 0; } summary { cursor: pointer; font-weight: 600; }
"""


def render_html(report: dict[str, Any], plots: dict[str, Path]) -> str:
    dataset = report.get("dataset") or {}
    task = task_of(report)
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>edgeslim report</title>"
        f"<style>{STYLE}</style></head><body>",
        "<h1>edgeslim report</h1>",
        f"<p>Dataset <b>{_e(dataset.get('name', '?'))}</b>, {_e(dataset.get('test', '?'))} test samples. "
        f"Task: {_e(task)}. Baseline {_e(baseline_text(report))} in LiteRT. "
        f"Generated {_e(report['created'])} from <code>{_e(report['run_dir'])}</code>.</p>",
    ]
    if report["failures"]:
        parts.append(
            "<h2>Failures</h2><ul>"
            + "".join(f"<li class='failure'>{_e(f)}</li>" for f in report["failures"])
            + "</ul>"
        )
    pareto = set(report.get("pareto", []))
    parts.append("<h2 id='stages'>Stages, each measured in LiteRT</h2>")
    parts.append(
        _table(
            stage_headers(task),
            [stage_row(s, task, report) for s in report["stages"]],
            [s["name"] in pareto for s in report["stages"]],
            table_id="stages-table",
        )
    )
    if report["artifacts"]:
        parts.append("<h2 id='artifacts'>Exported artifacts</h2>")
        parts.append(
            _table(
                artifact_headers(task),
                [artifact_row(a, task, report) for a in report["artifacts"]],
                [a["name"] in pareto for a in report["artifacts"]],
                table_id="artifacts-table",
            )
        )
    measure = "accuracy" if task == "classification" else "headline metric"
    parts.append(f"<p>Rows on the {measure}-vs-bytes Pareto front are shaded green.</p>")
    parts.append("<h2 id='plots'>Plots</h2>")
    for name, path in plots.items():
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        parts.append(f"<img id='plot-{_e(name)}' alt='{_e(name)}' src='data:image/png;base64,{data}'>")
    for title, profile in firmware_profiles(report):
        parts.append(f"<h2 class='profile'>{_e(title)}</h2>")
        parts.append(_table(PROFILE_HEADERS, profile_rows(profile)))
    parts.append("<h2 id='layers'>Per-layer tables</h2>")
    for stage in report["stages"]:
        inner = _table(LAYER_HEADERS, [layer_row(r) for r in stage["layers"]])
        changes = [c for c in stage["changes"] if c.get("action") != "kept"]
        if changes:
            inner += f"<p>What {_e(stage['stage'])} changed:</p>" + _table(
                CHANGE_HEADERS, [change_row(c) for c in changes]
            )
        parts.append(f"<details><summary>{_e(stage['name'])}</summary>{inner}</details>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _table(
    headers: list[str],
    rows: list[list[str]],
    highlight: list[bool] | None = None,
    table_id: str | None = None,
) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = " class='pareto'" if highlight and highlight[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>")
    ident = f" id='{table_id}'" if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _e(value: Any) -> str:
    return html.escape(str(value))
