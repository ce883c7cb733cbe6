"""The core's rules, the same on every runner: what is never retried, what a wait's timeout
means, and run ids (the final state an outcome means is :attr:`woflo.Outcome.state`)."""

from __future__ import annotations

import itertools
import os
import threading
import time

from woflo.errors import (
    CalledDuringImport,
    OptionTypeError,
    OptionValueError,
    RemoteTraceback,
    TaskStopped,
)


def never_retried(error: BaseException) -> bool:
    """The core's rule, whatever retry plugin is installed: a ``KeyboardInterrupt``, a stop
    (:class:`~woflo.errors.TaskStopped`) and a ``SystemExit`` raised in this process are never
    retried. (A ``SystemExit`` re-created from a worker process, whose traceback is attached
    as a :class:`~woflo.errors.RemoteTraceback`, is the task's failure like any other.)"""
    if isinstance(error, KeyboardInterrupt | TaskStopped | GeneratorExit):
        return True
    return isinstance(error, SystemExit) and not isinstance(error.__cause__, RemoteTraceback)


def wait_seconds(timeout: float | None) -> float | None:
    """A timeout any ``wait()`` accepts: ``None`` and ``inf`` wait forever, negatives not at
    all; a value that is not a number fails here, naming it."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout != timeout:
        kind = OptionValueError if timeout != timeout else OptionTypeError
        raise kind(f"timeout takes seconds as a number, or None to wait forever, not {timeout!r}")
    if timeout >= threading.TIMEOUT_MAX:
        return None
    return max(0.0, float(timeout))


_run_ids = itertools.count(1)
_run_id_prefix = os.urandom(5).hex()


def new_run_id() -> str:
    """A run id unique across processes, without a system call per run."""
    return f"{_run_id_prefix}{next(_run_ids):06x}"


def _reseed_run_ids() -> None:
    global _run_id_prefix, _run_ids
    _run_id_prefix, _run_ids = os.urandom(5).hex(), itertools.count(1)


os.register_at_fork(after_in_child=_reseed_run_ids)


_loading = threading.local()


def start_loading(task_name: str) -> str | None:
    """Mark this thread as unpickling a call of ``task_name`` (in a worker): a module imported
    meanwhile must not start runs of its own (its top-level task calls would recurse). Give
    what returns to :func:`stop_loading`."""
    previous: str | None = getattr(_loading, "task", None)
    _loading.task = task_name
    return previous


def stop_loading(previous: str | None) -> None:
    """End what :func:`start_loading` started."""
    _loading.task = previous


def check_not_loading(task_name: str) -> None:
    """Refuse a task call made while a worker imports a module to run another task."""
    loading = getattr(_loading, "task", None)
    if loading is not None:
        raise CalledDuringImport(
            f"task {task_name!r} was called while this worker process imported the module of "
            f"task {loading!r} to run it: that module calls tasks at its top level, and every "
            "worker would call them again. Guard those calls with "
            "'if __name__ == \"__main__\":' (or move the tasks to a module without them)"
        )


def deadline_after(timeout: float | None) -> float | None:
    """The ``time.monotonic()`` at which a wait of ``timeout`` (as :func:`wait_seconds` takes
    it) ends; ``None``: never."""
    seconds = wait_seconds(timeout)
    return None if seconds is None else time.monotonic() + seconds


def seconds_left(deadline: float | None) -> float | None:
    """Seconds until ``deadline`` (at least 0); ``None`` for no deadline."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())
