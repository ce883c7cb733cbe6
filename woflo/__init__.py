"""woflo: local-first, no-bloat, extensible task orchestration.

Decorate a function with :func:`task`; calling it starts a run (in a worker process by default)
and returns a :class:`BaseTaskRun` at once. Runners and concerns (retries, logging, ...) are
plugins found through the ``woflo`` entry-point group, loaded on first use, not at import.

Modules: :mod:`woflo.errors` (every error), :mod:`woflo.hookspecs` (every hook),
:mod:`woflo.plugins` (the plugin system), :mod:`woflo.options` (option validators),
:mod:`woflo.remote` (for runners that execute in another process), :mod:`woflo.runners`
(every registered runner by class name), :mod:`woflo.testing` (fixtures and the runner
conformance suite).
"""

from __future__ import annotations

from woflo._run import BaseTaskRun
from woflo._task import Task, task
from woflo._types import Outcome, RunState, TaskCall, TaskOption
from woflo.errors import (
    TaskCrashed,
    TaskStopped,
    TaskTimeout,
    WaitTimeout,
    WofloError,
)
from woflo.hookspecs import hookimpl

__all__ = [
    "BaseTaskRun",
    "Outcome",
    "RunState",
    "Task",
    "TaskCall",
    "TaskCrashed",
    "TaskOption",
    "TaskStopped",
    "TaskTimeout",
    "WaitTimeout",
    "WofloError",
    "__version__",
    "hookimpl",
    "task",
]


def __getattr__(name: str) -> str:
    if name == "__version__":  # importlib.metadata is not cheap: read it only when asked
        from importlib.metadata import version

        return version("woflo")
    raise AttributeError(f"module 'woflo' has no attribute {name!r}")
