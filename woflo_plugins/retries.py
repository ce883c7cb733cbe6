"""The retry policy: how many attempts, which errors, and how long to wait between them.

``@task(retries=2, retry_sleep_time=5)`` makes 3 attempts in all, 5 s apart. The options::

    retries           attempts after the first that fails (default 0: no retry)
    retry_sleep_time  seconds between attempts, or a schedule [1, 2, 4] (the last value
                      repeats); the base delay when retry_backoff is set (default 0)
    retry_backoff     multiply the delay by this after each retry: 1, 2, 4, ... (default 1)
    retry_max_sleep   never wait longer than this many seconds (default: no cap)
    retry_jitter      add up to this many seconds at random to each delay (default 0)
    retry_on          an exception type, or a tuple of them, to retry (default Exception)
    retry_if          a predicate ``(error, attempt) -> bool``; retry only when it is true

The delay before retry ``k`` (``k = 1`` after the first attempt failed) is
``min(base_k * retry_backoff ** (k - 1) + uniform(0, retry_jitter), retry_max_sleep)``, where
``base_k`` is ``retry_sleep_time`` or the ``k``-th entry of the schedule (see
:func:`compute_delay`). An attempt that crashed (:class:`woflo.errors.TaskCrashed`) or timed out
(:class:`woflo.errors.TaskTimeout`) is an ``Exception`` and is retried like any other unless
``retry_on`` leaves it out. ``KeyboardInterrupt`` and ``stop()`` are never retried, nor is a
``SystemExit`` raised in the caller's own thread (sequential runner); a task's ``sys.exit()`` in a
worker process is retried only when ``retry_on`` names ``SystemExit``.

Another plugin can replace this policy by implementing ``woflo_retry_delay``: a plugin
registered later is asked first, and the first non-``None`` answer wins. Block this one with
``WOFLO_DISABLE_PLUGINS=retries``.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from woflo import BaseTaskRun, Outcome, TaskOption, hookimpl

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


def _check_retries(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"expected a whole number of retries >= 0 (retries=2 makes 3 attempts in all), "
            f"got {type(value).__name__}"
        )
    if value < 0:
        raise ValueError("expected a whole number of retries >= 0 (retries=0 means no retry)")
    return value


def _seconds(value: Any, what: str = "seconds") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected {what} as a number >= 0, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"expected {what} as a finite number >= 0, got {value!r}")
    return float(value)


def _check_sleep_time(value: Any) -> float | tuple[float, ...]:
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError("expected a non-empty schedule of seconds, e.g. [1, 2, 4]")
        return tuple(_seconds(v, "each delay of the schedule in seconds") for v in value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"expected seconds as a number >= 0, or a list of them (a schedule), "
            f"got {type(value).__name__}"
        )
    return _seconds(value)


def _check_backoff(value: Any) -> float:
    factor = _seconds(value, "a backoff factor")
    if factor < 1:
        raise ValueError(f"expected a backoff factor >= 1 (2.0 doubles each delay), got {value!r}")
    return factor


def _check_max_sleep(value: Any) -> float | None:
    return None if value is None else _seconds(value)


def _check_retry_on(value: Any) -> tuple[type[BaseException], ...]:
    types = value if isinstance(value, tuple) else (value,)
    if not types or not all(isinstance(t, type) and issubclass(t, BaseException) for t in types):
        raise TypeError(
            "expected an exception type or a tuple of them, e.g. "
            f"retry_on=(ConnectionError, TimeoutError), got {value!r}"
        )
    return types


def _check_retry_if(value: Any) -> Callable[[BaseException, int], bool] | None:
    if value is not None and not callable(value):
        raise TypeError(f"expected a callable (error, attempt) -> bool, got {value!r}")
    predicate: Callable[[BaseException, int], bool] | None = value
    return predicate


@hookimpl
def woflo_add_options() -> Iterable[TaskOption]:
    return [
        TaskOption(
            "retries",
            0,
            _check_retries,
            "attempts after the first that fails (retries=2: 3 attempts in all)",
        ),
        TaskOption(
            "retry_sleep_time", 0.0, _check_sleep_time, "seconds between attempts, or a schedule"
        ),
        TaskOption("retry_backoff", 1.0, _check_backoff, "multiply the delay by this each retry"),
        TaskOption("retry_max_sleep", None, _check_max_sleep, "cap on the delay, seconds"),
        TaskOption("retry_jitter", 0.0, _seconds, "add up to this many seconds at random"),
        TaskOption("retry_on", (Exception,), _check_retry_on, "exception types to retry"),
        TaskOption("retry_if", None, _check_retry_if, "predicate (error, attempt) -> bool"),
    ]


@hookimpl
def woflo_retry_delay(
    run: BaseTaskRun[Any], attempt: int, outcome: Outcome
) -> float | Literal[False] | None:
    options = run.task.options
    retries: int = options.get("retries", 0)
    if not retries:
        return None
    error = outcome.error
    if attempt > retries or not isinstance(error, options["retry_on"]):
        return False
    if isinstance(error, KeyboardInterrupt):
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
