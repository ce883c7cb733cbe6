"""``DaskTaskRun``: the same ``@task`` runs on a Dask cluster (``pip install "woflo[dask]"``).

The cluster is, in this order of preference: the ``distributed.Client`` given to
:func:`configure`, the scheduler at ``configure(address=...)`` or ``WOFLO_DASK_ADDRESS``, or a
``LocalCluster`` (worker processes) started on first use and closed at interpreter exit.

Retries and timeouts are woflo's own (the same policy plugins as every runner, never Dask's
``retries=``), so their semantics and log events are identical; lifecycle hooks fire in the
client process. stdlib ``logging`` records of the tasks are forwarded from the Dask workers to
the client's loggers (``Client.forward_logging``), structlog events with them when the task
routes structlog through the stdlib.

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
import weakref
from collections.abc import Iterable
from typing import Any, TypeVar

from woflo import BaseTaskRun, Outcome, TaskCall, hookimpl
from woflo.errors import TaskCrashed, TaskStopped, WofloError

__all__ = ["DaskTaskRun", "configure", "get_client"]

R = TypeVar("R")

ADDRESS_ENV = "WOFLO_DASK_ADDRESS"
EXTRA_HINT = 'install it with: pip install "woflo[dask]"'

_lock = threading.RLock()
_settings: dict[str, Any] = {"client": None, "address": None, "restart_workers": False}
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
) -> None:
    """Choose the cluster (a ``distributed.Client`` or a scheduler address) and stop policy.

    :param client: a client you already have; woflo never closes it.
    :param address: a scheduler address such as ``"tcp://10.0.0.5:8786"``.
    :param restart_workers: on ``stop()`` or a timeout, restart the worker running the attempt.
    """
    global _client
    with _lock:
        if client is not None or address is not None:
            _settings.update(client=client, address=address)
            _client = None
        if restart_workers is not None:
            _settings["restart_workers"] = bool(restart_workers)


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
                cluster = distributed.LocalCluster(
                    processes=True, dashboard_address=":0", silence_logs=40
                )
                _client = distributed.Client(cluster, set_as_default=False)
                _owned.extend([_client, cluster])
                atexit.register(_close_owned)
        try:
            _client.forward_logging()
        except Exception:  # an older scheduler: logs stay on the workers
            pass
        return _client


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


_tasks: dict[bytes, Any] = {}  # on a Dask worker: the tasks it has seen, by token
_blobs: weakref.WeakKeyDictionary[Any, tuple[bytes, bytes]] = weakref.WeakKeyDictionary()


def _task_blob(task: Any) -> tuple[bytes, bytes]:
    """The task pickled once (a token and the bytes), not at every submit."""
    blob = _blobs.get(task)
    if blob is None:
        from woflo_plugins.multiprocess import _serialize

        blob = _blobs.setdefault(task, (os.urandom(8), _serialize.dumps(task)))
    return blob


def _execute_remotely(
    token: bytes, task_blob: bytes, meta: tuple[str, str, int], args: tuple[Any, ...], kwargs: Any
) -> tuple[str, Any, float]:
    """Runs on a Dask worker: the attempt through the worker's woflo plugins."""
    import structlog  # noqa: F401  (once per worker: tasks find their context in contextvars)

    from woflo_plugins.multiprocess import _serialize
    from woflo_plugins.multiprocess._worker import _route_structlog

    task = _tasks.get(token)
    if task is None:
        task = _tasks.setdefault(token, _serialize.loads(task_blob))
    task_name, run_id, attempt = meta
    call = TaskCall(task_name, run_id, attempt, task.fn, args, kwargs)
    _route_structlog()  # structlog events travel with the stdlib records Dask forwards
    outcome = task._plugins.hooks.execute_attempt(call)
    if outcome.error is None:
        return ("ok", outcome.value, outcome.duration)
    return ("err", _serialize.dump_exception(outcome.error), outcome.duration)


class _Collector:
    """Fetches the results of finished attempts in batches (one ``gather`` for all that are
    done, as ``client.gather`` users do) and reports them, on one thread per client."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._queue: queue.SimpleQueue[tuple[Any, TaskCall, Any]] = queue.SimpleQueue()
        threading.Thread(target=self._loop, name="woflo-dask-results", daemon=True).start()

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
                run._attempt_finished(call, _outcome(future, value, values is not None))
            for run, call, future in items:
                if future.status != "finished":
                    run._attempt_finished(call, _outcome(future, None, False))


def _outcome(future: Any, value: Any, fetched: bool) -> Outcome:
    from woflo_plugins.multiprocess import _serialize

    try:
        status = future.status
        if status == "cancelled":
            return Outcome(error=TaskStopped(f"the Dask future {future.key} was cancelled"))
        if status == "finished":
            kind, payload, duration = value if fetched else future.result(timeout=30)
            if kind == "ok":
                return Outcome(value=payload, duration=duration)
            return Outcome(error=_serialize.load_exception(payload), duration=duration)
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
    def _check_available(cls) -> None:
        _distributed()

    def _prepare(self) -> None:
        self._client = get_client()
        self._future: Any = None

    def _start_attempt(self, call: TaskCall) -> None:
        token, blob = _task_blob(self.task)
        future = self._client.submit(
            _execute_remotely,
            token,
            blob,
            (call.task_name, call.run_id, call.attempt),
            call.args,
            call.kwargs,
            key=f"woflo-{call.task_name}-{call.run_id}-{call.attempt}",
            pure=False,
            retries=0,
        )
        self._future = future
        self._attempt_started(call)
        collector = _collector_for(self._client)
        future.add_done_callback(lambda f: collector.put((self, call, f)))

    def _kill_attempt(self, call: TaskCall) -> None:
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
