"""Train mnistnet3 on the fixed MNIST split for 8 epochs (the course recipe); record accuracy and s/epoch.

Also times `edgeslim --help` (which must not import TensorFlow) against `import tensorflow` in the same run.

    python benchmarks/train_mnist.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from baseline import MNISTNET3_RECIPE, trained_mnistnet3
from results import markdown_table, update_section


def _median_seconds(argv: list[str], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    _, metrics = trained_mnistnet3(retrain=True)
    help_s = _median_seconds([sys.executable, "-m", "edgeslim", "--help"])
    tf_s = _median_seconds([sys.executable, "-c", "import tensorflow, keras"], runs=3)
    rows = [
        [
            "mnistnet3",
            f"{metrics['test_accuracy']:.2%}",
            f"{metrics['test_loss']:.4f}",
            f"{metrics['seconds_per_epoch']:.1f}",
            metrics["epochs_run"],
        ],
    ]
    text = "## Training: mnistnet3 on MNIST (benchmarks/train_mnist.py)\n\n"
    text += (
        f"Fixed split (7,200 train / 800 val / 2,000 test), recipe {MNISTNET3_RECIPE}. "
        "Course reference: about 97.7 %.\n\n"
    )
    text += markdown_table(["model", "test accuracy", "test loss", "s/epoch", "epochs"], rows)
    text += "\n\nCLI start-up (median of 5 runs):\n\n"
    text += markdown_table(
        ["command", "seconds", "ratio"],
        [
            ["edgeslim --help", f"{help_s:.2f}", "1.00"],
            ["python -c 'import tensorflow, keras'", f"{tf_s:.2f}", f"{tf_s / help_s:.1f}x slower"],
        ],
    )
    update_section("train_mnist", text)
    print(text)


if __name__ == "__main__":
    main()
