"""woflo: local-first, no-bloat, extensible task orchestration.

Decorate a function with :func:`task`; calling it starts a run (in a worker process by default)
and returns a :class:`BaseTaskRun` at once. Runs passed as arguments feed the new run (it
waits for them); :meth:`Task.map` starts a :class:`RunGroup`; :func:`wait`,
:func:`as_completed`, :func:`progress` and ``await`` wait on many runs. Runners and concerns
(retries, logging, ...) are plugins found through the ``woflo`` entry-point group, loaded on
first use, not at import.

Modules: :mod:`woflo.errors` (every error), :mod:`woflo.hookspecs` (every hook),
:mod:`woflo.plugins` (the plugin system), :mod:`woflo.options` (option validators),
:mod:`woflo.remote` (for runners that execute in another process), :mod:`woflo.runners`
(every registered runner by class name), :mod:`woflo.testing` (fixtures and the runner
conformance suite).
"""

from __future__ import annotations

from woflo._compose import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, as_completed, wait
from woflo._progress import progress
from woflo._run import BaseTaskRun
from woflo._task import Task, task
from woflo._types import Outcome, RunState, TaskCall, TaskOption
from woflo._upstream import RunGroup, allow_failure, unmapped
from woflo.errors import (
    TaskCrashed,
    TaskStopped,
    TaskTimeout,
    UpstreamFailed,
    WaitTimeout,
    WofloError,
)
from woflo.hookspecs import hookimpl

__all__ = [  # noqa: RUF022  (plain sorted(), as test_import checks)
    "ALL_COMPLETED",
    "BaseTaskRun",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "Outcome",
    "RunGroup",
    "RunState",
    "Task",
    "TaskCall",
    "TaskCrashed",
    "TaskOption",
    "TaskStopped",
    "TaskTimeout",
    "UpstreamFailed",
    "WaitTimeout",
    "WofloError",
    "__version__",
    "allow_failure",
    "as_completed",
    "hookimpl",
    "progress",
    "task",
    "unmapped",
    "wait",
]


def __getattr__(name: str) -> str:
    if name == "__version__":  # importlib.metadata is not cheap: read it only when asked
        from importlib.metadata import version

        return version("woflo")
    raise AttributeError(f"module 'woflo' has no attribute {name!r}")
