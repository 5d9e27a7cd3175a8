"""Wall time per step of the embedded default pipeline, then of a rerun that has nothing to do.

Target: the resumed run takes under 10 % of the first; the first under 3 minutes on 2 cores.

    python benchmarks/pipeline.py
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from results import markdown_table, update_section


def main() -> None:
    from edgeslim.pipeline import load_config, run_pipeline

    run_dir = Path(tempfile.mkdtemp(prefix="edgeslim-bench-")) / "run"
    try:
        start = time.perf_counter()
        first = run_pipeline(load_config(), run_dir, progress=False)
        first_s = time.perf_counter() - start
        start = time.perf_counter()
        second = run_pipeline(load_config(), run_dir, progress=False)
        second_s = time.perf_counter() - start
    finally:
        shutil.rmtree(run_dir.parent, ignore_errors=True)
    rows = [
        [a.name, f"{a.seconds:.1f}", "yes" if b.cached else "no"]
        for a, b in zip(first.steps, second.steps, strict=True)
    ]
    rows.append(["report + manifest", f"{first_s - sum(s.seconds for s in first.steps):.1f}", "rebuilt"])
    rows.append(["**total**", f"**{first_s:.1f}**", f"**{second_s:.2f} s on rerun**"])
    ratio = second_s / first_s
    text = "## Pipeline: the embedded default (benchmarks/pipeline.py)\n\n"
    text += "digits, digits_cnn, prune -> lowrank -> separable -> int8, exports cpu/mcu/edgetpu, report.\n\n"
    text += markdown_table(["step", "first run (s)", "skipped on rerun"], rows)
    text += (
        f"\n\nRerun with nothing to do: {second_s:.2f} s = **{ratio:.1%}** of the first run "
        f"(target < 10 %: {'met' if ratio < 0.10 else 'NOT met'}). First run {first_s:.0f} s "
        f"(target < 180 s: {'met' if first_s < 180 else 'NOT met'}).\n"
    )
    stages = first.report["stages"]
    text += "\n" + markdown_table(
        ["stage", "params", "multiplications", "deployed bytes", "LiteRT accuracy"],
        [
            [
                s["name"],
                f"{s['params']:,}",
                f"{s['macs']:,}",
                f"{s['deployed']['bytes']:,}",
                f"{s['deployed']['accuracy']:.2%}",
            ]
            for s in stages
        ],
    )
    update_section("pipeline", text)
    print(text)


if __name__ == "__main__":
    main()
