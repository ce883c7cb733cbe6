"""The retry policy: options checked at decoration, the delay schedule, the policy on
both runners, replacing the policy from a third-party plugin, non-blocking sleeps, logging.

In-process tests use ``SequentialTaskRun`` with tiny delays; the multiprocess tests only check
what needs real workers (a caller that is never blocked, ``stop()`` during a sleep,
``SystemExit`` from a worker). Every wait is bounded.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from woflo import BaseTaskRun, Outcome, RunState, hookimpl, task
from woflo.errors import OptionError, TaskStopped
from woflo.plugins import PluginSystem, set_plugin_system
from woflo.runners import SequentialTaskRun
from woflo.testing import HookRecorder
from woflo_plugins.retries import compute_delay

WAIT = 10.0
"""Bound on every wait: a hang fails the test instead of blocking the suite."""


class Boom(Exception):
    pass


class Other(Exception):
    pass


def failing(counter: list[int], error: type[BaseException] = Boom) -> Callable[[], None]:
    """A function that raises ``error`` on every call, counting the calls in ``counter``."""

    def fn() -> None:
        counter.append(len(counter) + 1)
        raise error(f"attempt {len(counter)}")

    return fn


class Signals:
    """A plugin turning lifecycle hooks into events a test can wait on."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.retry_scheduled = threading.Event()
        self.scheduled_runs: list[BaseTaskRun[Any]] = []
        self.retry_asked: list[int] = []

    @hookimpl
    def woflo_attempt_started(self, run: BaseTaskRun[Any], attempt: int) -> None:
        self.started.set()

    @hookimpl
    def woflo_retry_scheduled(self, run: BaseTaskRun[Any], attempt: int) -> None:
        self.scheduled_runs.append(run)
        self.retry_scheduled.set()


class InThread(threading.Thread):
    """Calls ``fn()`` in a thread of its own, started at once; keeps what it returned or
    raised."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(target=self._call, args=(fn,))
        self.returned: list[Any] = []
        self.raised: list[BaseException] = []
        self.start()

    def _call(self, fn: Callable[[], Any]) -> None:
        try:
            self.returned.append(fn())
        except BaseException as exc:
            self.raised.append(exc)


@pytest.fixture
def signals(plugins: PluginSystem) -> Signals:
    plugin = Signals()
    plugins.add(plugin, name="test-signals")
    return plugin


def ended_in_a_worker(
    runs: list[BaseTaskRun[Any]], body: Callable[[], None], **options: Any
) -> BaseTaskRun[Any]:
    """The run of ``body`` as a task with ``options`` on the default runner (a worker
    process), once it has ended."""
    run = task(**options)(body)()
    runs.append(run)
    assert run.wait(WAIT)
    return run


# ---- every option is checked at decoration time ---------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "kind"),
    [
        ("retries", -1, ValueError),
        ("retries", "3", TypeError),
        ("retries", True, TypeError),
        ("retries", 1.5, TypeError),
        ("retry_sleep_time", -2, ValueError),
        ("retry_sleep_time", [], ValueError),
        ("retry_sleep_time", [1, -1], ValueError),
        ("retry_sleep_time", [1, "2"], TypeError),
        ("retry_sleep_time", "x", TypeError),
        ("retry_sleep_time", math.nan, ValueError),
        ("retry_sleep_time", math.inf, ValueError),
        ("retry_backoff", 0.5, ValueError),
        ("retry_backoff", -1, ValueError),
        ("retry_backoff", "2", TypeError),
        ("retry_max_sleep", -1, ValueError),
        ("retry_max_sleep", "1", TypeError),
        ("retry_jitter", -1, ValueError),
        ("retry_jitter", None, TypeError),
        ("retry_on", 42, TypeError),
        ("retry_on", (ValueError, 3), TypeError),
        ("retry_on", "x", TypeError),
        ("retry_on", (), TypeError),
        ("retry_on", int, TypeError),
        ("retry_on", [ValueError], TypeError),
        ("retry_if", 3, TypeError),
        ("retry_if", "lambda e, n: True", TypeError),
    ],
)
def test_a_bad_option_fails_at_decoration_naming_it(option: str, value: Any, kind: type) -> None:
    with pytest.raises(kind, match=rf"\b{option} takes .+, not ") as info:
        task(runner=SequentialTaskRun, **{option: value})
    assert str(info.value).endswith(f"not {value!r}")  # what is wrong, after what is right
    assert isinstance(info.value, OptionError)


def test_a_bad_option_fails_in_the_bare_call_form_too() -> None:
    def fn() -> None:
        pass

    with pytest.raises(ValueError, match=r"retries takes .*, not -1"):
        task(fn, runner=SequentialTaskRun, retries=-1)
    good = task(fn, runner=SequentialTaskRun, retries=1)
    with pytest.raises(ValueError, match=r"retry_backoff takes .*, not 0\.5"):
        good.with_options(retry_backoff=0.5)


def test_valid_forms_are_accepted_and_normalised() -> None:
    def predicate(error: BaseException, attempt: int) -> bool:
        return True

    options = task(
        runner=SequentialTaskRun,
        retries=3,
        retry_sleep_time=[1, 2, 4],
        retry_backoff=2,
        retry_max_sleep=30,
        retry_jitter=0.5,
        retry_on=ValueError,
        retry_if=predicate,
    )(lambda: None).options
    assert options["retries"] == 3
    assert options["retry_sleep_time"] == (1.0, 2.0, 4.0)
    assert options["retry_backoff"] == 2.0
    assert options["retry_max_sleep"] == 30.0
    assert options["retry_jitter"] == 0.5
    assert options["retry_on"] == (ValueError,)
    assert options["retry_if"] is predicate

    pair = task(runner=SequentialTaskRun, retry_on=(ValueError, KeyError))(lambda: None)
    assert pair.options["retry_on"] == (ValueError, KeyError)
    lam = task(runner=SequentialTaskRun, retry_if=lambda e, n: True)(lambda: None)
    assert lam.options["retry_if"](ValueError(), 1) is True
    assert (
        task(runner=SequentialTaskRun, retry_sleep_time=5)(lambda: None).options["retry_sleep_time"]
        == 5.0
    )


def test_defaults_mean_no_retry() -> None:
    options = task(runner=SequentialTaskRun)(lambda: None).options
    assert options["retries"] == 0
    assert options["retry_sleep_time"] == 0.0
    assert options["retry_backoff"] == 1.0
    assert options["retry_max_sleep"] is None
    assert options["retry_jitter"] == 0.0
    assert options["retry_on"] == (Exception,)
    assert options["retry_if"] is None


# ---- the delay schedule (property tests) ----------------------------------------------------

retries_ = st.integers(min_value=1, max_value=200)
huge_retries = st.integers(min_value=1, max_value=10**18)
seconds = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
huge_seconds = st.floats(min_value=0, max_value=1e300, allow_nan=False, allow_infinity=False)
schedules = st.lists(seconds, min_size=1, max_size=8)
sleep_times = seconds | schedules
backoffs = st.floats(min_value=1, max_value=1e3, allow_nan=False, allow_infinity=False)
huge_backoffs = st.floats(min_value=1, max_value=1e300, allow_nan=False, allow_infinity=False)
caps = st.none() | seconds
jitters = st.floats(min_value=0, max_value=1e3, allow_nan=False, allow_infinity=False)
unit = st.floats(min_value=0, max_value=1, exclude_max=True, allow_nan=False)


@given(retries_, sleep_times, backoffs, caps, jitters, unit)
def test_delay_is_never_negative_nor_above_the_cap(
    retry: int, sleep: Any, backoff: float, cap: float | None, jitter: float, u: float
) -> None:
    delay = compute_delay(retry, sleep, backoff, cap, jitter, rng=lambda: u)
    assert delay >= 0
    if cap is not None:
        assert delay <= cap


@given(retries_, sleep_times, backoffs, caps, jitters, unit)
def test_jitter_adds_at_most_jitter(
    retry: int, sleep: Any, backoff: float, cap: float | None, jitter: float, u: float
) -> None:
    plain = compute_delay(retry, sleep, backoff, cap, 0.0)
    jittered = compute_delay(retry, sleep, backoff, cap, jitter, rng=lambda: u)
    assert jittered >= plain  # jitter never shortens a delay
    if math.isfinite(plain):
        assert jittered - plain <= jitter * (1 + 1e-12) + 1e-9 * plain
    if cap is not None:
        assert jittered <= cap


@given(st.integers(1, 50), seconds, jitters, unit)
def test_jitter_is_jitter_times_the_random_draw(
    retry: int, sleep: float, jitter: float, u: float
) -> None:
    delay = compute_delay(retry, sleep, 1.0, None, jitter, rng=lambda: u)
    assert delay == pytest.approx(sleep + jitter * u, rel=1e-12, abs=1e-12)


@given(seconds, backoffs, caps, st.integers(min_value=1, max_value=60))
def test_backoff_is_monotone_and_capped(
    sleep: float, backoff: float, cap: float | None, n: int
) -> None:
    delays = [compute_delay(k, sleep, backoff, cap) for k in range(1, n + 1)]
    assert delays == sorted(delays)
    if cap is not None:
        assert max(delays) <= cap
    assert delays[0] == (sleep if cap is None else min(sleep, cap))


@given(st.floats(min_value=1e-3, max_value=10), st.floats(min_value=1.5, max_value=4))
def test_backoff_reaches_the_cap_and_stays_there(sleep: float, backoff: float) -> None:
    cap = sleep * 100
    delays = [compute_delay(k, sleep, backoff, cap) for k in range(1, 40)]
    assert delays[-1] == cap
    first_capped = delays.index(cap)
    assert all(d == cap for d in delays[first_capped:])


@given(schedules, st.integers(min_value=1, max_value=30))
def test_a_schedule_is_followed_then_repeats_its_last_entry(
    schedule: list[float], retry: int
) -> None:
    delay = compute_delay(retry, schedule)
    expected = schedule[retry - 1] if retry <= len(schedule) else schedule[-1]
    assert delay == expected


@given(
    huge_retries,
    huge_seconds | st.lists(huge_seconds, min_size=1, max_size=4),
    huge_backoffs,
    st.none() | huge_seconds,
    jitters,
    unit,
)
def test_huge_retry_numbers_do_not_overflow(
    retry: int,
    sleep: Any,
    backoff: float,
    cap: float | None,
    jitter: float,
    u: float,
) -> None:
    delay = compute_delay(retry, sleep, backoff, cap, jitter, rng=lambda: u)
    assert isinstance(delay, float)
    assert not math.isnan(delay)
    assert delay >= 0
    if cap is not None:
        assert delay <= cap
    # a delay is waited for by a thread: it must be a wait threading can perform
    assert delay <= threading.TIMEOUT_MAX


@given(huge_retries, st.just(0.0) | st.lists(st.just(0.0), min_size=1, max_size=3), huge_backoffs)
def test_no_base_delay_stays_zero_whatever_the_backoff(
    retry: int, sleep: Any, backoff: float
) -> None:
    assert compute_delay(retry, sleep, backoff) == 0.0


# ---- the policy, in-process (sequential) ----------------------------------------------------


def test_retries_2_makes_3_attempts_and_keeps_every_error() -> None:
    calls: list[int] = []
    run = task(runner=SequentialTaskRun, retries=2)(failing(calls))()
    assert calls == [1, 2, 3]
    assert run.attempts == 3
    assert run.state is RunState.FAILED
    assert [str(e) for e in run.errors] == ["attempt 1", "attempt 2", "attempt 3"]
    with pytest.raises(Boom) as info:
        run.get_result()
    assert info.value is run.errors[-1]  # the last attempt's own exception
    assert run.exception() is run.errors[-1]


def test_retry_on_leaves_other_errors_unretried(recorder: Any) -> None:
    calls: list[int] = []
    run = task(runner=SequentialTaskRun, retries=3, retry_on=Other)(failing(calls))()
    assert calls == [1]
    assert run.attempts == 1
    assert run.state is RunState.FAILED
    assert recorder.delays == []


def test_retry_on_a_tuple_retries_its_members() -> None:
    calls: list[int] = []
    run = task(runner=SequentialTaskRun, retries=2, retry_on=(Other, Boom))(failing(calls))()
    assert run.attempts == 3
    calls.clear()
    run = task(runner=SequentialTaskRun, retries=2, retry_on=(Other, KeyError))(failing(calls))()
    assert run.attempts == 1


def test_a_retry_that_succeeds_ends_the_run_completed() -> None:
    calls: list[int] = []

    def flaky() -> int:
        calls.append(1)
        if len(calls) < 3:
            raise Boom(f"attempt {len(calls)}")
        return 42

    run = task(runner=SequentialTaskRun, retries=5)(flaky)()
    assert run.state is RunState.COMPLETED
    assert run.get_result() == 42
    assert run.attempts == 3
    assert [str(e) for e in run.errors] == ["attempt 1", "attempt 2"]


def test_retry_if_sees_the_error_and_attempt_number_and_can_stop() -> None:
    seen: list[tuple[str, int]] = []

    def predicate(error: BaseException, attempt: int) -> bool:
        seen.append((str(error), attempt))
        return attempt < 2

    calls: list[int] = []
    run = task(runner=SequentialTaskRun, retries=5, retry_if=predicate)(failing(calls))()
    assert seen == [("attempt 1", 1), ("attempt 2", 2)]
    assert run.attempts == 2
    assert run.state is RunState.FAILED
    assert str(run.exception()) == "attempt 2"


def test_retry_if_is_not_asked_for_errors_retry_on_excludes() -> None:
    seen: list[int] = []
    calls: list[int] = []
    run = task(
        runner=SequentialTaskRun,
        retries=3,
        retry_on=Other,
        retry_if=lambda error, attempt: seen.append(attempt) or True,
    )(failing(calls))()
    assert run.attempts == 1
    assert seen == []


def test_a_schedule_is_handed_to_the_hooks_and_repeats(recorder: Any) -> None:
    calls: list[int] = []
    run = task(runner=SequentialTaskRun, retries=4, retry_sleep_time=[0.01, 0.02])(failing(calls))()
    assert run.attempts == 5
    assert recorder.delays == [0.01, 0.02, 0.02, 0.02]


def test_backoff_doubles_up_to_the_cap(recorder: Any) -> None:
    calls: list[int] = []
    run = task(
        runner=SequentialTaskRun,
        retries=5,
        retry_sleep_time=0.001,
        retry_backoff=2,
        retry_max_sleep=0.005,
    )(failing(calls))()
    assert run.attempts == 6
    assert recorder.delays == pytest.approx([0.001, 0.002, 0.004, 0.005, 0.005])


def test_jitter_stays_within_its_range(recorder: Any) -> None:
    calls: list[int] = []
    task(runner=SequentialTaskRun, retries=5, retry_sleep_time=0.001, retry_jitter=0.004)(
        failing(calls)
    )()
    assert len(recorder.delays) == 5
    assert all(0.001 <= d <= 0.005 for d in recorder.delays), recorder.delays


def test_the_sleep_really_separates_attempts() -> None:
    times: list[float] = []

    def fn() -> None:
        times.append(time.monotonic())
        raise Boom

    task(runner=SequentialTaskRun, retries=2, retry_sleep_time=[0.02, 0.05])(fn)()
    assert len(times) == 3
    assert times[1] - times[0] >= 0.02
    assert times[2] - times[1] >= 0.05


def interrupted_calls(interrupt: type[BaseException]) -> list[int]:
    """Call a task raising ``interrupt``, retried on any exception; it propagates to the
    caller. Return the calls of its function."""
    calls: list[int] = []
    fn = task(runner=SequentialTaskRun, retries=3, retry_on=BaseException)(
        failing(calls, interrupt)
    )
    with pytest.raises(interrupt):
        fn()
    return calls


def test_keyboard_interrupt_is_never_retried(recorder: Any) -> None:
    assert interrupted_calls(KeyboardInterrupt) == [1]
    [run] = recorder.runs
    assert run.attempts == 1
    assert recorder.delays == []
    assert not run.is_running()


def test_system_exit_in_the_caller_is_never_retried(recorder: Any) -> None:
    assert interrupted_calls(SystemExit) == [1]
    assert recorder.delays == []


def test_a_failing_retry_if_counts_as_no_retry() -> None:
    def predicate(error: BaseException, attempt: int) -> bool:
        raise RuntimeError("bad predicate")

    calls: list[int] = []
    run = task(runner=SequentialTaskRun, retries=3, retry_if=predicate)(failing(calls))()
    assert run.attempts == 1
    assert run.state is RunState.FAILED
    assert any("bad predicate" in str(e) for e in run.hook_errors)


def test_a_huge_retry_sleep_can_be_stopped_instead_of_crashing_the_call(
    signals: Signals,
) -> None:
    """A sleep longer than a thread can wait (1e10 s) must not raise OverflowError."""
    calls: list[int] = []
    fn = task(runner=SequentialTaskRun, retries=1, retry_sleep_time=1e10)(failing(calls))
    caller = InThread(fn)
    try:
        assert signals.retry_scheduled.wait(WAIT)
        [run] = signals.scheduled_runs
        caller.join(0.3)  # a wait it cannot perform fails at once: give it the chance to
        assert caller.raised == []
        assert caller.is_alive()  # still sleeping
        assert run.state is RunState.AWAITING_RETRY
        run.stop()
    finally:
        caller.join(WAIT)
    assert not caller.is_alive()
    assert caller.raised == []
    assert run.state is RunState.STOPPED


def test_zero_sleep_with_backoff_stays_zero_for_many_retries(
    recorder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """retry_sleep_time=0 with a backoff: the delay is 0 however many retries (no inf)."""
    monkeypatch.setenv("WOFLO_LOG_LEVEL", "error")  # 1100 retry lines otherwise
    calls: list[int] = []
    run = task(runner=SequentialTaskRun, retries=1100, retry_backoff=2.0)(failing(calls))()
    assert run.attempts == 1101
    assert set(recorder.delays) == {0.0}


# ---- a third-party plugin replaces the policy; blocking the built-in disables it ------------


class NeverRetry:
    @hookimpl
    def woflo_retry_delay(self, attempt: int) -> bool:
        return False


class RetryOnceAtOnce:
    def __init__(self) -> None:
        self.asked: list[int] = []

    @hookimpl
    def woflo_retry_delay(self, attempt: int) -> float | None:
        self.asked.append(attempt)
        return 0.0 if attempt == 1 else None


def test_a_plugin_answering_false_wins_over_retries(plugins: PluginSystem) -> None:
    plugins.add(NeverRetry(), name="never-retry")
    calls: list[int] = []
    run = task(runner=SequentialTaskRun, retries=3)(failing(calls))()
    assert calls == [1]
    assert run.state is RunState.FAILED


def test_a_plugin_can_retry_what_the_builtin_would_not(plugins: PluginSystem) -> None:
    policy = RetryOnceAtOnce()
    plugins.add(policy, name="retry-once")
    calls: list[int] = []
    run = task(runner=SequentialTaskRun, retries=0)(failing(calls))()
    assert calls == [1, 2]
    assert policy.asked == [1, 2]
    assert run.attempts == 2


def test_a_plugin_without_an_opinion_leaves_the_builtin_in_charge(
    plugins: PluginSystem,
) -> None:
    class NoOpinion:
        @hookimpl
        def woflo_retry_delay(self) -> None:
            return None

    plugins.add(NoOpinion(), name="no-opinion")
    calls: list[int] = []
    assert task(runner=SequentialTaskRun, retries=2)(failing(calls))().attempts == 3


POLICY_MODULE = """
from woflo import hookimpl

asked = []

@hookimpl
def woflo_retry_delay(run, attempt, outcome):
    asked.append(attempt)
    return False
"""


def test_an_installed_distribution_replaces_the_policy(
    make_distribution: Callable[..., Any],
) -> None:
    make_distribution(
        "woflo-test-policy",
        entry_points={"test-policy": "woflo_test_policy_mod"},
        modules={"woflo_test_policy_mod": POLICY_MODULE},
    )
    system = PluginSystem.from_entry_points()
    assert "test-policy" in system.infos
    set_plugin_system(system)  # the autouse fixture restores the previous one
    calls: list[int] = []
    run = task(runner=SequentialTaskRun, retries=3)(failing(calls))()
    assert calls == [1]
    assert run.state is RunState.FAILED
    import woflo_test_policy_mod  # type: ignore[import-not-found]

    assert woflo_test_policy_mod.asked == [1]


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_blocking_the_builtin_disables_retries(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if how == "argument":
        system = PluginSystem.from_entry_points(disabled=["retries"])
    else:
        monkeypatch.setenv("WOFLO_DISABLE_PLUGINS", "retries")
        system = PluginSystem.from_entry_points()
    rec = HookRecorder()
    system.add(rec, name="recorder")
    set_plugin_system(system)
    with pytest.raises(TypeError, match="retries"):
        task(runner=SequentialTaskRun, retries=2)
    with pytest.raises(TypeError, match="retry_sleep_time"):
        task(runner=SequentialTaskRun, retry_sleep_time=1)
    calls: list[int] = []
    run = task(runner=SequentialTaskRun)(failing(calls))()
    assert calls == [1]
    assert run.state is RunState.FAILED
    assert rec.delays == []


# ---- sleeps never block; stop() during a sleep ends the run at once -------------------------


def test_a_long_retry_sleep_does_not_block_the_caller_nor_other_runs(
    signals: Signals, runs: list[BaseTaskRun[Any]]
) -> None:
    @task(retries=1, retry_sleep_time=30)
    def fails_then_waits() -> None:
        raise ConnectionError("try again later")

    @task
    def add(a: int, b: int) -> int:
        return a + b

    start = time.monotonic()
    run = fails_then_waits()
    returned = time.monotonic() - start
    runs.append(run)
    assert returned < 5  # the call never waits for the attempt, let alone the sleep
    assert signals.retry_scheduled.wait(WAIT)
    assert run.state is RunState.AWAITING_RETRY
    assert run.attempts == 1
    assert run.is_running()
    assert [type(e) for e in run.errors] == [ConnectionError]

    others = [add(i, 1) for i in range(3)]
    runs.extend(others)
    assert [o.get_result(timeout=WAIT) for o in others] == [1, 2, 3]
    assert run.state is RunState.AWAITING_RETRY  # still sleeping, nobody was blocked

    stopped_at = time.monotonic()
    assert run.stop() is True
    assert run.wait(1)
    assert time.monotonic() - stopped_at < 1
    assert run.state is RunState.STOPPED
    assert run.attempts == 1
    assert isinstance(run.exception(), TaskStopped)
    assert run.stop() is False


def test_stop_during_a_sequential_sleep_returns_the_call_promptly(signals: Signals) -> None:
    calls: list[int] = []
    fn = task(runner=SequentialTaskRun, retries=1, retry_sleep_time=30)(failing(calls))
    caller = InThread(fn)
    try:
        assert signals.retry_scheduled.wait(WAIT)
        [run] = signals.scheduled_runs
        assert run.state is RunState.AWAITING_RETRY
        assert run.attempts == 1
        stopped_at = time.monotonic()
        assert run.stop() is True
    finally:
        caller.join(WAIT)
    assert not caller.is_alive()
    assert time.monotonic() - stopped_at < 2
    assert caller.raised == []
    assert caller.returned == [run]
    assert run.state is RunState.STOPPED
    assert run.attempts == 1
    assert calls == [1]  # no attempt after the stop


# ---- every retry is logged ------------------------------------------------------------------


def test_every_retry_is_logged_with_attempt_error_and_delay(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WOFLO_LOG_FORMAT", "json")
    calls: list[int] = []
    task(runner=SequentialTaskRun, retries=2, retry_sleep_time=[0.01, 0.02], name="flaky")(
        failing(calls)
    )()
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line[:1] == "{"]
    retrying = [line for line in lines if line.get("event") == "task.retrying"]
    assert [(r["attempt"], r["delay"]) for r in retrying] == [(1, 0.01), (2, 0.02)]
    for r, n in zip(retrying, (1, 2), strict=True):
        assert "Boom" in r["error"]
        assert f"attempt {n}" in r["error"]
        assert r["task"] == "flaky"
        assert r["level"] == "warning"


# ---- stop() is never retried; SystemExit from a worker only when asked ----------------------


def test_stop_while_running_is_never_retried(
    plugins: PluginSystem, signals: Signals, tmp_path: Any, runs: list[BaseTaskRun[Any]]
) -> None:
    asked: list[Outcome] = []

    class Watch:
        @hookimpl(tryfirst=True)
        def woflo_retry_delay(self, outcome: Outcome) -> None:
            asked.append(outcome)

    plugins.add(Watch(), name="watch")
    release = tmp_path / "release"

    @task(retries=3, retry_on=BaseException)
    def held(path: Any) -> None:
        deadline = time.monotonic() + 30
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.005)

    run = held(release)
    runs.append(run)
    try:
        assert signals.started.wait(WAIT)
        assert run.stop() is True
    finally:
        release.touch()
    assert run.wait(1)
    assert run.state is RunState.STOPPED
    assert run.attempts == 1
    assert asked == []  # the policy is not even asked
    assert not signals.retry_scheduled.is_set()


def test_system_exit_from_a_worker_is_not_retried_by_default(
    recorder: Any, runs: list[BaseTaskRun[Any]]
) -> None:
    def exits() -> None:
        import sys

        sys.exit(3)

    run = ended_in_a_worker(runs, exits, retries=2)
    assert run.attempts == 1
    assert run.state is RunState.FAILED
    error = run.exception()
    assert isinstance(error, SystemExit)
    assert error.code == 3
    assert recorder.delays == []


def test_system_exit_from_a_worker_is_retried_when_named(runs: list[BaseTaskRun[Any]]) -> None:
    def exits() -> None:
        import sys

        sys.exit(3)

    run = ended_in_a_worker(runs, exits, retries=2, retry_on=SystemExit)
    assert run.attempts == 3
    assert [type(e) for e in run.errors] == [SystemExit] * 3
    assert run.exception() is run.errors[-1]


def test_keyboard_interrupt_from_a_worker_is_never_retried(
    recorder: Any, runs: list[BaseTaskRun[Any]]
) -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    run = ended_in_a_worker(runs, interrupted, retries=2, retry_on=BaseException)
    assert run.attempts == 1
    assert isinstance(run.exception(), KeyboardInterrupt)
    assert recorder.delays == []
