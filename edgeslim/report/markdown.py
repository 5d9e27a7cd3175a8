"""report.md: the same data model as report.json, as Markdown tables."""

from __future__ import annotations

from typing import Any

from edgeslim.report.format import acc, delta, kb, num


def render_markdown(report: dict[str, Any], plots: dict[str, str] | None = None) -> str:
    lines = ["# edgeslim report", ""]
    dataset = report.get("dataset") or {}
    lines.append(
        f"Run `{report['run_dir']}` on dataset **{dataset.get('name', '?')}** "
        f"({dataset.get('test', '?')} test samples); baseline accuracy in LiteRT "
        f"{acc(report['baseline_accuracy'])}. Generated {report['created']}."
    )
    lines.append("")
    if report["failures"]:
        lines += ["## Failures", ""] + [f"- {f}" for f in report["failures"]] + [""]
    lines += [
        "## Stages (each measured in LiteRT)",
        "",
        markdown_table(STAGE_HEADERS, [stage_row(s) for s in report["stages"]]),
        "",
    ]
    if report["artifacts"]:
        lines += [
            "## Exported artifacts",
            "",
            markdown_table(ARTIFACT_HEADERS, [artifact_row(a) for a in report["artifacts"]]),
            "",
        ]
    for name, path in (plots or {}).items():
        lines += [f"![{name}]({path})", ""]
    for stage in report["stages"]:
        lines += [
            f"## Layers after {stage['name']}",
            "",
            markdown_table(LAYER_HEADERS, [layer_row(r) for r in stage["layers"]]),
            "",
        ]
        changes = [c for c in stage["changes"] if c.get("action") not in ("kept",)]
        if changes:
            lines += [
                f"What {stage['stage']} changed:",
                "",
                markdown_table(CHANGE_HEADERS, [change_row(c) for c in changes]),
                "",
            ]
    return "\n".join(lines).rstrip() + "\n"


STAGE_HEADERS = [
    "stage",
    "params",
    "nonzero",
    "multiplications",
    "deployed",
    "bytes",
    "gzip bytes",
    "accuracy",
    "vs baseline",
    "latency p50 (ms)",
]
ARTIFACT_HEADERS = [
    "artifact",
    "format",
    "quant",
    "bytes",
    "gzip bytes",
    "accuracy",
    "vs baseline",
    "agreement",
    "latency p50 (ms)",
    "target check",
]
LAYER_HEADERS = ["layer", "type", "output", "params", "multiplications", "sparsity", "rank", "dtype"]
CHANGE_HEADERS = ["layer", "action", "params", "multiplications", "rank / sparsity", "error", "reason"]


def stage_row(s: dict[str, Any]) -> list[str]:
    d = s["deployed"]
    return [
        s["name"],
        num(s["params"]),
        num(s["nonzero_params"]),
        num(s["macs"]),
        f"{d['format'] or ''} {d['quantization'] or ''}".strip(),
        kb(d["bytes"]),
        kb(d["gzip_bytes"]),
        acc(d["accuracy"]),
        delta(s["delta_vs_baseline"]),
        _ms(d["latency_ms_p50"]),
    ]


def artifact_row(a: dict[str, Any]) -> list[str]:
    if a.get("failure") and a.get("bytes") is None:
        return [a["name"], "", "", "", "", "", "", "", "", f"FAILED: {a['failure']}"]
    return [
        a["name"],
        a["format"] or "",
        str(a["quantization"] or ""),
        kb(a["bytes"]),
        kb(a["gzip_bytes"]),
        acc(a["accuracy"]),
        delta(a["delta_vs_baseline"]),
        acc(a["agreement"]),
        _ms(a["latency_ms_p50"]),
        target_check(a),
    ]


def target_check(a: dict[str, Any]) -> str:
    notes = []
    if not a.get("passed", True):
        notes.append("FAILED verification")
    mcu = a.get("mcu")
    if mcu:
        notes.append(
            f"{mcu.get('board')}: arena {kb(mcu.get('arena_size'))} of {kb(mcu.get('ram_available'))} RAM, "
            f"flash {kb(mcu.get('flash_bytes'))} of {kb(mcu.get('flash_available'))}"
            + (" (fits)" if mcu.get("fits", True) else " (DOES NOT FIT)")
        )
    tpu = a.get("edgetpu")
    if tpu:
        share = tpu.get("mapped_fraction")
        label = "predicted" if tpu.get("prediction", True) else "compiled"
        notes.append(f"Edge TPU ({label}): {acc(share)} of ops mapped")
    return "; ".join(notes)


def layer_row(r: dict[str, Any]) -> list[str]:
    shape = "x".join("?" if d is None else str(d) for d in (r.get("output_shape") or [None])[1:])
    return [
        r["name"],
        r["type"],
        shape,
        num(r["params"]),
        num(r["macs"]),
        f"{r.get('sparsity', 0):.1%}",
        "" if r.get("rank") is None else str(r["rank"]),
        r.get("dtype", ""),
    ]


def change_row(c: dict[str, Any]) -> list[str]:
    shape = ""
    if c.get("rank") is not None:
        shape = f"rank {c['rank']}"
    elif c.get("sparsity") is not None:
        shape = f"sparsity {c['sparsity']:.1%}"
    error = "" if c.get("error") is None else f"{c['error']:.3g}"
    return [
        c["name"],
        c["action"],
        f"{num(c.get('params_before'))} → {num(c.get('params_after'))}",
        f"{num(c.get('macs_before'))} → {num(c.get('macs_after'))}",
        shape,
        error,
        c.get("reason", ""),
    ]


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    """A Markdown table; a '|' inside a cell would split it, so it becomes '/'."""
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(cell).replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(out)
