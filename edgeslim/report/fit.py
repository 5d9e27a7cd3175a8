"""The fit report: fit.json rendered as report.json, report.md and a self-contained report.html, with plots.

- per-layer sensitivity curves (validation accuracy per level of each technique, no fine-tuning);
- the trials against the budget: bytes and validation accuracy, with the budget line, the loss line
  and the Pareto front of the trials;
- the winner's per-layer plan, its measured figures, and its test accuracy with the paired statistics.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from edgeslim.atomic import atomic_path, write_json, write_text
from edgeslim.report.format import acc, kb, num
from edgeslim.report.markdown import markdown_table
from edgeslim.report.model import pareto_front
from edgeslim.tflm_kernels import kernel_name

TRIAL_HEADERS = [
    "trial",
    "plan",
    "bytes",
    "arena",
    "MACs",
    "latency p50 (ms)",
    "instructions",
    "validation",
    "loss (pt), bound",
    "McNemar p",
    "predicted vs measured",
    "verdict",
]
SHORT = {
    "max_flash": "bytes",
    "max_arena": "arena",
    "max_instructions": "instructions",
    "board_flash": "board flash",
    "board_ram": "board RAM",
}


def write_fit_report(fit: dict[str, Any], out_dir: Path, plots: bool = True) -> dict[str, Path]:
    out_dir = Path(out_dir)
    pngs = _plots(fit, out_dir / "plots") if plots else {}
    written = {"json": write_json(out_dir / "report.json", fit)}
    rel = {k: str(v.relative_to(out_dir)) for k, v in pngs.items()}
    written["md"] = write_text(out_dir / "report.md", render_markdown(fit, rel))
    written["html"] = write_text(out_dir / "report.html", render_html(fit, pngs))
    return written | {f"plot:{k}": v for k, v in pngs.items()}


def summary_line(fit: dict[str, Any]) -> str:
    best = fit.get("best")
    if best is None or best.get("artifact") is None:
        return f"no model fits; binding: {', '.join(fit['binding']) or 'unknown'}"
    verdict = "fits" if fit["fits"] else f"closest candidate (binding: {', '.join(fit['binding'])})"
    test = best["test"]
    low, high = test["loss_ci95_points"]
    return (
        f"{verdict}: trial {best['trial']}, {kb(best['bytes'])}, test accuracy {acc(best['test_accuracy'])} "
        f"(input model {acc(best['input_test_accuracy'])}; test loss {test['loss_points']:+.2f} pt "
        f"[{low:+.2f}, {high:+.2f}] against --max-loss {fit['budget']['max_loss']:g}, "
        f"McNemar p = {test['mcnemar_p']:.3f})"
    )


def firmware_line(fit: dict[str, Any]) -> str | None:
    """The winner's firmware figures and which kernels they come from (mcu with --firmware)."""
    best = fit.get("best") or {}
    fw = (best.get("mcu") or {}).get("firmware")
    if not fw:
        return None
    return (
        f"Firmware ({kernel_name(fw.get('kernels'))}, {fw['cpu']} on QEMU's {fw['machine']}): flash "
        f"{kb(fw['flash_bytes'])}, RAM {kb(fw['ram_bytes'] + fw['stack_used_bytes'])} with the stack, arena "
        f"{kb(fw['arena_min_bytes'])}, {fw['instructions_per_inference']:,} instructions per inference."
    )


def loss_lines(fit: dict[str, Any]) -> list[str]:
    """How the loss was judged, and whether the test split, read once, disagrees with validation."""
    best = fit.get("best") or {}
    verdict = best.get("evaluation") or {}
    if "loss_bound_points" not in verdict or best.get("test") is None:
        return []
    shared = (
        f" ({fit['loss_rule']['confidence']:.0%} shared by {verdict['candidates']} contenders)"
        if verdict["candidates"] > 1
        else ""
    )
    lines = [
        f"Loss rule: on the {verdict['validation']['samples']} validation samples the winner loses "
        f"{verdict['loss_points']:+.2f} pt, at most {verdict['loss_bound_points']:+.2f} pt at "
        f"{verdict['loss_confidence']:.1%} confidence{shared}; --max-loss {fit['budget']['max_loss']:g}."
    ]
    check = best.get("test_vs_validation") or {}
    if check.get("agree") is False:
        lines.append(f"Test and validation disagree: {check['why']}.")
    return lines


def _trial_rows(fit: dict[str, Any]) -> list[list[object]]:
    rows = []
    for t in fit["trials"]:
        ev = t["evaluation"]
        m = t.get("measured") or {}
        val = ev.get("validation") or {}
        if t.get("failed"):
            verdict = f"failed: {t['failed']}"
        else:
            verdict = "fits" if ev["meets_budget"] else "over " + ", ".join(ev.get("binding") or ev["over"])
            verdict += "" if ev["within_loss"] else "; loss over"
            verdict += " (from an earlier fit)" if t.get("reused") else ""
        rows.append(
            [
                t["index"],
                _plan_text(t["plan"]) + f"; {t['plan']['quantization']}",
                kb(m.get("max_flash")),
                kb(m.get("max_arena")),
                num(t.get("macs")),
                f"{m['max_latency_ms']:.3f}" if m.get("max_latency_ms") is not None else "",
                num(m.get("max_instructions")),
                _ci(val) if val else "",
                _loss_cell(ev) if val else "",
                f"{val['mcnemar_p']:.3f}" if val else "",
                ", ".join(
                    f"{SHORT[k]} {e:+.1%}"
                    for k, e in (ev.get("prediction_error") or {}).items()
                    if k in SHORT
                ),
                verdict,
            ]
        )
    return rows


def _plan_text(plan: dict[str, Any]) -> str:
    return "; ".join([*plan.get("moves", []), *(f"{k} {v}" for k, v in plan["layers"].items())])


def _loss_cell(ev: dict[str, Any]) -> str:
    bound = ev.get("loss_bound_points")
    return f"{ev['loss_points']:+.2f}" + (f" (at most {bound:+.2f})" if bound is not None else "")


def _ci(stats: dict[str, Any]) -> str:
    lo, hi = stats["accuracy_ci95"]
    return f"{stats['accuracy']:.2%} [{lo:.1%}, {hi:.1%}]"


def _plan_rows(best: dict[str, Any]) -> list[list[object]]:
    moves = [["(architecture)", move] for move in best["plan"].get("moves", [])]
    return [*moves, *([layer, choice] for layer, choice in best["plan"]["layers"].items())] + [
        ["(all)", best["plan"]["quantization"]]
    ]


def _budget_line(fit: dict[str, Any]) -> str:
    limits = [f"{fit['constraints'][k]} <= {fit['budget'][k]:,}" for k in fit["constraints"]]
    return (
        f"target {fit['budget']['target']}; "
        + "; ".join(limits)
        + f"; loss <= {fit['budget']['max_loss']} pt"
    )


def render_markdown(fit: dict[str, Any], plots: dict[str, str]) -> str:
    lines = [
        "# edgeslim fit",
        "",
        f"Model `{fit['model']['path']}` ({fit['model']['name']}) on {fit['dataset']['name']}. "
        f"Budget: {_budget_line(fit)}.",
        f"Input model validation accuracy {acc(fit['baseline']['val_accuracy'])}. "
        f"Executor: {fit['executor']['kind']} ({fit['executor']['workers']} worker(s)); "
        f"{fit['seconds']:.0f} s.",
        "",
        f"**{summary_line(fit)}**",
        "",
        *[line + "\n" for line in [*loss_lines(fit), firmware_line(fit)] if line],
    ]
    best = fit.get("best")
    if best:
        lines += ["## The winner's plan", "", markdown_table(["layer", "choice"], _plan_rows(best)), ""]
        if best.get("artifact"):
            lines += [f"Artifact: `{best['artifact']}` (sidecar `{best['sidecar']}`).", ""]
    lines += ["## Trials (validation split)", "", markdown_table(TRIAL_HEADERS, _trial_rows(fit)), ""]
    for name, path in plots.items():
        lines += [f"![{name}]({path})", ""]
    cached = " (reused from the cache)" if fit["sensitivity_cached"] else ""
    lines += [f"## Sensitivity{cached}: validation accuracy, each option alone, no fine-tuning", ""]
    for unit, row in fit["sensitivity"]["accuracy"].items():
        lines.append(f"- **{unit}**: " + ", ".join(f"{label} {value:.2%}" for label, value in row.items()))
    return "\n".join(lines).rstrip() + "\n"


def render_html(fit: dict[str, Any], plots: dict[str, Path]) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>edgeslim fit</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222}"
        "table{border-collapse:collapse;font-size:.85rem}th,td{border:1px solid #ccc;padding:.25rem .5rem}"
        "th{background:#f0f3f7}img{max-width:100%}</style></head><body><h1>edgeslim fit</h1>",
        f"<p>Model <code>{e(fit['model']['path'])}</code> on {e(fit['dataset']['name'])}. "
        f"Budget: {e(_budget_line(fit))}.</p><p><b>{e(summary_line(fit))}</b></p>",
        *[f"<p>{e(line)}</p>" for line in loss_lines(fit)],
    ]
    best = fit.get("best")
    if best:
        parts.append("<h2>The winner's plan</h2>" + _html_table(["layer", "choice"], _plan_rows(best)))
    parts.append("<h2>Trials (validation split)</h2>" + _html_table(TRIAL_HEADERS, _trial_rows(fit)))
    for name, path in plots.items():
        data = base64.b64encode(Path(path).read_bytes()).decode()
        parts.append(
            f"<h3>{e(name.replace('_', ' '))}</h3><img alt='{e(name)}' src='data:image/png;base64,{data}'>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def _html_table(headers: list[str], rows: list[list[object]]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _plots(fit: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    out_dir.mkdir(parents=True, exist_ok=True)
    return {
        "sensitivity": _sensitivity_plot(fit, out_dir / "sensitivity.png"),
        "trials": _trials_plot(fit, out_dir / "trials.png"),
    }


def _sensitivity_plot(fit: dict[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt

    rows = fit["sensitivity"]["accuracy"]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4), dpi=100, sharey=True)
    for ax, technique in zip(axes, ("prune", "lowrank", "separable"), strict=True):
        for unit, row in rows.items():
            points = [(i, v) for i, (label, v) in enumerate(row.items()) if label.startswith(technique)]
            if points:
                labels = [label for label in row if label.startswith(technique)]
                ax.plot(range(len(points)), [v for _, v in points], marker="o", label=unit)
                ax.set_xticks(
                    range(len(labels)), [label.split(" ", 1)[1][:10] for label in labels], rotation=30
                )
        ax.axhline(fit["sensitivity"]["baseline_val_accuracy"], color="gray", linestyle=":")
        ax.set_title(technique)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("validation accuracy, no fine-tuning")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def _trials_plot(fit: dict[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt

    pts = [
        (t["measured"]["max_flash"], t["val_accuracy"], t["index"])
        for t in fit["trials"]
        if not t.get("failed") and t.get("val_accuracy") is not None
    ]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    if pts:
        ax.scatter([p[0] / 1024 for p in pts], [p[1] for p in pts], color="tab:blue", label="trials")
        for b, a, i in pts:
            ax.annotate(str(i), (b / 1024, a), fontsize=7, xytext=(3, 3), textcoords="offset points")
        front = sorted(pareto_front([(b, a) for b, a, _ in pts]))
        ax.plot([b / 1024 for b, _ in front], [a for _, a in front], color="tab:green", label="Pareto front")
    if fit["budget"].get("max_flash"):
        ax.axvline(fit["budget"]["max_flash"] / 1024, color="tab:red", linestyle="--", label="flash budget")
    floor = fit["baseline"]["val_accuracy"] - fit["budget"]["max_loss"] / 100
    ax.axhline(floor, color="tab:orange", linestyle="--", label="tolerated loss")
    ax.set_xlabel("model bytes (KB)")
    ax.set_ylabel("validation accuracy (deployed)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
