"""Nothing of the user's is lost: commands write only into folders edgeslim made, never over their own
input, never through a tampered record, and one at a time (docs/TRUST.md lists each promise and its test).

Real files and real processes: the default pipeline's run (copied before any tampering), the CLI's
exit codes and its one-line errors, an fcntl lock held by another process.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from processes import assert_refused, run_cli

from edgeslim.cli import main
from edgeslim.pipeline.rundir import cached, open_step


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its sha256: what must be unchanged after a refused command."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture()
def run_copy(default_run, tmp_path) -> Path:
    """A private copy of the default run, free to tamper with."""
    run_dir, _ = default_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    return copy


# 1. Nothing of the user's is deleted or overwritten.


def test_deploy_refuses_a_folder_it_did_not_make(default_run, tmp_path):
    run_dir, _ = default_run
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("two years of work")
    before = tree(thesis)
    assert_refused(run_cli("deploy", str(run_dir), "--out", str(thesis)), "did not write", "chapter1.tex")
    assert_refused(run_cli("deploy", str(run_dir), "--out", str(thesis), "--force"), "did not write")
    assert tree(thesis) == before


def test_deploy_refuses_the_run_itself_and_folders_inside_it(default_run):
    run_dir, _ = default_run
    before = tree(run_dir)
    assert_refused(run_cli("deploy", str(run_dir), "--out", str(run_dir)), "input")
    assert_refused(run_cli("deploy", str(run_dir), "--out", str(run_dir / "exports")), "inside")
    assert_refused(run_cli("deploy", str(run_dir), "--out", str(run_dir / "exports" / "new")), "inside")
    assert tree(run_dir) == before


def test_deploy_replaces_its_own_bundle_only_with_force_and_keeps_the_users_files(default_run, tmp_path):
    run_dir, _ = default_run
    bundle = tmp_path / "bundle"
    assert main(["deploy", str(run_dir), "--target", "rpi", "--out", str(bundle)]) == 0
    assert main(["deploy", str(run_dir), "--target", "rpi", "--out", str(bundle)]) == 2
    (bundle / "my_notes.txt").write_text("mine")
    assert main(["deploy", str(run_dir), "--target", "mcu", "--out", str(bundle), "--force"]) == 0
    names = {p.name for p in bundle.iterdir()}
    assert "my_notes.txt" in names and "model_data.cc" in names
    assert "run.py" not in names  # the earlier (rpi) bundle's files are gone, and only those


@pytest.mark.parametrize("command", ["train", "fit", "compress", "export", "pipeline"])
def test_a_command_never_writes_over_its_input_model(default_run, tmp_path, command):
    run_dir, _ = default_run
    folder = tmp_path / "work"
    folder.mkdir()
    model = folder / "model.keras"
    shutil.copyfile(run_dir / "00-train" / "model.keras", model)
    before = tree(folder)
    args = {
        "train": ["train", "--model", str(model), "--epochs", "1"],
        "fit": ["fit", str(model), "--max-flash", "24KB"],
        "compress": ["compress", str(model), "--stage", "prune:sparsity=0.5"],
        "export": ["export", str(model), "--target", "cpu"],
        "pipeline": ["pipeline", "--model", str(model)],
    }[command]
    for out in (folder, tmp_path):  # the model's own folder, and a folder above it
        assert_refused(run_cli(*args, "--out", str(out)), "input")
    assert tree(folder) == before


def test_out_that_is_a_file_or_a_link_is_refused(default_run, tmp_path):
    run_dir, _ = default_run
    a_file = tmp_path / "a_file"
    a_file.write_text("user data")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    assert_refused(run_cli("pipeline", "--out", str(a_file)), "is a file")
    assert_refused(run_cli("deploy", str(run_dir), "--out", str(link)), "symbolic link")
    assert a_file.read_text() == "user data" and not (tmp_path / "elsewhere").exists()


def test_a_folder_of_another_kind_is_refused(default_run, tmp_path):
    run_dir, _ = default_run
    bundle = tmp_path / "bundle"
    assert main(["deploy", str(run_dir), "--out", str(bundle)]) == 0
    before = tree(bundle)
    assert_refused(run_cli("pipeline", "--out", str(bundle)), "bundle")
    assert tree(bundle) == before


# 2. Markers cannot point outside; deploy ships only recorded, intact files.


def test_a_marker_pointing_outside_deletes_and_reads_nothing(tmp_path):
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    step = tmp_path / "run" / "01-prune"
    step.mkdir(parents=True)
    (step / "model.keras").write_text("x")
    names = ["../../precious.txt", str(outside), "model.keras"]
    (step / "step.json").write_text(json.dumps({"key": "k", "sha256": {n: "0" for n in names}}))
    assert cached(step, "k", ["model.keras"]) is None  # corrupt: the step is redone
    open_step(step)
    assert outside.read_text() == "keep me"
    assert not (step / "model.keras").exists()  # the one name inside was the step's own file


def test_deploy_never_ships_a_file_outside_the_run(run_copy, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("password")
    marker_path = run_copy / "exports" / "cpu" / "step.json"
    marker = json.loads(marker_path.read_text())
    rel = os.path.relpath(secret, marker_path.parent)
    marker["artifacts"] = [rel]
    marker["sha256"][rel] = hashlib.sha256(secret.read_bytes()).hexdigest()
    marker_path.write_text(json.dumps(marker))
    bundle = tmp_path / "bundle"
    done = run_cli("deploy", str(run_copy), "--out", str(bundle), "--artifact", "secret.txt")
    assert_refused(done)
    assert not bundle.exists()
    link = run_copy / "exports" / "mcu" / "mcu" / "secret.h"  # a link planted in the C package
    link.symlink_to(secret)
    assert main(["deploy", str(run_copy), "--target", "mcu", "--out", str(bundle)]) == 0
    assert not any("password" in p.read_text(errors="ignore") for p in bundle.rglob("*") if p.is_file())


@pytest.mark.parametrize("damage", ["truncate", "swap_sidecar"])
def test_deploy_refuses_a_damaged_artifact(run_copy, tmp_path, damage):
    marker = json.loads((run_copy / "exports" / "cpu" / "step.json").read_text())
    tflite = next(a for a in marker["artifacts"] if a.endswith(".tflite"))
    path = run_copy / "exports" / "cpu" / tflite
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:1000])
    else:  # a sidecar whose sha256 vouches for other bytes
        sidecar = json.loads(Path(f"{path}.json").read_text())
        sidecar["sha256"] = "0" * 64
        Path(f"{path}.json").write_text(json.dumps(sidecar))
    bundle = tmp_path / "bundle"
    assert_refused(run_cli("deploy", str(run_copy), "--out", str(bundle), "--artifact", path.name), "rerun")
    assert not bundle.exists()


# 3. One writer per run folder; no two commands share a log.


def test_a_second_writer_is_refused_with_the_holders_pid(run_copy, tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom edgeslim.runlock import locked\n"
         f"with locked({str(run_copy)!r}):\n    print('held', flush=True)\n    time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        assert_refused(run_cli("pipeline", "--out", str(run_copy)), f"PID {holder.pid}")
        assert_refused(run_cli("report", str(run_copy)), f"PID {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    assert run_cli("report", str(run_copy)).returncode == 0  # the lock died with its process


def test_commands_without_a_run_folder_keep_one_log_each(tmp_path, default_run):
    run_dir, _ = default_run
    env = dict(os.environ, EDGESLIM_LOG_DIR=str(tmp_path / "logs"))
    artifact = next((run_dir / "exports" / "cpu").glob("*.tflite"))
    procs = [
        subprocess.Popen([sys.executable, "-m", "edgeslim", "inspect", str(artifact)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]  # fmt: skip
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    logs = sorted((tmp_path / "logs").glob("inspect-*.log"))
    # Named after the process that did the work: the watched child of each `edgeslim` (supervisor).
    assert len(logs) == 3 and len({log.name.rsplit("-", 1)[-1] for log in logs}) == 3


# 7. File-system failures are user errors: exit 2 with the path and the reason, nothing half-written.


@pytest.fixture()
def small_disk(tmp_path):
    """A real 64 KB tmpfs (root only; elsewhere the test skips with the reason)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_is_one_line_and_leaves_nothing(default_run, small_disk):
    run_dir, _ = default_run
    done = run_cli("deploy", str(run_dir), "--target", "mcu", "--out", str(small_disk / "bundle"))
    assert_refused(done, "No space left", str(small_disk / "bundle"))
    assert list(small_disk.iterdir()) == []  # no half bundle, no staging folder, no empty claimed folder
    assert (
        run_cli("deploy", str(run_dir), "--target", "rpi", "--out", str(small_disk.parent / "b")).returncode
        == 0
    )


def test_a_read_only_disk_and_a_long_name_are_one_line(default_run, small_disk, tmp_path):
    run_dir, _ = default_run
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    assert_refused(run_cli("deploy", str(run_dir), "--out", str(small_disk / "b")), "Read-only")
    assert_refused(run_cli("deploy", str(run_dir), "--out", str(tmp_path / ("x" * 300))), "too long")
    assert_refused(run_cli("init", str(small_disk / "my.yaml")), "Read-only")


# 9. A marker never caches a failure of the environment.

BLOCK_TFLITE_MICRO = 'import sys; sys.modules["tflite_micro"] = None  # as if the mcu extra were absent\n'


def test_an_export_that_lacked_a_tool_runs_again_once_it_is_there(run_copy, tmp_path):
    pytest.importorskip("tflite_micro", reason="the mcu extra (tflite-micro) is not installed")
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(BLOCK_TFLITE_MICRO)  # this Python without the mcu extra
    env = dict(os.environ, PYTHONPATH=str(shim))
    config = str(run_copy / "config.yaml")
    args = [sys.executable, "-m", "edgeslim", "pipeline", config, "--out", str(run_copy)]
    without = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert without.returncode == 1, without.stderr[-2000:]
    assert "pip install 'edgeslim[mcu]'" in without.stderr  # the hint verbatim: rich markup kept [mcu]
    assert not (run_copy / "exports" / "mcu" / "step.json").exists()
    again = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((run_copy / "exports" / "mcu" / "step.json").read_text())["failures"] == []


# 10. Bundles are portable.


@pytest.mark.parametrize("target", ["rpi", "coral", "mcu"])
def test_bundles_name_no_path_of_the_building_machine(default_run, tmp_path, target):
    run_dir, _ = default_run
    bundle = tmp_path / "bundle"
    assert main(["deploy", str(run_dir), "--target", target, "--out", str(bundle)]) == 0
    roots = {str(run_dir.resolve()), str(run_dir), str(Path.cwd()), str(Path.home()), str(tmp_path)}
    for path in bundle.rglob("*"):
        mode = path.stat().st_mode & 0o777
        if path.is_dir():
            assert mode & 0o055 == 0o055, (path, oct(mode))  # readable and enterable by others
            continue
        assert mode & 0o044 == 0o044, (path, oct(mode))
        text = path.read_text(errors="ignore")
        assert not any(root in text for root in roots if root not in ("/", "")), path


def test_the_license_is_an_spdx_string():
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())[
        "project"
    ]
    assert isinstance(project["license"], str) and project["license"] == "Apache-2.0"


def test_run_py_reads_a_16_bit_png_at_full_depth(default_run, digits, tmp_path):
    from PIL import Image

    run_dir, _ = default_run
    bundle = tmp_path / "bundle"
    assert main(["deploy", str(run_dir), "--target", "rpi", "--out", str(bundle)]) == 0
    files = []
    for i in range(4):
        pixels = np.round(digits.x_test[i, ..., 0] * 255).astype(np.uint8)
        for depth, image in (
            (8, Image.fromarray(pixels)),
            (16, Image.fromarray(pixels.astype(np.uint16) * 257)),
        ):
            files.append(tmp_path / f"digit{i}-{depth}.png")
            image.save(files[-1])
    assert Image.open(files[1]).mode.startswith("I")  # really a 16-bit PNG
    done = subprocess.run(
        [sys.executable, str(bundle / "run.py"), *map(str, files), "--json"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    predictions = json.loads(done.stdout)["predictions"]
    assert [p["class"] for p in predictions[0::2]] == [p["class"] for p in predictions[1::2]]


def test_the_report_reads_no_step_folder_outside_the_run(run_copy, tmp_path):
    outside = tmp_path / "outside"
    shutil.copytree(run_copy / "01-prune", outside)  # a plausible step folder, but not the run's
    manifest_path = run_copy / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["steps"][1]["dir"] = "../outside"
    manifest_path.write_text(json.dumps(manifest))
    done = run_cli("report", str(run_copy), "--json", "--no-plots")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "outside" not in {stage["name"] for stage in json.loads(done.stdout)["stages"]}


def test_sigterm_stops_a_pipeline_cleanly_and_frees_its_folder(tmp_path):
    import fcntl
    import signal

    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeslim", "pipeline", "--out", str(run), "--epochs", "200"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    for line in proc.stderr:  # wait until training is under way
        if "train: running" in line:
            break
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err and "Traceback" not in err
    assert not (run / "00-train" / "step.json").exists()  # nothing marked done: a rerun trains again
    with open(run / ".edgeslim.lock") as handle:  # the lock died with the command
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_log_pruning_deletes_only_edgeslims_own_logs(tmp_path):
    from edgeslim.cli.logs import KEEP_LOGS, _prune_logs

    ours = [tmp_path / f"inspect-20261203-1200{i:02d}-{100 + i}.log" for i in range(KEEP_LOGS + 5)]
    mine = [tmp_path / "inspect-notes.log", tmp_path / "inspect-old-run.log"]  # a user's, same prefix
    for path in ours + mine:
        path.write_text("x")
    _prune_logs(tmp_path, "inspect")
    assert all(path.exists() for path in mine)
    assert [p for p in ours if p.exists()] == ours[-KEEP_LOGS:]  # the newest kept
