"""Wall time of the embedded default pipeline as a user runs it (`edgeslim pipeline`, a separate process),
then of a rerun into the same run folder that has nothing to do, and what each step took.

Targets: the rerun under 10 % of the first run (it loads no model and imports no TensorFlow); the first
run under 3 minutes on 2 cores. Medians of RUNS reruns.

    python benchmarks/pipeline.py
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results import markdown_table, update_section

RUNS = 5


def edgeslim(*args: str) -> float:
    """Seconds for one `edgeslim` command in its own process (exit code 0 required)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "edgeslim", *args], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    run_dir = Path(tempfile.mkdtemp(prefix="edgeslim-bench-")) / "run"
    try:
        first_s = edgeslim("pipeline", "--out", str(run_dir), "--quiet")
        reruns = [edgeslim("pipeline", "--out", str(run_dir), "--quiet") for _ in range(RUNS)]
        help_s = statistics.median(edgeslim("--help") for _ in range(RUNS))
        manifest = json.loads((run_dir / "manifest.json").read_text())
        report = json.loads((run_dir / "report" / "report.json").read_text())
        steps = {s["name"]: s for s in manifest["steps"]}
        first_steps = [json.loads((run_dir / s["dir"] / "step.json").read_text()) for s in manifest["steps"]]
    finally:
        shutil.rmtree(run_dir.parent, ignore_errors=True)
    rerun_s = statistics.median(reruns)
    rows = [[name, f"{info['seconds']:.1f}", "yes" if steps[name]["cached"] else "no"]
            for name, info in zip(steps, first_steps, strict=True)]  # fmt: skip
    rows.append(["**total (process)**", f"**{first_s:.1f}**", f"**{rerun_s:.2f} s on rerun**"])
    ratio = rerun_s / first_s
    text = "## Pipeline: the embedded default (benchmarks/pipeline.py)\n\n"
    text += (
        "`edgeslim pipeline --out RUN` as a user runs it, each time a new process: digits, digits_cnn, "
        "prune -> lowrank -> separable -> int8 (QAT), exports cpu/mcu/edgetpu, report.\n\n"
    )
    text += markdown_table(["step", "first run (s)", "skipped on rerun"], rows)
    text += (
        f"\n\nRerun with nothing to do (median of {RUNS}): {rerun_s:.2f} s = **{ratio:.1%}** of the first "
        f"run (target < 10 %: {'met' if ratio < 0.10 else 'NOT met'}); `edgeslim --help` alone takes "
        f"{help_s:.2f} s. First run {first_s:.0f} s "
        f"(target < 180 s: {'met' if first_s < 180 else 'NOT met'}).\n"
    )
    text += "\n" + markdown_table(
        ["stage", "params", "multiplications", "deployed bytes", "LiteRT accuracy"],
        [
            [
                s["name"],
                f"{s['params']:,}",
                f"{s['macs']:,}",
                f"{s['deployed']['bytes']:,}",
                f"{s['deployed']['accuracy']:.2%}",
            ]  # fmt: skip
            for s in report["stages"]
        ],
    )
    update_section("pipeline", text)
    print(text)


if __name__ == "__main__":
    main()
