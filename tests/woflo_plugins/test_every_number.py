"""Every number a user can pass (timeouts, delays, limits, counts): correct behaviour or a clear
error at the earliest moment; ``inf`` means "no limit" where that makes sense. Never an
OverflowError, never a hang, never a silent ``False``."""

from __future__ import annotations

import math
from typing import Any

import pytest

import woflo_plugins.multiprocess as mp
from woflo import RunState, task
from woflo.errors import OptionError, WaitTimeout
from woflo.runners import SequentialTaskRun
from woflo.testing import add

NUMBERS = [0, -1, 1, 0.5, 3, math.nan, math.inf, -math.inf, 1e308, 10**400, True]
OPTIONS = [
    "retries",
    "retry_sleep_time",
    "retry_backoff",
    "retry_max_sleep",
    "retry_jitter",
    "timeout",
    "total_timeout",
]
NO_LIMIT = {  # options where inf is accepted and means "no limit"
    "retries": math.inf,
    "retry_max_sleep": None,
    "timeout": None,
    "total_timeout": None,
}


def _attempt(make: Any) -> tuple[Any, OptionError | None]:
    """What ``make()`` returns, or the :class:`OptionError` it raises (anything else fails)."""
    try:
        return make(), None
    except OptionError as exc:
        return None, exc


@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("value", NUMBERS, ids=repr)
def test_every_number_is_taken_or_refused_at_decoration(option: str, value: Any) -> None:
    t, error = _attempt(lambda: task(runner=SequentialTaskRun, **{option: value})(add))
    if error is not None:
        assert isinstance(error, TypeError | ValueError)
        assert f"{option} takes " in str(error)
        assert str(error).endswith(f"not {value!r}")
        return
    assert not (isinstance(value, float) and math.isnan(value)), "nan must be refused"
    assert value is not True, "a bool is not a number of anything"
    if value == math.inf:
        assert option in NO_LIMIT, f"{option}=inf makes no sense and must be refused"
        assert t.options[option] == NO_LIMIT[option]
    run = t(2, 3)  # a run with it behaves: no OverflowError, no hang
    assert (run.state, run.get_result()) == (RunState.COMPLETED, 5)


@pytest.mark.parametrize("option", ["max_concurrency"])
@pytest.mark.parametrize("value", NUMBERS, ids=repr)
def test_the_concurrency_cap_takes_whole_numbers_or_no_limit(option: str, value: Any) -> None:
    t, error = _attempt(lambda: task(**{option: value})(add))
    if error is not None:
        assert f"{option} takes " in str(error)
        return
    assert value == math.inf or (isinstance(value, int) and value >= 1)
    assert t.options[option] == (None if value == math.inf else value)


@pytest.mark.parametrize("setting", ["max_workers", "idle_timeout", "kill_grace"])
@pytest.mark.parametrize("value", NUMBERS, ids=repr)
def test_every_pool_setting_is_taken_or_refused_at_once(setting: str, value: Any) -> None:
    try:
        _, error = _attempt(lambda: mp.configure(**{setting: value}))
    finally:
        mp.reset()
    if error is not None:
        assert f"{setting} takes " in str(error)
    else:
        assert not (isinstance(value, float) and math.isnan(value)), "nan must be refused"
        assert value is not True


@pytest.mark.parametrize("timeout", [0, -1, 0.001, math.inf, 1e308, 10**400, None])
def test_waiting_takes_any_timeout(timeout: Any) -> None:
    run = task(runner=SequentialTaskRun)(add)(1, 1)
    assert run.wait(timeout) is True
    assert run.get_result(timeout=timeout) == 2
    assert run.exception(timeout=timeout) is None


@pytest.mark.parametrize("timeout", [math.nan, "1", True])
def test_a_timeout_that_is_not_a_number_is_refused(timeout: Any) -> None:
    run = task(runner=SequentialTaskRun)(add)(1, 1)
    with pytest.raises(OptionError, match="timeout takes seconds"):
        run.wait(timeout)


def test_a_negative_timeout_does_not_wait(runs: list[Any]) -> None:
    assert task(runner=SequentialTaskRun)(add)(1, 0).get_result(timeout=-5) == 1
    slow = task(retries=1, retry_sleep_time=60)(_fails)()
    runs.append(slow)
    with pytest.raises(WaitTimeout):
        slow.get_result(timeout=-1)


def _fails() -> None:
    raise ValueError("again")
