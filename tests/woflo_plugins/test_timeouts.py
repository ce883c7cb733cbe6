"""Time limits: ``timeout=`` per attempt and ``total_timeout=`` for the whole run.

On the multiprocess runner an attempt past its limit is killed from outside (its worker's
process group) and fails with ``TaskTimeout``, retried like any failure; the next attempt starts
only once the killed worker is dead. The sequential runner cannot interrupt its own thread: the
attempt runs to its end, then counts as timed out, and no attempt starts after the budget.

Worker-side code is built by :func:`attempt_body`, a closure (sent by value, importing nothing
from this test module). Each attempt leaves files in a directory: ``pid-N``, ``start-N`` (its
``time.monotonic()``, comparable across processes on Linux) and ``prev-N`` (whether attempt
``N - 1``'s process still existed when attempt ``N`` began). Every wait is bounded.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests._helpers import pid_exists
from woflo import RunState, task
from woflo.errors import TaskTimeout, WofloError
from woflo.runners import SequentialTaskRun

WAIT = 10.0
"""Bound on every wait: a hang fails the test instead of blocking the suite."""

SLACK = 1.5
"""Seconds a kill, the reaping of the worker and a retry may take beyond a limit."""


def attempt_body(
    sleep: float = 30.0,
    *,
    succeed_from: int | None = None,
    ignore_sigterm: bool = False,
    exit_on_sigterm: bool = False,
) -> Callable[[str], int]:
    """A task function recording each attempt in a directory, then sleeping ``sleep`` s.

    From attempt ``succeed_from`` on it returns the attempt's number at once.
    ``exit_on_sigterm`` turns SIGTERM into ``SystemExit``, the usual graceful-shutdown handler.
    """

    def body(directory: str) -> int:
        import os
        import signal
        import time
        from pathlib import Path

        start = time.monotonic()
        if ignore_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if exit_on_sigterm:

            def on_term(signum: int, frame: Any) -> None:
                raise SystemExit("terminated")

            signal.signal(signal.SIGTERM, on_term)
        here = Path(directory)

        def put(name: str, text: str) -> None:
            tmp = here / f"{name}.tmp"
            tmp.write_text(text)
            os.replace(tmp, here / name)

        number = 1
        while True:
            try:
                os.close(os.open(here / f"claim-{number}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                break
            except FileExistsError:
                number += 1
        previous = "none"
        if number > 1:
            try:
                pid = int((here / f"pid-{number - 1}").read_text())
            except FileNotFoundError:
                previous = "unknown"
            else:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    previous = "dead"
                else:
                    previous = f"alive (pid {pid})"
        put(f"prev-{number}", previous)
        put(f"start-{number}", repr(start))
        put(f"pid-{number}", str(os.getpid()))
        if succeed_from is not None and number >= succeed_from:
            return number
        time.sleep(sleep)
        return number

    return body


def attempts_in(directory: Path) -> int:
    return len(list(directory.glob("claim-*")))


def read(directory: Path, kind: str, number: int) -> str:
    return (directory / f"{kind}-{number}").read_text()


@pytest.fixture
def short_kill_grace(configure: Callable[..., None]) -> float:
    """SIGKILL 0.2 s after SIGTERM (on a fresh pool, reset afterwards)."""
    configure(kill_grace=0.2)
    return 0.2


# ---- options are checked at decoration time ----------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "kind"),
    [
        ("timeout", 0, ValueError),
        ("timeout", -1, ValueError),
        ("timeout", "1", TypeError),
        ("timeout", True, TypeError),
        ("timeout", math.nan, ValueError),
        ("total_timeout", 0, ValueError),
        ("total_timeout", -5, ValueError),
        ("total_timeout", "60", TypeError),
    ],
)
def test_a_bad_limit_fails_at_decoration_naming_it(option: str, value: Any, kind: type) -> None:
    with pytest.raises(kind, match=rf"\b{option} takes seconds .+, not ") as info:
        task(runner=SequentialTaskRun, **{option: value})
    assert str(info.value).endswith(f"not {value!r}")


def test_valid_limits_are_accepted() -> None:
    options = task(runner=SequentialTaskRun, timeout=10, total_timeout=60.5)(lambda: None).options
    assert (options["timeout"], options["total_timeout"]) == (10.0, 60.5)
    default = task(runner=SequentialTaskRun)(lambda: None).options
    assert (default["timeout"], default["total_timeout"]) == (None, None)
    explicit = task(runner=SequentialTaskRun, timeout=None)(lambda: None).options
    assert explicit["timeout"] is None


def test_task_timeout_is_a_woflo_error_and_a_timeout_error() -> None:
    assert issubclass(TaskTimeout, WofloError)
    assert issubclass(TaskTimeout, TimeoutError)


# ---- the multiprocess runner kills an attempt past its limit ------------------------------


def test_an_attempt_past_its_timeout_is_killed(tmp_path: Path, runs: list[Any]) -> None:
    run = task(timeout=0.3)(attempt_body())(str(tmp_path))
    runs.append(run)
    assert run.wait(WAIT)
    assert run.state is RunState.TIMED_OUT
    assert run.duration < 0.3 + SLACK
    error = run.exception()
    assert isinstance(error, TaskTimeout)
    assert isinstance(error, TimeoutError)
    with pytest.raises(TaskTimeout, match=r"0\.3 s limit"):
        run.get_result()
    assert run.attempts == 1
    assert attempts_in(tmp_path) == 1
    pid = int(read(tmp_path, "pid", 1))
    assert not pid_exists(pid)  # reported only once the worker was confirmed dead


def test_a_fast_attempt_is_not_affected_by_its_timeout(runs: list[Any]) -> None:
    @task(timeout=5)
    def quick() -> int:
        return 7

    run = quick()
    runs.append(run)
    assert run.get_result(timeout=WAIT) == 7
    assert run.state is RunState.COMPLETED


def test_a_task_ignoring_sigterm_still_ends_timed_out(
    tmp_path: Path, runs: list[Any], short_kill_grace: float
) -> None:
    run = task(timeout=0.3)(attempt_body(ignore_sigterm=True))(str(tmp_path))
    runs.append(run)
    assert run.wait(WAIT)
    assert run.state is RunState.TIMED_OUT
    assert isinstance(run.exception(), TaskTimeout)
    assert run.duration < 0.3 + short_kill_grace + SLACK
    assert not pid_exists(int(read(tmp_path, "pid", 1)))


def test_each_timed_out_attempt_is_retried_after_its_worker_is_dead(
    tmp_path: Path, runs: list[Any], short_kill_grace: float
) -> None:
    # ignoring SIGTERM keeps each killed worker alive for the whole grace: a retry started
    # before it is confirmed dead would see it
    run = task(retries=2, timeout=0.3)(attempt_body(ignore_sigterm=True))(str(tmp_path))
    runs.append(run)
    assert run.wait(WAIT)
    assert run.state is RunState.TIMED_OUT
    assert run.attempts == 3
    assert attempts_in(tmp_path) == 3
    assert [type(e) for e in run.errors] == [TaskTimeout] * 3
    assert run.exception() is run.errors[-1]
    assert [read(tmp_path, "prev", n) for n in (1, 2, 3)] == ["none", "dead", "dead"]
    pids = [int(read(tmp_path, "pid", n)) for n in (1, 2, 3)]
    assert len(set(pids)) == 3
    assert not any(pid_exists(p) for p in pids)


def test_a_retry_waits_for_a_killed_worker_that_handles_sigterm(
    tmp_path: Path, runs: list[Any]
) -> None:
    run = task(retries=1, timeout=0.3)(attempt_body(exit_on_sigterm=True))(str(tmp_path))
    runs.append(run)
    assert run.wait(WAIT)
    assert run.attempts == 2
    assert [type(e) for e in run.errors] == [TaskTimeout, TaskTimeout]
    assert read(tmp_path, "prev", 2) == "dead"


def test_a_timed_out_attempt_can_be_followed_by_a_successful_one(
    tmp_path: Path, runs: list[Any]
) -> None:
    run = task(retries=1, timeout=0.3)(attempt_body(succeed_from=2))(str(tmp_path))
    runs.append(run)
    assert run.get_result(timeout=WAIT) == 2
    assert run.state is RunState.COMPLETED
    assert [type(e) for e in run.errors] == [TaskTimeout]
    assert read(tmp_path, "prev", 2) == "dead"


def test_retry_on_can_leave_timeouts_unretried(tmp_path: Path, runs: list[Any]) -> None:
    run = task(retries=2, timeout=0.3, retry_on=ValueError)(attempt_body())(str(tmp_path))
    runs.append(run)
    assert run.wait(WAIT)
    assert run.state is RunState.TIMED_OUT
    assert run.attempts == 1
    assert attempts_in(tmp_path) == 1


def test_total_timeout_kills_the_attempt_when_the_budget_runs_out(
    tmp_path: Path, runs: list[Any]
) -> None:
    run = task(retries=5, total_timeout=0.5)(attempt_body())(str(tmp_path))
    runs.append(run)
    assert run.wait(WAIT)
    assert run.state is RunState.TIMED_OUT
    assert isinstance(run.exception(), TaskTimeout)
    assert run.duration < 0.5 + SLACK
    assert run.attempts == 1  # no retry after the budget, although 5 were allowed
    assert attempts_in(tmp_path) == 1
    assert not pid_exists(int(read(tmp_path, "pid", 1)))


def test_no_attempt_starts_after_the_total_budget(tmp_path: Path, runs: list[Any]) -> None:
    budget = 0.8
    start = time.monotonic()
    run = task(retries=10, timeout=0.25, total_timeout=budget)(attempt_body())(str(tmp_path))
    runs.append(run)
    assert run.wait(WAIT)
    assert run.state is RunState.TIMED_OUT
    count = attempts_in(tmp_path)
    assert 2 <= count < 11
    # the last attempt may have been handed to a worker and killed by the budget before its
    # body could record itself: it counts as started all the same
    assert count <= run.attempts <= count + 1
    assert {type(e) for e in run.errors} == {TaskTimeout}
    assert run.attempts <= len(run.errors) <= run.attempts + 1  # + "budget spent before N"
    starts = [float(read(tmp_path, "start", n)) for n in range(1, count + 1)]
    assert all(s < start + budget for s in starts), [s - start for s in starts]
    assert run.duration < budget + SLACK


def test_a_retry_sleep_past_the_budget_is_not_scheduled(runs: list[Any]) -> None:
    @task(retries=3, retry_sleep_time=5, total_timeout=1)
    def fails() -> None:
        raise ValueError("nope")

    run = fails()
    runs.append(run)
    assert run.wait(WAIT)
    assert run.state is RunState.FAILED  # ends with its last attempt's own error
    assert isinstance(run.exception(), ValueError)
    assert run.attempts == 1
    assert run.duration < 1


# ---- the sequential runner: the documented limit ------------------------------------------


def test_sequential_attempt_runs_to_its_end_then_counts_as_timed_out() -> None:
    def slow() -> int:
        time.sleep(0.3)  # the behaviour under test: an attempt longer than its limit
        return 42

    run = task(runner=SequentialTaskRun, timeout=0.05)(slow)()
    assert run.state is RunState.TIMED_OUT
    assert run.duration >= 0.3  # it could not be interrupted: it ran to its end
    assert run.attempts == 1
    with pytest.raises(TaskTimeout):
        run.get_result()  # its result is discarded


def test_sequential_timeout_is_retried_like_any_failure() -> None:
    attempts: list[int] = []

    def slow_once() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            time.sleep(0.2)
        return len(attempts)

    run = task(runner=SequentialTaskRun, retries=1, timeout=0.05)(slow_once)()
    assert run.get_result() == 2
    assert [type(e) for e in run.errors] == [TaskTimeout]


def test_sequential_no_attempt_starts_after_the_total_budget() -> None:
    starts: list[float] = []

    def fn() -> None:
        starts.append(time.monotonic())
        if len(starts) > 1:
            time.sleep(0.6)  # runs past the 0.3 s budget
        raise ValueError(f"attempt {len(starts)}")

    begin = time.monotonic()
    run = task(runner=SequentialTaskRun, retries=5, total_timeout=0.3)(fn)()
    assert run.state is RunState.TIMED_OUT
    assert isinstance(run.exception(), TaskTimeout)
    assert len(starts) == 2  # the second ran past the deadline; no third began
    assert run.attempts == 2
    assert all(s < begin + 0.3 for s in starts)
    assert [type(e) for e in run.errors] == [ValueError, TaskTimeout]


def test_sequential_retry_sleep_past_the_budget_is_not_scheduled() -> None:
    attempts: list[int] = []

    def fn() -> None:
        attempts.append(1)
        raise ValueError("nope")

    start = time.monotonic()
    run = task(runner=SequentialTaskRun, retries=3, retry_sleep_time=1, total_timeout=0.5)(fn)()
    assert time.monotonic() - start < 0.5  # did not sleep towards a retry it could not make
    assert attempts == [1]
    assert run.state is RunState.FAILED
    assert isinstance(run.exception(), ValueError)
