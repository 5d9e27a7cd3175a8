"""Session-scoped data and briefly trained models shared by every test module.

Real data only: digits ships with scikit-learn; MNIST is the real t10k set in ../shared/data/mnist
(tests that need it skip with a reason when the folder is absent).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# CI fails instead of skipping: with EDGESLIM_REQUIRE=all (set by .ci/run) a test that skips because
# something is missing (a compiler, QEMU, Chromium, Ray, TFLite Micro, the MNIST files, root for a
# tmpfs) fails the run; on a developer's laptop the same tests skip with their reason. A skip that is a
# result, not a missing tool, is listed here.
REQUIRE = os.environ.get("EDGESLIM_REQUIRE", "")
SKIPS_THAT_ARE_RESULTS = ("no longer crashes",)


# The slowest files first, so the two xdist workers (one file each at a time) finish together: the
# longest-processing-time-first rule. A file not listed runs after these, in the usual order.
SLOW_FILES = (
    "test_zoo_chain.py",
    "test_readme.py",
    "test_fit.py",
    "test_trust_folders.py",
    "test_trust_ray.py",
    "test_deploy.py",
    "test_firmware.py",
    "test_zoo_rows.py",
    "test_pipeline.py",
    "test_recurrent.py",
    "test_mlperf_tiny.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order within a file kept


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_required_skip(outcome.get_result())


def pytest_collectreport(report):
    _fail_required_skip(report)  # a module-level importorskip


def _fail_required_skip(report) -> None:
    if REQUIRE != "all" or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if any(result in reason for result in SKIPS_THAT_ARE_RESULTS):
        return
    report.outcome = "failed"
    report.longrepr = f"skipped, but EDGESLIM_REQUIRE=all demands it run here: {reason}"


REPO = Path(__file__).resolve().parent.parent
MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST files not found in {MNIST_DIR}")
    return MNIST_DIR


@pytest.fixture(scope="session")
def digits():
    from edgeslim.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    from edgeslim.data import load_dataset

    return load_dataset("mnist", mnist_dir)


@pytest.fixture(scope="session")
def digits_model(digits):
    """digits_cnn trained for a few seconds (about 95 % test accuracy). Never mutate it in a test."""
    from edgeslim.train.config import TrainConfig
    from edgeslim.train.fit import train_model
    from edgeslim.train.zoo import build_model

    config = TrainConfig(epochs=10, batch_size=32, optimizer="adam", learning_rate=0.003, seed=0)
    return train_model(
        build_model("digits_cnn", digits.input_shape, 10), digits, config, progress=False
    ).model


@pytest.fixture(scope="session")
def mnist_model(mnist):
    """A small CNN (lenet5) trained briefly on the real MNIST split (about 95 %). Never mutate it."""
    from edgeslim.train.config import TrainConfig
    from edgeslim.train.fit import train_model
    from edgeslim.train.zoo import build_model

    config = TrainConfig(epochs=3, batch_size=64, optimizer="adam", learning_rate=0.002, seed=0)
    return train_model(build_model("lenet5", mnist.input_shape, 10), mnist, config, progress=False).model


@pytest.fixture(scope="session")
def digits_model_path(digits_model, tmp_path_factory) -> Path:
    from edgeslim.modelio import save_keras_model

    return save_keras_model(digits_model, tmp_path_factory.mktemp("models") / "digits_cnn.keras")


@pytest.fixture(scope="session")
def mnist_model_path(mnist_model, tmp_path_factory) -> Path:
    from edgeslim.modelio import save_keras_model

    return save_keras_model(mnist_model, tmp_path_factory.mktemp("models") / "lenet5_mnist.keras")


@pytest.fixture(scope="session")
def default_run(tmp_path_factory):
    """The embedded default pipeline (digits), run once for the pipeline, report and deploy tests."""
    from edgeslim.pipeline import load_config, run_pipeline

    run_dir = tmp_path_factory.mktemp("pipeline") / "run"
    return run_dir, run_pipeline(load_config(), run_dir, progress=False)
