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
import sys
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from woflo import BaseTaskRun, TaskCall, TaskOption, hookimpl, remote
from woflo.errors import PoolBroken
from woflo.options import check, from_env, seconds, whole_number
from woflo.plugins import background_thread
from woflo_plugins.multiprocess import _forks, _world  # noqa: F401  (_forks: its fork hooks, now)

__all__ = [
    "MultiprocessTaskRun",
    "PoolBroken",
    "PoolStatus",
    "WorkerStatus",
    "configure",
    "reset",
    "shutdown",
    "status",
]

R = TypeVar("R")

MAX_WORKERS_ENV = "WOFLO_MAX_WORKERS"
IDLE_TIMEOUT_ENV = "WOFLO_IDLE_TIMEOUT"

_MAX_WORKERS = whole_number(minimum=1, none=True, infinite=True)
_IDLE_TIMEOUT = seconds(infinite=True)
_KILL_GRACE = seconds(infinite=True)
_PREFETCH = whole_number(minimum=0)
PREFETCH = 64
"""Default of :func:`configure`'s ``prefetch``."""

_config: dict[str, Any] = {}
_the_pool: Any = None
_pool_lock = threading.Lock()
_entries: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _settings() -> dict[str, Any]:
    """The pool's settings: :func:`configure`'s, else the environment's, else the defaults.

    :raises woflo.errors.OptionValueError: naming a bad environment variable and its value.
    """
    settings = dict(_config)
    if "max_workers" not in settings:
        settings["max_workers"] = from_env(MAX_WORKERS_ENV, _MAX_WORKERS, None)
    if "idle_timeout" not in settings:
        settings["idle_timeout"] = from_env(IDLE_TIMEOUT_ENV, _IDLE_TIMEOUT, 60.0)
    settings.setdefault("kill_grace", 0.3)
    settings.setdefault("max_runs_per_worker", None)
    settings.setdefault("prefetch", PREFETCH)
    return settings


def configure(
    *,
    max_workers: int | Any | None = ...,
    idle_timeout: float | Any = ...,
    kill_grace: float | Any = ...,
    max_runs_per_worker: int | Any | None = ...,
    prefetch: int | Any = ...,
) -> None:
    """Set the pool's limits; applies to the running pool and to later ones.

    :param max_workers: most worker processes at once (``None``: no cap; default from
        ``WOFLO_MAX_WORKERS``). Runs beyond it wait in the ``pending`` state.
    :param idle_timeout: seconds an idle worker is kept warm (default from
        ``WOFLO_IDLE_TIMEOUT``, else 60; ``inf``: for ever).
    :param kill_grace: seconds between SIGTERM and SIGKILL when a worker is stopped (``inf``:
        never SIGKILL).
    :param max_runs_per_worker: retire a worker after this many attempts, for tasks that leak
        memory or other resources (``None``, the default: never).
    :param prefetch: most calls queued on a busy worker, behind the one it runs, while calls
        wait and the task's recent attempts took under 2 ms (default 64; ``0``: never). A
        queued call is sent in the same message as others and starts the moment the worker is
        free, up to about 5 ms of expected work per worker; a stopped one never starts; those
        behind a call that runs 10 ms are given back to run elsewhere; a worker that dies
        hands its queued calls to another.
    :raises woflo.errors.OptionTypeError: or :class:`~woflo.errors.OptionValueError` for a
        bad value, naming it.
    """
    changes: dict[str, Any] = {}
    for name, value, validator in (
        ("max_workers", max_workers, _MAX_WORKERS),
        ("idle_timeout", idle_timeout, _IDLE_TIMEOUT),
        ("kill_grace", kill_grace, _KILL_GRACE),
        ("max_runs_per_worker", max_runs_per_worker, _MAX_WORKERS),
        ("prefetch", prefetch, _PREFETCH),
    ):
        if value is not ...:
            changes[name] = check(name, value, validator)
    with _pool_lock:
        _config.update(changes)
        if _the_pool is not None:
            for name, value in changes.items():
                setattr(_the_pool, name, value)


def reset() -> None:
    """Forget every :func:`configure` setting (back to the environment's and the defaults)
    and shut the pool down; the next call starts a pool with those settings."""
    with _pool_lock:
        _config.clear()
    shutdown()


def shutdown() -> None:
    """Stop the pool: its workers and zygote exit; runs still going end ``stopped``.

    The next call starts a new pool. Nothing needs this at exit (workers die with the caller).
    """
    global _the_pool
    with _pool_lock:
        pool, _the_pool = _the_pool, None
    if pool is not None:
        pool.close()
    link = sys.modules.get("woflo_plugins.multiprocess._link")
    if link is not None:  # (a zygote the decoration started, if no pool took it)
        link.discard_early()


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """One live worker process: its pid, and the attempt it executes (``None``: idle)."""

    pid: int
    run_id: str | None
    attempt: int | None


@dataclass(frozen=True, slots=True)
class PoolStatus:
    """A snapshot of the worker pool, for monitoring and debugging."""

    zygote_pid: int | None
    """The process that forks the workers (``None`` while it starts)."""
    workers: tuple[WorkerStatus, ...]
    """Every live worker."""
    idle: int
    busy: int
    starting: int
    """Workers asked for and not up yet."""
    pending: int
    """Attempts not started: waiting for a worker (a cap, or workers starting), or queued on
    a busy one (``configure(prefetch=...)``)."""


def status() -> PoolStatus | None:
    """The pool as it is now, or ``None`` if none runs (no call yet, or after :func:`shutdown`)."""
    pool = _the_pool
    if pool is None or pool.closed:
        return None
    zygote, workers, counts = pool.snapshot()
    return PoolStatus(
        zygote_pid=zygote,
        workers=tuple(WorkerStatus(*w) for w in workers),
        **counts,
    )


def _get_pool() -> Any:
    global _the_pool
    pool = _the_pool
    if pool is None or pool.closed:
        with _pool_lock:
            if _the_pool is None or _the_pool.closed:
                from woflo_plugins.multiprocess._pool import Pool

                _the_pool = Pool(**_settings())
            pool = _the_pool
    return pool


def _warm_up() -> None:
    try:
        _get_pool().warm()
    except Exception:  # a bad setting, say: the first call says so, where it can be seen
        pass


def _forget_pool_in_child() -> None:  # a fork of the caller must not share its pool
    global _the_pool, _pool_lock
    _the_pool = None
    _pool_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_in_child)


def _entry_for(task: Any) -> Any:
    entry = _entries.get(task)
    if entry is None:
        from woflo_plugins.multiprocess._schedule import TaskEntry

        entry = _entries.setdefault(task, TaskEntry(*remote.task_blob(task)))
    return entry


class MultiprocessTaskRun(BaseTaskRun[R]):
    """Runs every attempt in a warm worker process; calling the task never blocks."""

    name = "multiprocess"

    @classmethod
    def warm_up(cls) -> None:
        """Start the pool: a task decorated in a script's main module is about to be called,
        and the first call then finds it starting or ready. The zygote starts now (from the
        main thread; from another, with the pool), the pool and one worker in the background."""
        if _the_pool is None:
            try:
                _settings()
            except Exception:  # a bad setting: the first call says so, where it can be seen
                return
            # the pool's modules imported here, not by the thread that makes it: a fork of the
            # program meanwhile would copy the lock of a module half imported, and its child
            # wait for ever for it at its first call
            from woflo_plugins.multiprocess import _link, _pool  # noqa: F401

            try:  # the zygote boots meanwhile (from the main thread only: see start_early)
                _link.start_early()
            except Exception:  # the pool starts one itself, and says what fails
                pass
            background_thread(_warm_up, "woflo-warm-up").start()

    def prepare(self) -> None:
        """Start the pool (on the first call, while we pickle) and pickle the call: a task or
        an argument that cannot be sent fails here, at the call."""
        _get_pool()
        self._entry = _entry_for(self.task)
        self._args_blob = remote.dump_arguments(self.task.name, self.args, self.kwargs)
        self._world = _world.capture()  # the directory and environment as of the call
        self._job: Any = None

    def start_attempt(self, call: TaskCall) -> None:
        """Hand ``call`` to an idle worker, or queue it while one starts."""
        pool = _get_pool()
        job = pool.job(self, call, self._entry, self._args_blob, self._world)
        self._job = (pool, job)  # before the hand-over, which a stop() may have to cut short
        pool.submit(job)

    def kill_attempt(self, call: TaskCall) -> None:
        """Drop ``call`` if it waits for a worker, else kill its worker's process group."""
        if self._job is not None:
            pool, job = self._job
            pool.kill(job, call)


@hookimpl
def woflo_add_runners() -> Iterable[type[BaseTaskRun[Any]]]:
    return [MultiprocessTaskRun]


@hookimpl
def woflo_add_options() -> Iterable[TaskOption]:
    return [
        TaskOption(
            "max_concurrency",
            default=None,
            validate=whole_number(minimum=1, none=True, infinite=True),
            help="most runs of this task executing at once (others wait pending)",
            runners=("multiprocess",),
            caller_only=True,
        )
    ]


@hookimpl
def woflo_default_runner() -> str:
    return "multiprocess"
