"""`edgeslim fit`: budgets, the cost model against built models, selection, statistics, and the search
end to end on the digits (in-process, in a pipeline, and on a real Ray cluster this test starts and
stops by itself)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from processes import free_port, processes_mentioning

from edgeslim.analysis.keras_model import analyze_keras
from edgeslim.cli import main
from edgeslim.compress.channels import ChannelAnalysis
from edgeslim.errors import ConfigError
from edgeslim.fit import make_budget, parse_size
from edgeslim.fit.costs import CostModel
from edgeslim.fit.select import select
from edgeslim.fit.space import Plan, search_space
from edgeslim.fit.stats import compare, mcnemar, wilson
from edgeslim.fit.trial import apply_plan
from edgeslim.layers.graph import ModelGraph

TECHNIQUES = ("prune", "lowrank", "separable", "quantize")


def test_sizes_and_budgets():
    assert parse_size("48KB", "x") == 48 * 1024 and parse_size("0.5MB", "x") == 512 * 1024
    assert parse_size(1000, "x") == 1000 and parse_size("16 KiB", "x") == 16384
    for bad in ("48QB", "-1", "0", True, "KB"):
        with pytest.raises(ConfigError):
            parse_size(bad, "--max-flash")
    budget = make_budget("mcu", board="cortex-m4")  # export's board rule, on the whole board
    assert budget.board_flash == 1024 * 1024 and budget.board_ram == 256 * 1024 and budget.max_arena is None
    assert make_budget("cpu", board="cortex-m4").max_flash == 1024 * 1024 - 128 * 1024
    assert make_budget("cpu", max_flash="48KB", max_loss=0.5).limits() == {"max_flash": 49152.0}
    with pytest.raises(ConfigError, match="fit needs a budget"):
        make_budget("cpu")
    with pytest.raises(ConfigError) as info:
        make_budget("cpu", max_arena="10KB", max_loss=-1)
    assert len(info.value.problems) == 2  # both mistakes at once


def test_statistics():
    lo, hi = wilson(90, 100)
    assert lo == pytest.approx(0.8256, abs=1e-3) and hi == pytest.approx(0.9448, abs=1e-3)
    assert mcnemar(0, 0) == 1.0 and mcnemar(10, 0) == pytest.approx(2 / 1024)
    result = compare([True] * 90 + [False] * 10, [True] * 85 + [False] * 5 + [True] * 5 + [False] * 5)
    assert result["loss_points"] == 0.0 and result["mcnemar_p"] == 1.0  # 5 lost, 5 won


def test_paired_interval_and_mcnemar_against_published_examples():
    """Newcombe (1998), Table II, example (a=12, b=9, c=2, d=21), method 10: 0.0112 to 0.2954. Altman et
    al., Statistics with Confidence (2000), Table 6.2 (14, 5, 0, 22): exact McNemar p = 2 x 0.5^5."""
    from edgeslim.fit.stats import newcombe_paired

    low, high = newcombe_paired(12, 9, 2, 21)
    assert low == pytest.approx(0.0112, abs=5e-5) and high == pytest.approx(0.2954, abs=5e-5)
    assert mcnemar(5, 0) == pytest.approx(0.0625)
    # No disagreement on 800 samples is not certainty: the interval keeps a width (Wald's was [0, 0]).
    same = compare([True] * 780 + [False] * 20, [True] * 780 + [False] * 20)
    low, high = same["loss_ci95_points"]
    assert same["loss_points"] == 0.0 and low < -0.3 and high > 0.3


@pytest.fixture(scope="module")
def space(digits_model):
    graph = ModelGraph(digits_model)
    analysis = ChannelAnalysis(graph, lambda layer: True)
    units = search_space(graph, analysis, TECHNIQUES)
    return graph, units, CostModel(graph, analysis, units)


def test_the_cost_model_prices_plans_as_built(digits, digits_model, space):
    _, units, cost = space
    assert {u.kind for u in units} == {"prune", "factor"}
    rng = random.Random(0)
    for _ in range(6):
        plan = Plan.make(units, [rng.randrange(len(u.options)) for u in units])
        predicted = cost.raw(plan)
        built = analyze_keras(apply_plan(digits_model, digits, plan)[0])
        # Exact but for the rounding of a low-rank fraction to a whole rank.
        assert predicted["params"] == pytest.approx(built.total_params, rel=0.02), plan.to_dict()
        assert predicted["macs"] == pytest.approx(built.total_macs, rel=0.02), plan.to_dict()


def test_selection_meets_the_predicted_budget_and_is_deterministic(space):
    _, units, cost = space
    losses = [[0.0] + [0.01 * (j + 1) for j in range(len(u.options) - 1)] for u in units]
    full = cost.predict(Plan.make(units, [0] * len(units)))
    limits = {"max_flash": full["max_flash"] / 4, "max_macs": full["macs"] / 3}
    first = select(units, losses, cost, limits)
    again = select(units, losses, cost, limits)
    assert first.feasible and first.plan == again.plan
    assert (
        first.predicted["max_flash"] <= limits["max_flash"] and first.predicted["macs"] <= limits["max_macs"]
    )
    loose = select(units, losses, cost, {"max_flash": full["max_flash"] * 2})
    assert loose.plan.choices == () and loose.predicted_loss == 0.0  # nothing to give up
    impossible = select(units, losses, cost, {"max_flash": 10})
    assert not impossible.feasible


def run_fit(model_path: Path, out: Path, *extra: str) -> tuple[int, dict]:
    code = main(
        [
            "fit",
            str(model_path),
            "--out",
            str(out),
            "--max-flash",
            "24KB",
            "--max-trials",
            "2",
            "--finetune-epochs",
            "3",
            "--quiet",
            *extra,
        ]  # fmt: skip
    )
    assert code in (0, 1), code
    return code, json.loads((out / "fit.json").read_text())


@pytest.fixture(scope="module")
def fit_run(digits_model_path, tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("EDGESLIM_FIT_CACHE", str(tmp_path_factory.mktemp("cache")))
    out = tmp_path_factory.mktemp("fit") / "run"
    return out, *run_fit(digits_model_path, out)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_fit_finds_a_model_within_the_budget(fit_run, digits_model_path, digits):
    out, code, fit = fit_run
    assert fit["schema"] == "edgeslim.fit/1" and code == (0 if fit["fits"] else 1)
    assert fit["budget"]["max_flash"] == 24 * 1024 and not fit["sensitivity_cached"]
    assert fit["sensitivity"]["accuracy"] and 1 <= len(fit["trials"]) <= 2
    for trial in fit["trials"]:
        assert trial["plan"]["layers"] and trial["evaluation"]["predicted"]["max_flash"] > 0
        assert trial["evaluation"]["validation"]["samples"] > 0  # judged on the validation split
        assert abs(trial["evaluation"]["prediction_error"]["max_flash"]) < 0.5  # predicted vs measured
        assert trial["evaluation"]["loss_bound_points"] >= trial["evaluation"]["loss_points"]
    best = fit["best"]
    assert best is not None and (out / best["artifact"]).is_file() and (out / best["model"]).is_file()
    assert best["bytes"] <= 24 * 1024 or not fit["fits"]
    if fit["fits"]:  # a measured fact: the winner's own export meets the budget again
        assert best["final_measured"]["max_flash"] == best["bytes"] <= 24 * 1024 and not best["final_over"]
    assert best["test"]["samples"] == len(digits.y_test)  # the test split, read once, for the winner
    assert 0 <= best["test"]["mcnemar_p"] <= 1
    for name in ("report.json", "report.md", "report.html", "plots/trials.png", "plots/sensitivity.png"):
        assert (out / "report" / name).is_file()
    assert digits_model_path.is_file()


def test_a_second_fit_reuses_the_sensitivity(fit_run, digits_model_path, tmp_path):
    _, _, first = fit_run
    code, second = run_fit(digits_model_path, tmp_path / "again", "--max-trials", "1")
    assert code in (0, 1) and second["sensitivity_cached"] and second["sensitivity"] == first["sensitivity"]
    assert second["seconds"] < first["seconds"]


def test_no_cache_measures_again(digits, tmp_path, monkeypatch):
    """`--no-cache` (reuse=False): the cached table is ignored, and filled again."""
    from edgeslim.fit.executor import make_executor
    from edgeslim.fit.search import _sensitivity

    monkeypatch.setenv("EDGESLIM_FIT_CACHE", str(tmp_path / "cache"))
    executor = make_executor(None, None)
    shared = (executor.share(b"model"), executor.share(digits))
    args = (b"model", digits, [], executor, shared, 0.9, lambda message: None)
    first, cached = _sensitivity(*args, True)
    assert not cached and _sensitivity(*args, True) == (first, True)
    assert _sensitivity(*args, False) == (first, False)


def test_fit_judges_a_board_by_exports_own_rule():
    """With a board, fit's budget is what export will demand: the arena plus its margin (or the whole
    firmware), after the board's reserve. A trial whose bare arena fits the RAM but not with the margin
    is over, not a winner export refuses at the end; and fit's verdict is export's, case by case."""
    from edgeslim.export.boards import board_names, load_board
    from edgeslim.export.mcu import board_fit
    from edgeslim.fit.budget import over_budget
    from edgeslim.fit.trial import sidecar_measurements
    from edgeslim.runtime.tflm import recommended_arena

    rng = random.Random(3)
    for name in board_names():
        board, budget = load_board(name), make_budget("mcu", board=name)
        assert budget.max_arena is None and budget.board_ram == board.ram_bytes
        for _ in range(40):
            flash, arena = rng.randint(1, 2 * board.flash_available), rng.randint(1, board.ram_available)
            firmware = rng.random() < 0.3
            ram = recommended_arena(arena) + (rng.randint(0, 4096) if firmware else 0)
            mcu = {
                "arena_bytes": arena,
                "arena_source": "firmware" if firmware else "host",
                "fit": board_fit(load_board("stm32l4r5"), flash, ram, firmware),  # as a trial measures
            }
            measured = sidecar_measurements({"bytes": flash, "mcu": mcu}, 1000, name)
            over, unknown = over_budget(budget.limits(), measured)
            assert not unknown and (not over) == board_fit(board, flash, ram, firmware)["fits"], name
    board = load_board("stm32l4r5")
    arena = int(0.9 * board.ram_available)  # fits bare, not with the margin
    mcu = {
        "arena_bytes": arena,
        "arena_source": "host",
        "fit": board_fit(board, 1000, recommended_arena(arena), False),
    }
    over, _ = over_budget(
        make_budget("mcu", board=board.name).limits(),
        sidecar_measurements({"bytes": 1000, "mcu": mcu}, 1, board.name),
    )
    assert list(over) == ["board_ram"]


def test_fit_takes_export_targets_and_their_techniques():
    """Targets come from export's registry; by default a target gets every technique its runtime takes."""
    from edgeslim.export.registry import TARGET_NAMES
    from edgeslim.fit import check_techniques

    for target in TARGET_NAMES:
        assert make_budget(target, max_flash="8KB").target == target
    assert check_techniques(None, "gpu") == ("architecture", "prune", "lowrank", "separable")
    assert check_techniques(None, "mcu") == ("architecture", *TECHNIQUES)


def test_fit_mistakes_exit_2_with_one_line(digits_model_path, tmp_path, capsys):
    for args in (
        ["--max-flash", "48QB"],
        [],
        ["--target", "tpu", "--max-flash", "8KB"],
        ["--max-flash", "8KB", "--techniques", "prune,dance"],
        ["--target", "mcu", "--max-flash", "8KB", "--techniques", "prune"],
        ["--max-flash", "8KB", "--workers", "0"],
        ["--target", "gpu", "--max-flash", "8KB", "--techniques", "prune,quantize"],  # gpu runs floats
    ):
        code = main(["fit", str(digits_model_path), "--out", str(tmp_path / "x"), *args])
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err and err.startswith("error:"), (args, err)


def test_a_pipeline_fit_section_replaces_the_compress_list(digits_model_path, tmp_path):
    from edgeslim.pipeline import load_config, run_pipeline

    config = load_config(
        overrides=[
            f"model={digits_model_path}",
            "train=null",
            "compress=[]",
            "fit.max_flash=24KB",
            "fit.max_trials=1",
            "fit.finetune_epochs=2",
            "export.targets=[cpu]",
        ]
    )
    result = run_pipeline(config, tmp_path / "run", progress=False)
    assert [s.name for s in result.steps] == ["train", "01-fit", "exports/cpu", "report"]
    fit_stage = result.report["stages"][1]
    assert fit_stage["stage"] == "fit" and fit_stage["params"] < result.report["stages"][0]["params"]
    assert (tmp_path / "run" / "01-fit" / "search" / "fit.json").is_file()


# The cluster and its client share a token, as Ray (>= 2.52) documents; older Rays ignore both. Ray
# joins an explicit address with token authentication only under RAY_AUTH_MODE=token, read when Ray
# starts up in a process, so the fit runs as its own process, as a user on the cluster would run it.
RAY_ENV = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "edgeslim-test-" + "0" * 32}


@contextlib.contextmanager
def _ray_cluster(cpus: int = 2):
    """A Ray head of this test's own: its own temporary folder and ports, in its own process group, so
    that stopping it touches nobody else's Ray (never `ray stop`, which stops every Ray on the machine)."""
    ray_cli = Path(sys.executable).parent / "ray"
    if not ray_cli.is_file():
        pytest.skip("no ray command beside this Python")
    temp = tempfile.mkdtemp(prefix="es-cluster-", dir="/tmp")  # short: Ray's Unix socket paths
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | RAY_ENV
    log = open(Path(temp) / "ray-start.log", "w+")  # noqa: SIM115 - closed below
    head = subprocess.Popen(
        [
            str(ray_cli),
            "start",
            "--head",
            "--block",
            f"--temp-dir={temp}",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={cpus}",
            "--include-dashboard=false",
            f"--dashboard-port={free_port()}",
            f"--ray-client-server-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300  # a busy machine starts Ray slowly
        while head.poll() is None and time.monotonic() < deadline:
            if "Ray runtime started" in Path(log.name).read_text(errors="replace"):
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=5):
                    break
            time.sleep(1)
        else:
            pytest.fail(f"ray start did not come up:\n{Path(log.name).read_text(errors='replace')[-3000:]}")
        yield f"127.0.0.1:{port}"
    finally:
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(head.pid, sig)
            deadline = time.monotonic() + wait
            while processes_mentioning(temp) and time.monotonic() < deadline:
                time.sleep(0.5)
        for pid in processes_mentioning(temp):  # any that left the process group
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        head.wait(30)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _fit_in_subprocess(model_path: Path, out: Path, *extra: str) -> dict:
    env = dict(os.environ, **RAY_ENV)
    args = ["fit", str(model_path), "--out", str(out), "--max-flash", "24KB", "--max-trials", "2"]
    args += ["--finetune-epochs", "3", "--quiet", *extra]
    done = subprocess.run(
        [sys.executable, "-m", "edgeslim", *args], env=env, capture_output=True, text=True, timeout=1200
    )
    assert done.returncode in (0, 1), f"fit exited {done.returncode}:\n{done.stderr[-3000:]}"
    assert (out / "fit.json").is_file(), (
        f"fit exited {done.returncode} without fit.json:\n{done.stderr[-3000:]}"
    )
    return json.loads((out / "fit.json").read_text())


def test_ray_cluster_gives_the_in_process_plan(fit_run, digits_model_path, tmp_path, monkeypatch):
    pytest.importorskip("ray", reason="the scale extra (ray) is not installed")
    monkeypatch.setenv("EDGESLIM_FIT_CACHE", str(tmp_path / "cache"))  # the sensitivity is computed on Ray
    _, _, local = fit_run
    with _ray_cluster(cpus=2) as address:
        # One trial is enough to compare the first plan (the last --max-trials given wins).
        remote = _fit_in_subprocess(
            digits_model_path, tmp_path / "ray", "--ray-address", address, "--max-trials", "1"
        )
    assert remote["executor"]["kind"] == "ray" and remote["executor"]["workers"] == 2, remote["executor"]
    assert remote["sensitivity"]["accuracy"] == local["sensitivity"]["accuracy"]
    assert [t["plan"] for t in remote["trials"]][:1] == [t["plan"] for t in local["trials"]][:1]


def test_an_upgrade_never_reuses_what_older_code_cached(monkeypatch, digits):
    """Pipeline steps, sensitivity tables and trial history are keyed by the code and tool versions."""
    import edgeslim
    from edgeslim.fit.history import history_dir
    from edgeslim.fit.sensitivity import cache_key
    from edgeslim.fit.trial import TrialSettings
    from edgeslim.pipeline.rundir import step_key

    def keys() -> tuple[str, str, str]:
        settings = TrialSettings(target="mcu")
        return (
            step_key({"train": 1}, "x"),
            cache_key(b"model", digits, []),
            str(history_dir(b"m", "d", settings)),
        )

    before = keys()
    assert keys() == before  # stable within one version: a rerun reuses
    monkeypatch.setattr(edgeslim, "__version__", "99.0.0")
    after = keys()
    assert all(a != b for a, b in zip(before, after, strict=True))


def test_fits_is_a_measured_fact():
    """Over the limit, not measured, or not exported: never "fits", and the binding constraint is said."""
    from edgeslim.fit import _measured_fit
    from edgeslim.fit.budget import over_budget

    over, unknown = over_budget(
        {"max_flash": 100.0, "max_arena": 50.0}, {"max_flash": 120.0, "max_arena": None}
    )
    assert over == {"max_flash": pytest.approx(0.2)} and unknown == ["max_arena"]
    met = {"meets_budget": True, "within_loss": True}
    good = {"evaluation": met, "artifact": "a.tflite", "final_over": {}, "final_unknown": []}
    assert _measured_fit(good, []) == (True, [])
    assert _measured_fit(good | {"final_over": {"max_flash": 0.01}}, []) == (False, ["max_flash"])
    assert _measured_fit(good | {"final_unknown": ["max_arena"]}, []) == (False, ["max_arena (not measured)"])
    refused = {"evaluation": met, "artifact": None, "export_error": "does not fit board x"}
    fits, binding = _measured_fit(refused, [])
    assert not fits and "does not fit board x" in binding[0]
    lossy = good | {"evaluation": {"meets_budget": True, "within_loss": False}}
    assert _measured_fit(lossy, ["loss"]) == (False, ["loss"])


def test_a_reconstruction_model_is_refused_with_one_line(tmp_path, capsys):
    """Fit's loss is accuracy points: an autoencoder is refused before any work (exit 2), not scored
    by argmax as if it were a classifier."""
    from edgeslim.train.zoo import build_model

    path = tmp_path / "autoencoder.keras"
    build_model("autoencoder", (8, 8, 1), 0).save(path)
    code = main(["fit", str(path), "--max-flash", "8KB", "--out", str(tmp_path / "fit")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("error:") == 1 and "reconstruction model" in err and "Traceback" not in err


def test_a_firmware_fit_prices_instructions_on_the_boards_core(fit_run, digits_model_path, tmp_path):
    """`--board microbit --firmware --max-instructions`: the trials run on the Cortex-M0's library (on
    memory where a plan over budget still runs), the instructions are priced operator by operator from
    a calibration model measured once per core, each trial's profile refines the price, and the winner
    runs on the micro:bit itself."""
    from edgeslim.export.firmware import firmware_available

    ok, why = firmware_available("microbit")
    if not ok:
        pytest.skip(f"no firmware toolchain: {why}")
    out = tmp_path / "m0"
    extra = ["--target", "mcu", "--board", "microbit", "--firmware", "--max-instructions", "400000"]
    code, fit = run_fit(digits_model_path, out, "--max-trials", "1", *extra)
    assert fit["settings"]["board"] == "microbit" and fit["settings"]["firmware"]
    assert list((Path(os.environ["EDGESLIM_FIT_CACHE"]) / "instructions").glob("cortex-m0-cmsis_nn-*.json"))
    [trial] = [t for t in fit["trials"] if not t.get("failed")]
    sidecar = json.loads((out / trial["artifact"]).with_name("model_int8.tflite.json").read_text())
    assert sidecar["mcu"]["firmware"]["cpu"] == "cortex-m0"  # the board's core, not the default M4
    assert trial["profile"]["complete"] and trial["measured"]["max_instructions"] > 0
    # priced before the trial from the calibration model and the input model's profile
    assert abs(trial["evaluation"]["prediction_error"]["max_instructions"]) < 0.3
    best = fit["best"]
    assert best["mcu"]["firmware"]["machine"] == "microbit"
    if code == 0:
        assert best["final_measured"]["max_instructions"] <= 400_000
