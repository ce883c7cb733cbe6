"""The retry policy: ``retries=`` attempts after the first, ``retry_sleep_time=`` seconds apart.

``@task(retries=2, retry_sleep_time=5)`` makes 3 attempts in all, 5 s apart. Any failed attempt
whose error is an ``Exception`` is retried (a crash or a timeout included); ``KeyboardInterrupt``,
``SystemExit`` and ``stop()`` never are. Another plugin can replace this policy by implementing
``woflo_retry_delay`` (the first non-``None`` answer wins), or block it with
``WOFLO_DISABLE_PLUGINS=retries``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal

from woflo import BaseTaskRun, Outcome, TaskOption, hookimpl


def _check_retries(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"expected a whole number of retries >= 0 (retries=2 makes 3 attempts in all), "
            f"got {type(value).__name__}"
        )
    if value < 0:
        raise ValueError("expected a whole number of retries >= 0 (retries=0 means no retry)")
    return value


def _check_seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected seconds as a number >= 0, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError("expected seconds as a finite number >= 0")
    return float(value)


@hookimpl
def woflo_add_options() -> Iterable[TaskOption]:
    return [
        TaskOption(
            "retries",
            default=0,
            validate=_check_retries,
            help="attempts after the first that fails (retries=2: 3 attempts in all)",
        ),
        TaskOption(
            "retry_sleep_time",
            default=0.0,
            validate=_check_seconds,
            help="seconds to wait between attempts",
        ),
    ]


@hookimpl
def woflo_retry_delay(
    run: BaseTaskRun[Any], attempt: int, outcome: Outcome
) -> float | Literal[False] | None:
    retries: int = run.task.options.get("retries", 0)
    if not retries:
        return None
    if attempt > retries or not isinstance(outcome.error, Exception):
        return False
    return float(run.task.options.get("retry_sleep_time", 0.0))
