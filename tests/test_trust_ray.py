"""`edgeslim fit` on Ray is isolated and bounded: an address where no cluster answers is refused within
seconds, `--workers N` runs its own private Ray whatever RAY_ADDRESS says, and SIGTERM stops a fit
within seconds, leaves no Ray process behind, and a rerun resumes it. Real Ray, real processes: every
fit runs as `python -m edgeslim`, the way a user (or a job scheduler sending SIGTERM) runs it."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from processes import free_port, processes_mentioning

from edgeslim.cli import main

pytest.importorskip("ray", reason="the scale extra (ray) is not installed")

FIT = ["--max-flash", "24KB", "--max-trials", "1", "--finetune-epochs", "1"]


def _kill_mentioning(marker: str) -> None:
    for pid in processes_mentioning(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _wait_until_gone(marker: str, seconds: float) -> list[str]:
    deadline = time.monotonic() + seconds
    while (left := processes_mentioning(marker)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return [f"{pid}: {line}" for pid, line in left.items()]


class Listener:
    """A TCP port that counts who connects to it (and never answers)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def _edgeslim(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> tuple[int, str, float]:
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "edgeslim", *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    return done.returncode, done.stderr, time.monotonic() - began


@pytest.mark.parametrize("answer", ["refused", "silent"])
def test_an_address_where_no_ray_answers_exits_2_within_30_s(digits_model_path, tmp_path, answer):
    # refused: nothing listens on the port; silent: something accepts the connection and says nothing.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)  # connections complete in the backlog, and nobody ever answers them
    port = silent.getsockname()[1] if answer == "silent" else free_port()
    try:
        code, err, seconds = _edgeslim(
            "fit", str(digits_model_path), "--out", str(tmp_path / "run"), *FIT,
            "--ray-address", f"127.0.0.1:{port}", timeout=120,
        )  # fmt: skip
    finally:
        silent.close()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, err[-2000:])
    assert seconds < 30, f"took {seconds:.0f} s"
    assert len(lines) == 1 and lines[0].startswith("error:") and f"127.0.0.1:{port}" in lines[0], err
    assert not (tmp_path / "run" / "fit.json").exists()


def test_a_malformed_address_exits_2_at_once(tmp_path, capsys):
    for address in ("nonsense", "127.0.0.1", "127.0.0.1:99999", "http://127.0.0.1:6379", ":6379", "auto"):
        began = time.monotonic()
        code = main(["fit", str(tmp_path / "absent.keras"), "--max-flash", "8KB", "--ray-address", address])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: --ray-address") and "Traceback" not in err, (address, err)
        assert len(err.strip().splitlines()) == 1 and time.monotonic() - began < 5, (address, err)


@pytest.fixture(scope="module")
def ray_fit(digits_model_path, tmp_path_factory):
    """A `--workers 1` fit with RAY_ADDRESS pointing at a port that only counts visitors, in a private
    TMPDIR (so its Ray processes can be told apart from anyone else's), stopped by SIGTERM once its
    first trial runs."""
    root = tmp_path_factory.mktemp("rayfit")
    private_tmp = tempfile.mkdtemp(prefix="es-rt-", dir="/tmp")  # short, for Ray's socket paths
    bogus = Listener()
    env = dict(
        os.environ,
        RAY_ADDRESS=bogus.address,
        TMPDIR=private_tmp,
        EDGESLIM_FIT_CACHE=str(root / "cache"),
    )
    args = [sys.executable, "-m", "edgeslim", "fit", str(digits_model_path), "--out", str(root / "run"), *FIT]
    args += ["--workers", "1"]
    lines: queue.Queue[str | None] = queue.Queue()
    fit = subprocess.Popen(
        args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )

    def read() -> None:
        for line in fit.stderr:  # type: ignore[union-attr]
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 300
        while not any(line.startswith("trials ") for line in seen) and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=5)
            except queue.Empty:
                continue
            if line is None:
                break
            seen.append(line)
        assert any(line.startswith("trials ") for line in seen), "no trial started:\n" + "".join(seen[-40:])
        assert processes_mentioning(private_tmp), "the fit's Ray is not running in its private folder"
        fit.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        try:
            code = fit.wait(timeout=60)
        except subprocess.TimeoutExpired:
            code = None
        stopped = time.monotonic() - sent
        leftover = _wait_until_gone(private_tmp, 10)
        yield {
            "code": code,
            "stopped": stopped,
            "leftover": leftover,
            "stderr": "".join(seen + _drain(lines)),
            "root": root,
            "env": env,
            "args": args,
            "bogus": bogus,
            "private_tmp": private_tmp,
        }
    finally:
        if fit.poll() is None:
            os.killpg(fit.pid, signal.SIGKILL)
            fit.wait(30)
        _kill_mentioning(private_tmp)
        bogus.close()
        shutil.rmtree(private_tmp, ignore_errors=True)


def _drain(lines: queue.Queue) -> list[str]:
    rest = []
    while True:
        try:
            line = lines.get(timeout=2)
        except queue.Empty:
            return rest
        if line is None:
            return rest
        rest.append(line)


def test_sigterm_stops_a_ray_fit_within_seconds_and_leaves_no_ray_behind(ray_fit):
    tail = ray_fit["stderr"][-3000:]
    assert ray_fit["code"] == 130, (ray_fit["code"], tail)
    assert ray_fit["stopped"] < 15, f"stopped after {ray_fit['stopped']:.1f} s:\n{tail}"
    assert not ray_fit["leftover"], ray_fit["leftover"]
    fit = json.loads((ray_fit["root"] / "run" / "fit.json").read_text())
    assert fit["interrupted"] is True and fit["fits"] is False and fit["best"] is None
    assert fit["sensitivity"] is not None  # computed before the first trial, kept for the rerun
    assert not list(Path(ray_fit["private_tmp"]).glob("edgeslim-ray-*")), "Ray's folder was not removed"


def test_a_rerun_after_sigterm_resumes_on_its_own_ray_whatever_ray_address_says(ray_fit):
    began = time.monotonic()
    done = subprocess.run(ray_fit["args"], env=ray_fit["env"], capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - began
    assert done.returncode in (0, 1), (done.returncode, done.stderr[-3000:])
    fit = json.loads((ray_fit["root"] / "run" / "fit.json").read_text())
    assert "interrupted" not in fit and fit["fits"] == (done.returncode == 0), done.stderr[-3000:]
    assert fit["sensitivity_cached"], "the rerun computed the sensitivity table again"
    assert fit["executor"] == {"kind": "ray", "workers": 1, "address": None}
    assert len(fit["trials"]) == 1 and fit["best"] is not None
    assert ray_fit["bogus"].connections == 0, f"the fit contacted RAY_ADDRESS {ray_fit['bogus'].address}"
    assert not _wait_until_gone(ray_fit["private_tmp"], 10), "Ray processes outlived the fit"
    assert seconds < 300
