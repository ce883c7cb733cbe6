"""Task bodies and a per-task plugin for the conformance suite.

Module-level, so that any runner can import them where it executes the attempt (another
process, another machine with a shared file system); they coordinate with the tests through
files.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import structlog  # a task module that logs with structlog: imported where the task runs

from woflo._types import Outcome, TaskCall
from woflo.hookspecs import hookimpl

WAIT = 30.0
"""Seconds any wait in the suite may take before the test fails instead of hanging."""


def add(a: int, b: int) -> int:
    """Return ``a + b``."""
    return a + b


def echo(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Return the arguments it was given."""
    return args, kwargs


def raise_value_error(message: str) -> None:
    """Raise ``ValueError(message)``."""
    raise ValueError(message)


def fail_times(counter: str, failures: int) -> int:
    """Fail the first ``failures`` calls (counted in the file ``counter``), then return the
    count."""
    path = Path(counter)
    count = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(count))
    if count <= failures:
        raise ConnectionError(f"failure {count}")
    return count


def fail_once_then_record(counter: str, out: str) -> int:
    """Fail the first call; on the next, write the attempt count to the file ``out``."""
    count = fail_times(counter, 1)
    Path(out).write_text(str(count))
    return count


def block(started: str, release: str, limit: float = WAIT) -> str:
    """Create the file ``started``, then wait until ``release`` exists (at most ``limit`` s)."""
    Path(started).touch()
    deadline = time.monotonic() + limit
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.005)
    return "released"


def where_am_i() -> dict[str, Any]:
    """What the execution wrappers bound for this attempt, where it executes.

    ``probe``: what :data:`execution_probe` (a per-task plugin) saw; ``structlog``: the
    structlog context (the logging plugin binds ``task``, ``run_id``, ``attempt``);
    ``pid``: the process.
    """
    context = dict(structlog.contextvars.get_contextvars())
    return {"probe": execution_probe.current(), "structlog": context, "pid": os.getpid()}


class ExecutionProbe:
    """A plugin wrapping ``woflo_execute_attempt``: records the call executing in this thread.

    Given to a task with ``@task(plugins=[execution_probe])``, it shows that a runner ran the
    task's own execution wrappers where the attempt executed. It pickles by reference, so
    every process has the one instance of its ``woflo.testing`` module.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    @hookimpl(wrapper=True)
    def woflo_execute_attempt(self, call: TaskCall) -> Generator[None, Outcome, Outcome]:
        """Record ``(run_id, attempt)`` while the attempt executes."""
        self._local.call = (call.run_id, call.attempt)
        try:
            return (yield)
        finally:
            self._local.call = None

    def current(self) -> tuple[str, int] | None:
        """``(run_id, attempt)`` of the attempt executing in this thread, if any."""
        return getattr(self._local, "call", None)

    def __reduce__(self) -> str:
        return "execution_probe"


execution_probe = ExecutionProbe()
"""The one :class:`ExecutionProbe`, for ``@task(plugins=[execution_probe])``."""


async def async_add(a: int, b: int) -> int:
    """``a + b``, from an ``async def`` (it awaits once: the coroutine really runs)."""
    import asyncio

    await asyncio.sleep(0)
    return a + b
