"""``ThreadTaskRun``: each attempt runs in a new thread of the calling process.

A thread cannot be killed: ``stop()`` ends the run at once, but the attempt executing runs to
its end and its result is discarded; a timed-out attempt is likewise only marked when it ends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, TypeVar

from woflo import BaseTaskRun, TaskCall, hookimpl

__all__ = ["ThreadTaskRun"]
__version__ = "0.1.0"

R = TypeVar("R")


class ThreadTaskRun(BaseTaskRun[R]):
    """Runs every attempt in a new daemon thread; calling the task never blocks."""

    name = "threads"

    def start_attempt(self, call: TaskCall) -> None:
        thread = threading.Thread(
            target=self._run_attempt,
            args=(call,),
            name=f"woflo-{call.task_name}-{call.run_id}-{call.attempt}",
            daemon=True,  # woflo waits for live runs at exit; a stopped attempt must not block it
        )
        thread.start()

    def _run_attempt(self, call: TaskCall) -> None:
        self.report_started(call)
        self.report_finished(call, self.execute(call))

    def kill_attempt(self, call: TaskCall) -> None:
        """A thread cannot be killed: the attempt runs to its end; its result is discarded."""


@hookimpl
def woflo_add_runners() -> Iterable[type[BaseTaskRun[Any]]]:
    return [ThreadTaskRun]
