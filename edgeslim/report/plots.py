"""The report's plots (matplotlib, PNG): the task's headline metric (accuracy; MSE for regression;
anomaly AUC, else MSE, for reconstruction) vs bytes with the Pareto front, the same vs
multiplications, and per-layer multiplications before and after the chain.

File names stay ``accuracy_vs_bytes.png`` and ``accuracy_vs_macs.png`` whatever the task, so links
to them keep working."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeslim.atomic import atomic_path
from edgeslim.report.columns import LOWER_IS_BETTER, headline, task_of
from edgeslim.report.markdown import profiled
from edgeslim.report.model import pareto_front


def write_plots(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")  # no display on a build server
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = {
        "accuracy_vs_bytes": _accuracy_vs_bytes(report, out_dir / "accuracy_vs_bytes.png"),
        "accuracy_vs_macs": _accuracy_vs_macs(report, out_dir / "accuracy_vs_macs.png"),
    }
    if len(report["stages"]) > 1:
        plots["layer_macs"] = _layer_macs(report, out_dir / "layer_macs.png")
    firmware = profiled(report)
    if firmware:
        plots["firmware_profile"] = _firmware_profile(*firmware[0], out_dir / "firmware_profile.png")
    return plots


def _axis(report: dict[str, Any]) -> tuple[str, float, str]:
    """The plotted metric: its key, the factor to plot it with, and the axis label."""
    task = task_of(report)
    rows = [s["deployed"] for s in report["stages"]] + list(report["artifacts"])
    keys = [headline(task, row)[0] for row in rows if headline(task, row)[1] is not None]
    key = keys[0] if keys else "accuracy"
    if key == "accuracy":
        return key, 100.0, "test accuracy in runtime (%)"
    if key == "auc":
        return key, 1.0, "test anomaly AUC in runtime"
    return key, 1.0, f"test {key.upper()} in runtime (lower is better)"


def _value(report: dict[str, Any], row: dict[str, Any], key: str) -> float | None:
    found, value = headline(task_of(report), row)
    return value if found == key else None


def _points(report: dict[str, Any]) -> list[tuple[str, float, float, str]]:
    key = _axis(report)[0]
    pts = [
        (s["name"], s["deployed"]["bytes"], _value(report, s["deployed"], key), "stage")
        for s in report["stages"]
    ]
    pts += [(a["name"], a["bytes"], _value(report, a, key), "artifact") for a in report["artifacts"]]
    return [(n, b, a, kind) for n, b, a, kind in pts if b and a is not None]


def _front(points: list[tuple[float, float]], key: str) -> list[tuple[float, float]]:
    """The Pareto front (fewer bytes, better metric); a lower-is-better metric is negated for it."""
    sign = -1.0 if key in LOWER_IS_BETTER else 1.0
    return sorted((b, sign * v) for b, v in pareto_front([(b, sign * v) for b, v in points]))


def _accuracy_vs_bytes(report: dict[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt

    points = _points(report)
    key, scale, label = _axis(report)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for kind, marker, color in (("stage", "o", "tab:blue"), ("artifact", "s", "tab:orange")):
        sel = [(b, a, n) for n, b, a, k in points if k == kind]
        if sel:
            ax.scatter(
                [b for b, _, _ in sel],
                [a * scale for _, a, _ in sel],
                marker=marker,
                color=color,
                label="stage (LiteRT)" if kind == "stage" else "exported artifact",
                zorder=3,
            )
            if kind == "stage":  # artifacts share sizes with the last stage: their labels would pile up
                for b, a, n in sel:
                    ax.annotate(n, (b, a * scale), fontsize=7, xytext=(4, 3), textcoords="offset points")
    front = _front([(b, a) for _, b, a, _ in points], key)
    if front:
        ax.plot(
            [b for b, _ in front],
            [a * scale for _, a in front],
            "--",
            color="tab:green",
            label="Pareto front",
        )
    ax.set_xscale("log")
    ax.set_xlabel("deployed bytes (log scale)")
    ax.set_ylabel(label)
    ax.set_title(f"{label.split(' in ')[0].removeprefix('test ').capitalize()} vs deployed size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _accuracy_vs_macs(report: dict[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    key, scale, label = _axis(report)
    values = {s["name"]: _value(report, s["deployed"], key) for s in report["stages"]}
    stages = [s for s in report["stages"] if values[s["name"]] is not None and s.get("macs")]
    ax.plot([s["macs"] for s in stages], [values[s["name"]] * scale for s in stages], "o-", color="tab:blue")
    for s in stages:
        ax.annotate(
            s["name"],
            (s["macs"], values[s["name"]] * scale),
            fontsize=7,
            xytext=(4, 3),
            textcoords="offset points",
        )
    ax.set_xscale("log")
    ax.set_xlabel("multiplications per inference (log scale)")
    ax.set_ylabel(label.replace("runtime", "LiteRT"))
    ax.set_title(
        f"{label.split(' in ')[0].removeprefix('test ').capitalize()} vs multiplications, stage by stage"
    )
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def _layer_macs(report: dict[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt

    first, last = report["stages"][0], report["stages"][-1]
    before = [(r["name"], r["macs"]) for r in first["layers"] if r["macs"]]
    after = [(r["name"], r["macs"]) for r in last["layers"] if r["macs"]]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 4.5), dpi=110, sharex=True)
    for ax, rows, title in ((ax1, before, first["name"]), (ax2, after, last["name"])):
        ax.barh([n for n, _ in rows][::-1], [m for _, m in rows][::-1], color="tab:purple")
        ax.set_title(f"{title}: {sum(m for _, m in rows):,} multiplications", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xscale("log")
    fig.suptitle("Multiplications per layer, before and after the chain")
    return _save(fig, path)


def _firmware_profile(artifact: dict[str, Any], fw: dict[str, Any], path: Path) -> Path:
    """Instructions per layer on the board, beside the multiplications: where the time goes."""
    import matplotlib.pyplot as plt

    layers = fw["profile"]["layers"]
    names = [r["layer"] for r in layers][::-1]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 0.5 + 0.3 * len(layers)), dpi=110, sharey=True)
    ax1.barh(names, [r["instructions"] for r in layers][::-1], color="tab:orange")
    ax1.set_title(f"instructions per inference ({fw.get('kernels')}, {fw.get('machine')})", fontsize=9)
    ax2.barh(names, [r["multiplications"] for r in layers][::-1], color="tab:purple")
    ax2.set_title("multiplications", fontsize=9)
    for ax in (ax1, ax2):
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle(f"Where the time goes: {artifact['name']} as firmware")
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
