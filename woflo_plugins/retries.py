"""The retry policy: how many attempts, which errors, and how long to wait between them.

``@task(retries=2, retry_sleep_time=5)`` makes 3 attempts in all, 5 s apart. The options::

    retries           attempts after the first that fails (default 0: no retry; inf: no end)
    retry_sleep_time  seconds between attempts, or a schedule [1, 2, 4] (the last value
                      repeats); the base delay when retry_backoff is set (default 0)
    retry_backoff     multiply the delay by this after each retry: 1, 2, 4, ... (default 1)
    retry_max_sleep   never wait longer than this many seconds (default None or inf: no cap)
    retry_jitter      add up to this many seconds at random to each delay (default 0)
    retry_on          an exception type, or a tuple of them, to retry (default Exception)
    retry_if          a predicate ``(error, attempt) -> bool``; retry only when it is true

The delay before retry ``k`` (``k = 1`` after the first attempt failed) is
``min(base_k * retry_backoff ** (k - 1) + uniform(0, retry_jitter), retry_max_sleep)``, where
``base_k`` is ``retry_sleep_time`` or the ``k``-th entry of the schedule (see
:func:`compute_delay`). An attempt that crashed (:class:`woflo.errors.TaskCrashed`) or timed out
(:class:`woflo.errors.TaskTimeout`) is an ``Exception`` and is retried like any other unless
``retry_on`` leaves it out. woflo's core never retries ``KeyboardInterrupt``, a stop, or a
``SystemExit`` raised in the calling process (sequential runner), whatever this policy says; a
task's ``sys.exit()`` in a worker process is retried only when ``retry_on`` names
``SystemExit``.

Another plugin can replace this policy by implementing ``woflo_retry_delay``: a plugin
registered later is asked first, and the first non-``None`` answer wins. Block this one with
``WOFLO_DISABLE_PLUGINS=retries``.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, Literal

from woflo import BaseTaskRun, Outcome, TaskOption, hookimpl
from woflo.options import (
    Validator,
    callable_or_none,
    exception_types,
    invalid,
    number,
    seconds,
    whole_number,
)

__all__ = ["compute_delay"]


def compute_delay(
    retry: int,
    sleep_time: float | Sequence[float] = 0.0,
    backoff: float = 1.0,
    max_sleep: float | None = None,
    jitter: float = 0.0,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry number ``retry`` (1 for the first retry).

    :param rng: returns a float in ``[0, 1)``; jitter adds ``jitter * rng()`` seconds.

    The result is at most ``threading.TIMEOUT_MAX`` (about 292 years), the longest a thread
    can wait.
    """
    if isinstance(sleep_time, int | float):
        base = float(sleep_time)
    else:
        base = float(sleep_time[min(retry, len(sleep_time)) - 1]) if sleep_time else 0.0
    try:
        delay = base * backoff ** (retry - 1)
    except OverflowError:
        delay = math.inf if base else 0.0
    delay += jitter * rng()
    if max_sleep is not None:
        delay = min(delay, max_sleep)
    return min(delay, threading.TIMEOUT_MAX)  # longer cannot be waited for (OverflowError)


_SLEEP = seconds()
_RETRIES = whole_number(minimum=0, infinite=True)
_MAX_SLEEP_SECONDS = seconds(none=True, infinite=True)


def _check_retries(value: Any) -> float:
    """A whole number of retries, or ``inf``: retry for as long as the policy says so."""
    if isinstance(value, float) and value == math.inf:
        return math.inf
    retries: int = _RETRIES(value)
    return retries


def _check_max_sleep(value: Any) -> float | None:
    cap: float | None = _MAX_SLEEP_SECONDS(value)
    return None if cap == math.inf else cap


_MAX_SLEEP = Validator(_MAX_SLEEP_SECONDS.expected, _check_max_sleep)
_SLEEP_EXPECTED = "seconds as a finite number >= 0, or a non-empty list of them like [1, 2, 4]"


def _check_sleep_time(value: Any) -> float | tuple[float, ...]:
    if isinstance(value, list | tuple):
        if not value:
            raise invalid(_SLEEP_EXPECTED, value)
        try:
            return tuple(_SLEEP(v) for v in value)
        except (TypeError, ValueError) as exc:
            raise invalid(_SLEEP_EXPECTED, value, wrong_type=isinstance(exc, TypeError)) from None
    try:
        return _SLEEP(value)  # type: ignore[no-any-return]
    except (TypeError, ValueError) as exc:
        raise invalid(_SLEEP_EXPECTED, value, wrong_type=isinstance(exc, TypeError)) from None


@hookimpl
def woflo_add_options() -> Iterable[TaskOption]:
    options = [
        TaskOption(
            "retries",
            0,
            Validator(_RETRIES.expected, _check_retries),
            "attempts after the first that fails (retries=2: 3 attempts in all)",
        ),
        TaskOption(
            "retry_sleep_time",
            0.0,
            Validator(_SLEEP_EXPECTED, _check_sleep_time),
            "seconds between attempts, or a schedule",
        ),
        TaskOption(
            "retry_backoff",
            1.0,
            number(minimum=1, noun="backoff factor"),
            "multiply the delay by this each retry",
        ),
        TaskOption("retry_max_sleep", None, _MAX_SLEEP, "cap on the delay, seconds"),
        TaskOption("retry_jitter", 0.0, seconds(), "add up to this many seconds at random"),
        TaskOption("retry_on", (Exception,), exception_types(), "exception types to retry"),
        TaskOption(
            "retry_if",
            None,
            callable_or_none("a predicate (error, attempt) -> bool"),
            "predicate (error, attempt) -> bool",
        ),
    ]
    return [replace(option, caller_only=True) for option in options]  # (the caller retries)


@hookimpl
def woflo_retry_delay(
    run: BaseTaskRun[Any], attempt: int, outcome: Outcome
) -> float | Literal[False] | None:
    options = run.task.options
    retries: float = options.get("retries", 0)
    if not retries:
        return None
    error = outcome.error
    if attempt > retries or not isinstance(error, options["retry_on"]):
        return False
    predicate = options["retry_if"]
    if predicate is not None and not predicate(error, attempt):
        return False
    return compute_delay(
        attempt,
        options["retry_sleep_time"],
        options["retry_backoff"],
        options["retry_max_sleep"],
        options["retry_jitter"],
    )
