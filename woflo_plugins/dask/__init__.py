"""``DaskTaskRun``: the same ``@task`` runs on a Dask cluster (``pip install "woflo[dask]"``).

The cluster is, in this order of preference: the ``distributed.Client`` given to
:func:`configure`, the scheduler at ``configure(address=...)`` or ``WOFLO_DASK_ADDRESS``, or a
``LocalCluster`` (worker processes) started on first use, in a process of its own (so scripts
need no ``__main__`` guard), and closed at interpreter exit. That implicit cluster listens on
loopback only, over TLS with a certificate made for it (another
local process cannot connect to it and run code as the program's user), and has no dashboard
unless ``configure(dashboard_address=...)`` asks for one.

Retries and timeouts are woflo's own (the same policy plugins as every runner, never Dask's
``retries=``), so their semantics and log events are identical; lifecycle hooks fire in the
client process. An attempt executes on its Dask worker the way it would in woflo's own workers
(:func:`woflo.remote.run_attempt`: the client's plugins, the execution wrappers, the run's
context in ``structlog.contextvars``), and its stdlib ``logging`` records and structlog events
come back with its result, to the client's loggers, tagged with ``task``, ``run_id`` and
``attempt``.

**Limits.** Dask cannot kill a task that is running. ``stop()`` cancels the attempt's future:
the run ends ``stopped`` at once, a pending attempt never starts, but a running one goes on in
its worker until it returns (its result is discarded); with ``configure(restart_workers=True)``
the worker executing it is restarted instead, which also stops every other task on that worker.
A timed-out attempt is handled the same way, so the next attempt may overlap the previous one
unless ``restart_workers`` is on.
"""

from __future__ import annotations

import atexit
import os
import queue
import threading
from collections.abc import Iterable
from typing import Any, TypeVar

from woflo import BaseTaskRun, Outcome, TaskCall, hookimpl, remote
from woflo.errors import OptionTypeError, TaskCrashed, TaskStopped, WofloError
from woflo.options import boolean, check
from woflo.plugins import background_thread

__all__ = ["DaskTaskRun", "configure", "get_client", "reset"]

R = TypeVar("R")

ADDRESS_ENV = "WOFLO_DASK_ADDRESS"
EXTRA_HINT = 'install it with: pip install "woflo[dask]"'

_lock = threading.RLock()
_settings: dict[str, Any] = {
    "client": None,
    "address": None,
    "restart_workers": False,
    "dashboard_address": None,
}
_client: Any = None
_owned: list[Any] = []  # the LocalCluster and Client we started, closed at exit


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise WofloError(f"DaskTaskRun needs the 'distributed' package; {EXTRA_HINT}") from exc
    return distributed


def configure(
    *,
    client: Any = None,
    address: str | None = None,
    restart_workers: bool | None = None,
    dashboard_address: str | None = None,
) -> None:
    """Choose the cluster (a ``distributed.Client`` or a scheduler address) and stop policy.

    :param client: a client you already have; woflo never closes it.
    :param address: a scheduler address such as ``"tcp://10.0.0.5:8786"``.
    :param restart_workers: on ``stop()`` or a timeout, restart the worker running the attempt.
    :param dashboard_address: give woflo's own ``LocalCluster`` a dashboard there, such as
        ``"127.0.0.1:8787"`` (by default it has none).
    """
    global _client
    if address is not None and not isinstance(address, str):
        raise OptionTypeError(
            f"address takes a scheduler address such as 'tcp://10.0.0.5:8786', not {address!r}"
        )
    if restart_workers is not None:
        restart_workers = check("restart_workers", restart_workers, boolean())
    if dashboard_address is not None and not isinstance(dashboard_address, str):
        raise OptionTypeError(
            f"dashboard_address takes an address such as '127.0.0.1:8787', not "
            f"{dashboard_address!r}"
        )
    with _lock:
        if dashboard_address is not None:
            _settings["dashboard_address"] = dashboard_address
        if client is not None or address is not None:
            _settings.update(client=client, address=address)
            _client = None
        if restart_workers is not None:
            _settings["restart_workers"] = restart_workers


def get_client() -> Any:
    """The ``distributed.Client`` runs are submitted to, connecting or starting it if needed."""
    global _client
    with _lock:
        if _client is not None:
            return _client
        distributed = _distributed()
        if _settings["client"] is not None:
            _client = _settings["client"]
        else:
            address = _settings["address"] or os.environ.get(ADDRESS_ENV)
            if address:
                _client = distributed.Client(address, set_as_default=False)
                _owned.append(_client)
            else:
                cluster, (address, security) = _local_cluster(distributed)
                _client = distributed.Client(address, security=security, set_as_default=False)
                _owned.extend([_client, cluster])
                atexit.register(_close_owned)
        _warm_callbacks(_client)
        return _client


def _local_cluster(distributed: Any) -> tuple[Any, Any]:
    """woflo's own ``LocalCluster`` (:mod:`._cluster`), in a process of its own, so that its
    worker processes never re-import the caller's ``__main__``: on loopback only, TLS with a
    certificate made for it (no other process can connect, let alone submit work that would
    run as this user), and no dashboard unless :func:`configure` asked for one.

    :return: the process (its standard input kept open: closing it ends the cluster) and the
        scheduler's address.
    """
    import pickle
    import subprocess
    import sys

    from distributed.security import Security

    try:
        security = Security.temporary()  # type: ignore[no-untyped-call]
    except ImportError as exc:
        raise WofloError(
            f"the implicit Dask cluster needs the 'cryptography' package; {EXTRA_HINT}"
        ) from exc
    process = subprocess.Popen(
        [sys.executable, "-c", "from woflo_plugins.dask._cluster import main; main()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,  # out of the terminal's process group: Ctrl-C is the caller's
    )
    assert process.stdin is not None
    assert process.stdout is not None
    settings = {"security": security, "dashboard_address": _settings["dashboard_address"]}
    process.stdin.write(pickle.dumps(settings))
    process.stdin.flush()
    address = process.stdout.readline().decode().strip()
    if not address.startswith("tls://"):
        process.kill()
        process.wait()
        process.stdin.close()
        process.stdout.close()
        raise WofloError(
            "woflo's local Dask cluster did not start (its process exited with code "
            f"{process.returncode}); configure(client=...) or WOFLO_DASK_ADDRESS to use another"
        )
    return _ClusterProcess(process), (address, security)


class _ClusterProcess:
    """The process running woflo's own cluster; :meth:`close` ends it."""

    def __init__(self, process: Any) -> None:
        self._process = process

    def close(self) -> None:
        process = self._process
        try:
            process.stdin.close()  # end of input: the cluster closes and the process exits
            process.wait(timeout=20)
        except Exception:
            process.kill()
            process.wait()
        finally:
            process.stdout.close()


def _warm_callbacks(client: Any) -> None:
    """Have Dask start the thread that runs futures' done-callbacks now: started first
    during the wait at interpreter exit, where CPython 3.12.0 and 3.12.1 start no thread, it
    would fail, and the runs waiting for those callbacks would never hear of their end."""
    arrived = threading.Event()
    try:
        client.submit(int, pure=False).add_done_callback(lambda _future: arrived.set())
        arrived.wait(30)
    except Exception:  # a cluster that cannot run this cannot run tasks either: they say why
        pass


def reset() -> None:
    """Forget the client and address given to :func:`configure` (the next run connects as if
    none had been), and close the ``LocalCluster`` and client woflo started, if any."""
    global _client
    with _lock:
        _settings.update(client=None, address=None, restart_workers=False, dashboard_address=None)
        _client = None
    _close_owned()


def _close_owned() -> None:
    global _client
    with _lock:
        owned = list(_owned)
        _owned.clear()
        _client = None
    for thing in owned:
        try:
            thing.close(timeout=10) if hasattr(thing, "scheduler_info") else thing.close()
        except Exception:
            pass


class _Collector:
    """Fetches the results of finished attempts in batches (one ``gather`` for all that are
    done, as ``client.gather`` users do) and reports them, on one thread per client."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._queue: queue.SimpleQueue[tuple[Any, TaskCall, Any]] = queue.SimpleQueue()
        background_thread(self._loop, "woflo-dask-results").start()

    def put(self, item: tuple[Any, TaskCall, Any]) -> None:
        self._queue.put(item)

    def _loop(self) -> None:
        while True:
            items = [self._queue.get()]
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            finished = [item for item in items if item[2].status == "finished"]
            try:
                values = self._client.gather([f for _, _, f in finished], errors="raise")
            except BaseException:  # fetch one by one: only the broken one fails
                values = None
            for index, (run, call, future) in enumerate(finished):
                value = values[index] if values is not None else None
                run.report_finished(call, _outcome(future, value, values is not None))
            for run, call, future in items:
                if future.status != "finished":
                    run.report_finished(call, _outcome(future, None, False))


def _outcome(future: Any, value: Any, fetched: bool) -> Outcome:
    try:
        status = future.status
        if status == "cancelled":
            return Outcome(error=TaskStopped(f"the Dask future {future.key} was cancelled"))
        if status == "finished":
            result: remote.RemoteResult = value if fetched else future.result(timeout=30)
            return result.outcome()
        error = future.exception(timeout=30)
        if type(error).__name__ == "KilledWorker":
            error = TaskCrashed(f"the Dask worker running the attempt died: {error}")
        return Outcome(error=error)
    except BaseException as exc:  # a result that does not arrive is this attempt's failure
        return Outcome(error=exc)


_collectors: dict[int, _Collector] = {}


def _collector_for(client: Any) -> _Collector:
    with _lock:
        collector = _collectors.get(id(client))
        if collector is None or collector._client is not client:
            collector = _collectors[id(client)] = _Collector(client)
        return collector


class DaskTaskRun(BaseTaskRun[R]):
    """Runs every attempt as a Dask task; calling the task never blocks."""

    name = "dask"

    @classmethod
    def check_available(cls) -> None:
        """Fail unless the ``distributed`` package is installed."""
        _distributed()

    def prepare(self) -> None:
        """Connect to (or start) the cluster, and pickle the call: fails here if it cannot."""
        self._client = get_client()
        remote.prepare(self)
        self._future: Any = None

    def start_attempt(self, call: TaskCall) -> None:
        """Submit ``call`` to the cluster as one Dask task (Dask's own retries off)."""
        future = self._client.submit(
            remote.run_attempt,
            remote.pack_attempt(self, call),
            key=f"woflo-{call.task_name}-{call.run_id}-{call.attempt}",
            pure=False,
            retries=0,
        )
        self._future = future
        self.report_started(call)
        collector = _collector_for(self._client)
        future.add_done_callback(lambda f: collector.put((self, call, f)))

    def kill_attempt(self, call: TaskCall) -> None:
        """Cancel the attempt's future (restarting its worker with ``restart_workers``)."""
        future = self._future
        if future is None or future.done():
            return
        if _settings["restart_workers"]:
            workers = [
                address for address, keys in self._client.processing().items() if future.key in keys
            ]
            if workers:
                self._client.restart_workers(workers, raise_for_error=False)
        future.cancel()


@hookimpl
def woflo_add_runners() -> Iterable[type[BaseTaskRun[Any]]]:
    return [DaskTaskRun]
