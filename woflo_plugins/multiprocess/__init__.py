"""``MultiprocessTaskRun``: the default runner; every call runs in a warm worker process.

Workers are forked by a *zygote*, a clean single-threaded interpreter started with
``subprocess`` (never by forking the caller, so a caller with threads is safe, and the caller's
``__main__`` is never re-imported: scripts need no ``if __name__ == "__main__"`` guard, whatever
the platform's multiprocessing start method). Calls are pickled with cloudpickle, so functions
defined in ``__main__``, nested functions, lambdas and closures work as arguments and as tasks.

* Every call starts at once: an idle worker takes it, or a new worker is started for it.
  ``@task(max_concurrency=N)`` caps the runs of one task executing at once, and
  :func:`configure` (``max_workers=``) caps the workers of the process; runs beyond a cap wait
  in the ``pending`` state. Idle workers retire after ``idle_timeout`` seconds.
* ``stop()`` kills the process group of the worker running the attempt (SIGTERM, then SIGKILL
  after ``kill_grace`` seconds), so the task's own child processes die too; other runs go on.
* A worker that dies marks its run ``crashed`` (:class:`woflo.errors.TaskCrashed`, with the
  signal or exit code), and is replaced on demand.
* Workers die with the caller: the zygote kills them when the caller's control socket closes,
  and on Linux the kernel's parent-death signal covers a caller killed with SIGKILL.
* ``print()`` output of tasks goes to the caller's stdout/stderr; stdlib ``logging`` records are
  sent to the caller's loggers, with ``task``, ``run_id`` and ``attempt`` attributes.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterable
from typing import Any, TypeVar

from woflo import BaseTaskRun, TaskCall, TaskOption, hookimpl
from woflo.errors import ArgumentNotPicklable

__all__ = ["MultiprocessTaskRun", "configure", "shutdown"]

R = TypeVar("R")

MAX_WORKERS_ENV = "WOFLO_MAX_WORKERS"
IDLE_TIMEOUT_ENV = "WOFLO_IDLE_TIMEOUT"

_config: dict[str, Any] = {}
_the_pool: Any = None
_pool_lock = threading.Lock()
_entries: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _settings() -> dict[str, Any]:
    max_workers = os.environ.get(MAX_WORKERS_ENV)
    idle = os.environ.get(IDLE_TIMEOUT_ENV)
    return {
        "max_workers": int(max_workers) if max_workers else None,
        "idle_timeout": float(idle) if idle else 60.0,
        "kill_grace": 0.3,
        **_config,
    }


def configure(
    *,
    max_workers: int | Any | None = ...,
    idle_timeout: float | Any = ...,
    kill_grace: float | Any = ...,
) -> None:
    """Set the pool's limits; applies to the running pool and to later ones.

    :param max_workers: most worker processes at once (``None``: no cap; default from
        ``WOFLO_MAX_WORKERS``). Runs beyond it wait in the ``pending`` state.
    :param idle_timeout: seconds an idle worker is kept warm (default from
        ``WOFLO_IDLE_TIMEOUT``, else 60).
    :param kill_grace: seconds between SIGTERM and SIGKILL when a worker is stopped.
    """
    changes: dict[str, Any] = {}
    if max_workers is not ...:
        if max_workers is not None and (
            isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1
        ):
            raise ValueError(f"max_workers takes a whole number >= 1 or None, not {max_workers!r}")
        changes["max_workers"] = max_workers
    for name, value in (("idle_timeout", idle_timeout), ("kill_grace", kill_grace)):
        if value is ...:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"{name} takes seconds as a number >= 0, not {value!r}")
        changes[name] = float(value)
    with _pool_lock:
        _config.update(changes)
        if _the_pool is not None:
            for name, value in changes.items():
                setattr(_the_pool, name, value)


def shutdown() -> None:
    """Stop the pool: its workers and zygote exit; runs still going end ``stopped``.

    The next call starts a new pool. Nothing needs this at exit (workers die with the caller).
    """
    global _the_pool
    with _pool_lock:
        pool, _the_pool = _the_pool, None
    if pool is not None:
        pool.close()


def _get_pool() -> Any:
    global _the_pool
    pool = _the_pool
    if pool is None or pool._closed:
        with _pool_lock:
            if _the_pool is None or _the_pool._closed:
                from woflo_plugins.multiprocess._pool import Pool

                _the_pool = Pool(**_settings())
            pool = _the_pool
    return pool


def _forget_pool_in_child() -> None:  # a fork of the caller must not share its pool
    global _the_pool, _pool_lock
    _the_pool = None
    _pool_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_in_child)


def _entry_for(task: Any) -> Any:
    entry = _entries.get(task)
    if entry is None:
        from woflo_plugins.multiprocess import _serialize
        from woflo_plugins.multiprocess._pool import _TaskEntry

        try:
            blob = _serialize.dumps_for_worker(task)
        except Exception as exc:
            raise ArgumentNotPicklable(
                f"task {task.name!r} cannot be pickled to send it to a worker process: "
                f"{type(exc).__name__}: {exc}. Its function, options and plugins must be "
                "picklable (cloudpickle), or use runner='sequential'"
            ) from exc
        entry = _entries.setdefault(task, _TaskEntry(os.urandom(8), blob))
    return entry


class MultiprocessTaskRun(BaseTaskRun[R]):
    """Runs every attempt in a warm worker process; calling the task never blocks."""

    name = "multiprocess"

    def _prepare(self) -> None:
        _get_pool()  # on the first call this starts the zygote while we pickle
        from woflo_plugins.multiprocess import _serialize

        self._entry = _entry_for(self.task)
        self._args_blob = _serialize.dump_arguments(self.task.name, self.args, self.kwargs)
        self._mp_job: Any = None

    def _start_attempt(self, call: TaskCall) -> None:
        _get_pool().submit(self, call, self._entry, self._args_blob)

    def _kill_attempt(self, call: TaskCall) -> None:
        _get_pool().kill(self, call)


def _check_max_concurrency(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected a whole number >= 1 or None, got {type(value).__name__}")
    if value < 1:
        raise ValueError("expected a whole number >= 1 (or None for no cap)")
    return value


@hookimpl
def woflo_add_runners() -> Iterable[type[BaseTaskRun[Any]]]:
    return [MultiprocessTaskRun]


@hookimpl
def woflo_add_options() -> Iterable[TaskOption]:
    return [
        TaskOption(
            "max_concurrency",
            default=None,
            validate=_check_max_concurrency,
            help="most runs of this task executing at once (multiprocess; others wait pending)",
        )
    ]


@hookimpl
def woflo_default_runner() -> str:
    return "multiprocess"
