"""report.md: the same data model as report.json, as Markdown tables."""

from __future__ import annotations

from typing import Any

from edgeslim.report.columns import (
    agreement_cell,
    delta_cell,
    fmt,
    headline,
    metric_cells,
    metric_headers,
    task_of,
)
from edgeslim.report.format import acc, kb, num
from edgeslim.tflm_kernels import kernel_name


def render_markdown(report: dict[str, Any], plots: dict[str, str] | None = None) -> str:
    lines = ["# edgeslim report", ""]
    dataset = report.get("dataset") or {}
    task = task_of(report)
    lines.append(
        f"Run `{report['run_dir']}` on dataset **{dataset.get('name', '?')}** "
        f"({dataset.get('test', '?')} test samples, {task}); baseline {baseline_text(report)} in LiteRT. "
        f"Generated {report['created']}."
    )
    lines.append("")
    if report["failures"]:
        lines += ["## Failures", ""] + [f"- {f}" for f in report["failures"]] + [""]
    lines += [
        "## Stages (each measured in LiteRT)",
        "",
        markdown_table(stage_headers(task), [stage_row(s, task, report) for s in report["stages"]]),
        "",
    ]
    if report["artifacts"]:
        lines += [
            "## Exported artifacts",
            "",
            markdown_table(
                artifact_headers(task), [artifact_row(a, task, report) for a in report["artifacts"]]
            ),
            "",
        ]
    for name, path in (plots or {}).items():
        lines += [f"![{name}]({path})", ""]
    for title, profile in firmware_profiles(report):
        lines += [f"## {title}", "", markdown_table(PROFILE_HEADERS, profile_rows(profile)), ""]
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


PROFILE_HEADERS = ["layer", "operators", "instructions", "share", "multiplications", "instructions / mult."]


def profiled(report: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(artifact, its firmware figures) for each artifact whose firmware timed its operators."""
    found = []
    for a in report.get("artifacts", []):
        fw = (a.get("mcu") or {}).get("firmware") or {}
        if (fw.get("profile") or {}).get("complete"):
            found.append((a, fw))
    return found


def firmware_profiles(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(title, profile) for each artifact whose firmware timed its operators."""
    found = []
    for a, fw in profiled(report):
        profile = fw["profile"]
        kernels, share = kernel_name(fw.get("kernels")), acc(profile["ops_share"])
        title = (
            f"Where the time goes: {a['name']} on {fw.get('machine')} ({kernels}), "
            f"{num(profile['instructions'])} instructions, the operators {share} of them"
        )
        found.append((title, profile))
    return found


def profile_rows(profile: dict[str, Any]) -> list[list[str]]:
    return [
        [
            r["layer"],
            ", ".join(r["ops"]),
            num(r["instructions"]),
            acc(r["share"]),
            num(r["multiplications"]) if r["multiplications"] else "",
            f"{r['instructions_per_multiplication']:.1f}" if r["instructions_per_multiplication"] else "",
        ]
        for r in profile["layers"]
    ]


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


def stage_headers(task: str = "classification") -> list[str]:
    """The stage table's columns: the task's metrics in place of accuracy."""
    i = STAGE_HEADERS.index("accuracy")
    return STAGE_HEADERS[:i] + metric_headers(task) + STAGE_HEADERS[i + 1 :]


def artifact_headers(task: str = "classification") -> list[str]:
    i = ARTIFACT_HEADERS.index("accuracy")
    check = "agreement" if task == "classification" else "fidelity"
    headers = ARTIFACT_HEADERS[:i] + metric_headers(task) + ARTIFACT_HEADERS[i + 1 :]
    return [check if h == "agreement" else h for h in headers]


def _baseline(report: dict[str, Any] | None) -> dict[str, Any] | None:
    return report["stages"][0]["deployed"] if report and report.get("stages") else None


def baseline_text(report: dict[str, Any]) -> str:
    task = task_of(report)
    if task == "classification" or not report.get("stages"):
        return f"accuracy {acc(report.get('baseline_accuracy'))}"
    key, value = headline(task, report["stages"][0]["deployed"])
    return f"{key.upper() if key != 'auc' else 'anomaly AUC'} {fmt(key, value)}"


def stage_row(
    s: dict[str, Any], task: str = "classification", report: dict[str, Any] | None = None
) -> list[str]:
    d = s["deployed"]
    baseline = _baseline(report)
    return [
        s["name"],
        num(s["params"]),
        num(s["nonzero_params"]),
        num(s["macs"]),
        f"{d['format'] or ''} {d['quantization'] or ''}".strip(),
        kb(d["bytes"]),
        kb(d["gzip_bytes"]),
        *metric_cells(task, d),
        delta_cell(task, d, baseline, s.get("delta_vs_baseline")),
        _ms(d["latency_ms_p50"]),
    ]


def artifact_row(
    a: dict[str, Any], task: str = "classification", report: dict[str, Any] | None = None
) -> list[str]:
    width = len(artifact_headers(task))
    if a.get("failure") and a.get("bytes") is None:
        return [a["name"], *[""] * (width - 2), f"FAILED: {a['failure']}"]
    return [
        a["name"],
        a["format"] or "",
        str(a["quantization"] or ""),
        kb(a["bytes"]),
        kb(a["gzip_bytes"]),
        *metric_cells(task, a),
        delta_cell(task, a, _baseline(report), a.get("delta_vs_baseline")),
        agreement_cell(task, a),
        _ms(a["latency_ms_p50"]),
        target_check(a),
    ]


def target_check(a: dict[str, Any]) -> str:
    notes = []
    if not a.get("passed", True):
        notes.append("FAILED verification")
    mcu = a.get("mcu")
    if mcu and mcu.get("firmware"):
        notes.append(_firmware_check(mcu))
    elif mcu:
        notes.append(
            f"{mcu.get('board')}: arena {kb(mcu.get('arena_size'))} of {kb(mcu.get('ram_available'))} RAM, "
            f"flash {kb(mcu.get('flash_bytes'))} of {kb(mcu.get('flash_available'))}"
            + (" (fits)" if mcu.get("fits", True) else " (DOES NOT FIT)")
        )
    if mcu and (mcu.get("per_channel_cost") or {}).get("hint"):
        notes.append(mcu["per_channel_cost"]["hint"])
    tpu = a.get("edgetpu")
    if tpu:
        share = tpu.get("mapped_fraction")
        label = "predicted" if tpu.get("prediction", True) else "compiled"
        notes.append(f"Edge TPU ({label}): {acc(share)} of ops mapped")
    return "; ".join(notes)


def _firmware_check(mcu: dict[str, Any]) -> str:
    """The figures measured by the firmware on the emulated board (mcu export with firmware)."""
    fw = mcu["firmware"]
    agreement = fw.get("interpreter_agreement") or {}
    return (
        f"{mcu.get('board')}, firmware ({kernel_name(fw.get('kernels'))}) on {fw.get('machine')}: "
        f"flash {kb(fw.get('flash_bytes'))} of "
        f"{kb(mcu.get('flash_board_bytes'))}, RAM {kb(mcu.get('ram_needed_bytes'))} of "
        f"{kb(mcu.get('ram_bytes'))} "
        f"(arena {kb(mcu.get('arena_size'))}: {kb(mcu.get('arena_bytes'))} measured + margin), "
        f"{num(fw.get('instructions_per_inference'))} instructions/inference, "
        f"outputs = TFLM interpreter on {acc(agreement.get('identical'))} of {fw.get('samples')}"
        + (" (fits)" if mcu.get("fits", True) else " (DOES NOT FIT)")
    )


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
