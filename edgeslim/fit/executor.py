"""Where the independent tasks of a fit run: in this process, or on Ray (a private local one, or a cluster).

The search hands the executor a function and a list of argument tuples and gets the results back in
the same order, whatever ran where; ``each`` sees every result as soon as it is in, so what finished
is kept even if the fit is stopped before the rest. On Ray, large inputs (the model file, the dataset)
go to the object store once (``share``); a task whose worker dies is retried (``max_retries``), and if
Ray still cannot deliver it ``on_failure`` turns the error into a result, so a trial is recorded as
failed, never lost (a task with no ``on_failure``, a sensitivity chunk, runs again in this process).

Isolation and bounds:

- ``--workers N`` always starts a private local Ray (``address="local"``: never the cluster that
  ``RAY_ADDRESS`` or ``/tmp/ray/ray_current_cluster`` names), with N CPUs, no dashboard, and its own
  temporary folder, which is removed with the cluster when the fit ends, fails or is interrupted.
- ``--ray-address HOST:PORT`` (or ``ray://HOST:PORT`` for Ray Client) is checked before Ray is asked:
  a malformed address is refused at once; an address where nothing answers within
  ``PROBE_TIMEOUT_S``, or where what answers does not speak gRPC, is refused; and joining must
  succeed within ``CONNECT_TIMEOUT_S``.
- ``ray.init`` runs in a helper thread, so the main thread keeps handling Ctrl-C and SIGTERM (Ray
  installs its own SIGTERM handler only from the main thread) and the wait is bounded; results are
  polled, so an interrupt stops the wait within a second.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgeslim.errors import EdgeslimError

WORKER_RETRIES = 2
PROBE_TIMEOUT_S = 5.0  # a TCP connection to the cluster's GCS port
CONNECT_TIMEOUT_S = 15.0  # ray.init joining a cluster that answered the probe
LOCAL_START_TIMEOUT_S = 180.0  # ray.init starting the private local Ray (slow on a busy machine)
POLL_S = 1.0  # how often a wait wakes up, so that signals are handled
LIVENESS_S = 10.0  # how often a joined cluster's GCS port is checked while tasks run
ADDRESS_HINT = "give the head node's HOST:PORT as `ray start --head` prints it (e.g. 10.0.0.5:6379)"
Each = Callable[[int, Any], None]


class InProcess:
    name = "in-process"
    workers = 1

    def share(self, value: Any) -> Any:
        return value

    def map(
        self,
        fn: Callable[..., Any],
        calls: Sequence[tuple],
        on_failure: Callable | None = None,
        each: Each | None = None,
    ) -> list[Any]:
        results = []
        for i, args in enumerate(calls):
            results.append(fn(*args))
            if each is not None:
                each(i, results[-1])
        return results

    def close(self) -> None:
        return None


def parse_address(address: str) -> tuple[str, int, bool]:
    """``(host, port, client)`` of ``HOST:PORT`` or ``ray://HOST:PORT``; anything else is refused."""
    text = address.strip() if isinstance(address, str) else ""
    client = text.startswith("ray://")
    rest = text[len("ray://") :] if client else text
    match = re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})", rest)
    port = int(match.group(2)) if match else 0
    if not match or not 1 <= port <= 65535:
        raise EdgeslimError(f"--ray-address: {address!r} is not a HOST:PORT address", ADDRESS_HINT)
    return match.group(1).strip("[]"), port, client


def check_executor(workers: int | None, address: str | None) -> None:
    """The executor's arguments, checked before anything is loaded."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise EdgeslimError(f"--workers must be at least 1, got {workers}")
    if address is not None:
        parse_address(address)


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # + empty SETTINGS


def probe(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Refuse an address where no Ray cluster answers (see ``unanswered``)."""
    why = unanswered(host, port, timeout)
    if why is not None:
        raise EdgeslimError(
            f"--ray-address: no Ray cluster at {host}:{port}: {why}",
            "start the cluster (ray start --head) and " + ADDRESS_HINT + "; or drop --ray-address to run "
            "locally",
        )


def unanswered(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why no Ray cluster answers at ``host:port`` (None when one may): nothing accepts a TCP
    connection within ``timeout`` seconds, or what answers is not a gRPC server (a Ray GCS answers
    HTTP/2's preface with its SETTINGS frame; the dashboard's port, for one, does not). With Ray's
    TLS on, only the connection is checked."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                return None
            conn.sendall(HTTP2_PREFACE)
            reply = conn.recv(9)
    except TimeoutError:
        return f"no answer within {timeout:.0f} s"
    except socket.gaierror as exc:
        return f"unknown host ({exc.strerror})"
    except OSError as exc:  # refused, unreachable, reset
        return exc.strerror or type(exc).__name__
    if len(reply) == 9 and reply[3] == 4:  # a frame header whose type is SETTINGS
        return None
    return "it answers, but not as a Ray cluster's GCS port (gRPC)"


def _init_in_thread(
    ray: Any, kwargs: dict[str, Any], timeout: float, where: str, hold: threading.Event
) -> None:
    """``ray.init(**kwargs)`` with a deadline, waited for in slices so that signals are handled here.

    The thread then stays until ``hold`` is set (at close): Ray starts a local cluster's processes
    with ``PR_SET_PDEATHSIG``, which kills them when the thread that started them ends."""
    outcome: dict[str, BaseException | None] = {}

    def init() -> None:
        try:
            ray.init(**kwargs)
            outcome["error"] = None
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread, which decides
            outcome["error"] = exc
            return
        hold.wait()

    thread = threading.Thread(target=init, name="edgeslim-ray-init", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while "error" not in outcome and thread.is_alive() and time.monotonic() < deadline:
        thread.join(POLL_S)
    if "error" not in outcome:
        raise EdgeslimError(
            f"{where} did not answer as a Ray cluster within {timeout:.0f} s",
            "check that the address is a Ray head's GCS port (ray start --head prints it), that this "
            "Ray's version matches the cluster's, and, for a token cluster, RAY_AUTH_MODE=token",
        )
    error = outcome["error"]
    if error is None:
        return
    if isinstance(error, (OSError, ValueError, RuntimeError, ray.exceptions.RayError)):
        first = (str(error).splitlines() or [type(error).__name__])[0][:200]
        raise EdgeslimError(
            f"could not start or join {where}: {first}",
            "check the address (ray start --head prints it); a cluster with token authentication "
            "(ray start's default since Ray 2.59) needs RAY_AUTH_MODE=token and its token here; "
            "or drop --ray-address to run locally",
        ) from None
    raise error


def _restore_sigterm() -> None:
    """Give SIGTERM back to Python's handler (the CLI turns it into KeyboardInterrupt). Ray's core
    worker installs a C-level failure handler for it, which logs a stack and arms a 3 s alarm that
    aborts the process (exit -6) while the fit is still stopping Ray and writing fit.json."""
    if threading.current_thread() is threading.main_thread():
        handler = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, handler if handler is not None else signal.SIG_DFL)


def _private_temp_dir() -> Path:
    """A fresh folder for the private Ray's session. Ray's sockets live in it, and a Unix socket path
    is at most 107 bytes, so a long $TMPDIR falls back to /tmp."""
    base = tempfile.gettempdir()
    if len(base) > 20:  # + /edgeslim-ray-XXXXXXXX/session_<date>_<time>_<pid>/sockets/plasma_store
        base = "/tmp"
    return Path(tempfile.mkdtemp(prefix="edgeslim-ray-", dir=base))


class RayExecutor:
    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None) -> None:
        check_executor(workers, address)
        self.temp_dir: Path | None = None
        self.address = address
        self._hold = threading.Event()  # keeps the thread that started Ray alive until close
        if address:
            host, port, _ = parse_address(address)
            probe(host, port)
        try:
            import ray
        except ImportError:
            raise EdgeslimError(
                "--workers and --ray-address need Ray, which is not installed",
                "pip install 'edgeslim[scale]'",
            ) from None
        self.ray = ray
        if ray.is_initialized():  # someone else's Ray in this process: never reuse or shut it down
            raise EdgeslimError("Ray is already initialized in this process", "call ray.shutdown() first")
        if address:
            kwargs: dict[str, Any] = {"address": address.strip(), "log_to_driver": False}
            _init_in_thread(ray, kwargs, CONNECT_TIMEOUT_S, f"the Ray cluster at {address}", self._hold)
        else:
            self.temp_dir = _private_temp_dir()
            kwargs = {
                "address": "local",  # a new cluster, whatever RAY_ADDRESS or ray_current_cluster say
                "num_cpus": workers,
                "include_dashboard": False,
                "log_to_driver": False,
                "_temp_dir": str(self.temp_dir),
            }
            try:
                _init_in_thread(ray, kwargs, LOCAL_START_TIMEOUT_S, "a private local Ray", self._hold)
            except BaseException:
                self.close()
                raise
        _restore_sigterm()
        try:
            self.workers = int(ray.cluster_resources().get("CPU", workers or 1))
        except BaseException:
            self.close()
            raise
        self._remote: dict[Callable, Any] = {}
        self._checked = time.monotonic()

    def check_alive(self) -> None:
        """Stop with a clear error when the cluster went away (``ray stop`` elsewhere, a crash): Ray
        itself would wait for it, then end this process without a word."""
        if self.temp_dir is not None:  # the private Ray: its processes are this process's children
            node = getattr(self.ray._private.worker, "_global_node", None)
            dead = [kind for kind, _ in node.dead_processes()] if hasattr(node, "dead_processes") else []
            lost = sorted({kind for kind in dead if kind in ("gcs_server", "raylet")})
            if lost:
                raise EdgeslimError(
                    f"the fit's private Ray stopped: its {' and '.join(lost)} ended unexpectedly",
                    "something on this machine killed it (`ray stop` kills every Ray here); "
                    "run the fit again: it resumes",
                )
        elif self.address and time.monotonic() - self._checked > LIVENESS_S:
            why = unanswered(*parse_address(self.address)[:2])
            if why is not None:
                raise EdgeslimError(
                    f"the Ray cluster at {self.address} stopped answering: {why}",
                    "restart it and run the fit again: it resumes",
                )
        self._checked = time.monotonic()

    def share(self, value: Any) -> Any:
        self.check_alive()
        return self.ray.put(value)

    def map(
        self,
        fn: Callable[..., Any],
        calls: Sequence[tuple],
        on_failure: Callable | None = None,
        each: Each | None = None,
    ) -> list[Any]:
        ray = self.ray
        if fn not in self._remote:
            # One CPU per task: the tasks themselves are the parallelism.
            self._remote[fn] = ray.remote(num_cpus=1, max_retries=WORKER_RETRIES)(fn)
        pending = {self._remote[fn].remote(*args): i for i, args in enumerate(calls)}
        results: list[Any] = [None] * len(calls)
        while pending:
            self.check_alive()
            done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
            for ref in done:
                i = pending.pop(ref)
                try:
                    results[i] = ray.get(ref)
                except ray.exceptions.RayTaskError:
                    raise  # the function itself raised: a bug, shown as in-process
                except ray.exceptions.RayError as exc:  # the worker, its node or the object was lost
                    if on_failure is None:  # run it here instead
                        args = [ray.get(a) if isinstance(a, ray.ObjectRef) else a for a in calls[i]]
                        results[i] = fn(*args)
                    else:
                        why = f"Ray could not run it ({WORKER_RETRIES} retries): {type(exc).__name__}"
                        results[i] = on_failure(calls[i], why)
                if each is not None:
                    each(i, results[i])
        return results

    def close(self) -> None:
        """Leave Ray: a private local Ray is shut down (its processes end) and its folder removed."""
        try:
            if self.ray.is_initialized():
                self.ray.shutdown()
        finally:
            self._hold.set()
            if self.temp_dir is not None:
                shutil.rmtree(self.temp_dir, ignore_errors=True)
                self.temp_dir = None


def make_executor(workers: int | None = None, address: str | None = None) -> InProcess | RayExecutor:
    check_executor(workers, address)
    if workers is None and address is None:
        return InProcess()
    return RayExecutor(workers, address)


__all__ = ["InProcess", "RayExecutor", "check_executor", "make_executor", "parse_address"]
