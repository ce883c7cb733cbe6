"""``SequentialTaskRun``: runs the task in the calling thread; the call returns a finished run.

Retries sleep in the caller. ``stop()`` from another thread ends the run at once as ``stopped``
and cancels a pending retry, but cannot interrupt Python code running in the caller's thread:
the attempt runs to its end and its result is discarded. A ``KeyboardInterrupt`` or
``SystemExit`` raised by the task ends the run (never retried) and propagates to the caller.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, TypeVar

from woflo import BaseTaskRun, TaskCall, hookimpl

__all__ = ["SequentialTaskRun"]

R = TypeVar("R")
_INTERRUPTS = (KeyboardInterrupt, SystemExit)


class SequentialTaskRun(BaseTaskRun[R]):
    """Runs every attempt in the calling thread, blocking until the run is final."""

    name = "sequential"
    blocking = True

    def start_attempt(self, call: TaskCall) -> None:
        """Execute ``call`` here and now; a Ctrl-C or ``sys.exit()`` in it propagates."""
        self.report_started(call, pid=os.getpid())
        outcome = self.execute(call)
        interrupted = isinstance(outcome.error, _INTERRUPTS)
        self.report_finished(call, outcome, may_retry=not interrupted)
        if interrupted:
            assert outcome.error is not None
            raise outcome.error


@hookimpl
def woflo_add_runners() -> Iterable[type[BaseTaskRun[Any]]]:
    return [SequentialTaskRun]


@hookimpl(trylast=True)
def woflo_default_runner() -> str:
    return "sequential"
