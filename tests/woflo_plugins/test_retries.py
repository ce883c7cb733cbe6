"""The retries plugin: ``retries=N`` means N + 1 attempts, ``retry_sleep_time`` apart."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from woflo import RunState, task
from woflo.plugins import PluginSystem
from woflo.runners import SequentialTaskRun


class Flaky(Exception):
    pass


def _failing(times: list[float], fail_first: int) -> Any:
    def flaky() -> int:
        times.append(time.monotonic())
        if len(times) <= fail_first:
            raise Flaky(f"attempt {len(times)}")
        return len(times)

    return flaky


def test_retries_are_counted_and_spaced() -> None:
    times: list[float] = []
    sleep = 0.05
    run = task(runner=SequentialTaskRun, retries=2, retry_sleep_time=sleep)(_failing(times, 10))()
    assert len(times) == 3  # retries=2: 3 attempts in all
    assert run.attempts == 3
    assert run.state is RunState.FAILED
    assert [str(e) for e in run.errors] == ["attempt 1", "attempt 2", "attempt 3"]
    with pytest.raises(Flaky, match="attempt 3"):  # the last attempt's error
        run.get_result()
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(sleep <= gap < sleep + 2 for gap in gaps), gaps


def test_a_retry_that_succeeds_completes_the_run() -> None:
    times: list[float] = []
    run = task(runner=SequentialTaskRun, retries=4, retry_sleep_time=0)(_failing(times, 2))()
    assert run.state is RunState.COMPLETED
    assert run.get_result() == 3
    assert run.attempts == 3
    assert [type(e) for e in run.errors] == [Flaky, Flaky]
    assert run.exception() is None


def test_no_retries_by_default() -> None:
    times: list[float] = []
    run = task(runner=SequentialTaskRun)(_failing(times, 1))()
    assert run.attempts == 1
    assert run.state is RunState.FAILED


def test_retry_delay_is_handed_to_the_hooks(recorder: Any) -> None:
    times: list[float] = []
    task(runner=SequentialTaskRun, retries=2, retry_sleep_time=0.01)(_failing(times, 10))()
    assert recorder.delays == [0.01, 0.01]
    assert recorder.hooks.count("retry_scheduled") == 2


def test_retries_declares_its_options(plugins: PluginSystem) -> None:
    retries = plugins.options["retries"]
    sleep = plugins.options["retry_sleep_time"]
    assert (retries.default, sleep.default) == (0, 0.0)
    assert "3 attempts" in retries.help
    assert sleep.help
    assert retries.validate is not None
    assert retries.validate(0) == 0


def test_without_the_plugin_nothing_is_retried() -> None:
    system = PluginSystem.from_entry_points(disabled=["retries"])
    assert "retries" not in system.options
    deciders = [
        impl.plugin_name
        for impl in system.pm.hook.woflo_retry_delay.get_hookimpls()
        if not impl.wrapper
    ]
    assert deciders == []  # the timeouts plugin only wraps a decision; it never makes one
