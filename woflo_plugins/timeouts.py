"""Time limits: ``timeout=`` seconds per attempt, ``total_timeout=`` seconds for the whole run.

``@task(timeout=10)`` kills an attempt still running after 10 s; it fails with
:class:`woflo.errors.TaskTimeout`, which the retry policy retries like any failure (leave it out
with ``retry_on``). ``@task(retries=3, timeout=10, total_timeout=60)`` also bounds the run: an
attempt is killed when the budget runs out (the run ends ``timed_out``), and no retry is
scheduled that would start after it (the run then ends with its last attempt's error).

What "killed" means depends on the runner: the multiprocess runner kills the worker's process
group and starts the next attempt only once it is confirmed dead. The sequential runner cannot
interrupt Python code running in the caller's thread: the attempt runs to its end, then counts
as timed out (its result is discarded), and no attempt starts after the run's budget.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterable
from typing import Any, Literal

from woflo import BaseTaskRun, Outcome, Task, TaskOption, hookimpl
from woflo.options import Validator, seconds

_SECONDS = seconds(positive=True, none=True, infinite=True)


def _no_limit_if_infinite(value: Any) -> float | None:
    limit: float | None = _SECONDS(value)
    return None if limit == math.inf else limit


_LIMIT = Validator(_SECONDS.expected, _no_limit_if_infinite)


@hookimpl
def woflo_add_options() -> Iterable[TaskOption]:
    return [
        TaskOption("timeout", None, _LIMIT, "seconds an attempt may run", caller_only=True),
        TaskOption("total_timeout", None, _LIMIT, "seconds the run may take", caller_only=True),
    ]


@hookimpl
def woflo_idle_hooks(task: Task[..., Any]) -> Iterable[str]:
    options = task.options
    if options.get("timeout") is None and options.get("total_timeout") is None:
        return ("woflo_attempt_deadline", "woflo_retry_delay")  # (no limit: nothing to do)
    return ()


@hookimpl
def woflo_attempt_deadline(run: BaseTaskRun[Any], attempt: int) -> float | None:
    options = run.task.options
    timeout: float | None = options.get("timeout")
    total: float | None = options.get("total_timeout")
    if total is None:
        return timeout
    remaining = total - run.duration
    return remaining if timeout is None else min(timeout, remaining)


@hookimpl(wrapper=True)
def woflo_retry_delay(
    run: BaseTaskRun[Any], attempt: int, outcome: Outcome
) -> Generator[None, float | Literal[False] | None, float | Literal[False] | None]:
    delay = yield
    total: float | None = run.task.options.get("total_timeout")
    if total is None or delay is None or delay is False:
        return delay
    return delay if run.duration + delay < total else False
