"""Where the independent tasks of a fit run: in this process, or on Ray (a local one, or a cluster).

The search hands the executor a function and a list of argument tuples and gets the results back in
the same order, whatever ran where. On Ray, large inputs (the model file, the dataset) go to the
object store once (``share``); a task whose worker dies is retried (``max_retries``), and if it
keeps dying ``on_failure`` turns the error into a result, so a trial is recorded as failed, never lost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from edgeslim.errors import EdgeslimError

WORKER_RETRIES = 2


class InProcess:
    name = "in-process"
    workers = 1

    def share(self, value: Any) -> Any:
        return value

    def map(
        self, fn: Callable[..., Any], calls: Sequence[tuple], on_failure: Callable | None = None
    ) -> list[Any]:
        return [fn(*args) for args in calls]

    def close(self) -> None:
        return None


class RayExecutor:
    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise EdgeslimError(
                "--workers and --ray-address need Ray, which is not installed",
                "pip install 'edgeslim[scale]'",
            ) from None
        self.ray = ray
        try:
            if address:
                ray.init(address=address, log_to_driver=False, ignore_reinit_error=True)
            else:
                ray.init(
                    num_cpus=workers, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True
                )
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray"
            raise EdgeslimError(
                f"could not start or join {where}: {str(exc).splitlines()[0][:200]}",
                "check the address (ray start --head prints it); a cluster with token authentication "
                "(ray start's default since Ray 2.59) needs RAY_AUTH_MODE=token and its token here; "
                "or drop --ray-address to run locally",
            ) from None
        self.workers = int(ray.cluster_resources().get("CPU", workers or 1))
        self._remote: dict[Callable, Any] = {}

    def share(self, value: Any) -> Any:
        return self.ray.put(value)

    def map(
        self, fn: Callable[..., Any], calls: Sequence[tuple], on_failure: Callable | None = None
    ) -> list[Any]:
        if fn not in self._remote:
            # One CPU per task: the tasks themselves are the parallelism.
            self._remote[fn] = self.ray.remote(num_cpus=1, max_retries=WORKER_RETRIES)(fn)
        refs = [self._remote[fn].remote(*args) for args in calls]
        results = []
        for args, ref in zip(calls, refs, strict=True):
            try:
                results.append(self.ray.get(ref))
            except (self.ray.exceptions.WorkerCrashedError, self.ray.exceptions.NodeDiedError) as exc:
                if on_failure is None:
                    raise
                results.append(
                    on_failure(args, f"the Ray worker died {WORKER_RETRIES + 1} times: {type(exc).__name__}")
                )
        return results

    def close(self) -> None:
        self.ray.shutdown()


def make_executor(workers: int | None = None, address: str | None = None) -> InProcess | RayExecutor:
    if workers is not None and workers < 1:
        raise EdgeslimError(f"--workers must be at least 1, got {workers}")
    if workers is None and address is None:
        return InProcess()
    return RayExecutor(workers, address)
