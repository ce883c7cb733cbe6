"""``BaseTaskRun``: states, waiting, stopping, the lifecycle hook order, failing hooks.

The sequential runner runs most of these; two small runners defined here cover what it cannot:
``Parked`` starts attempts and never finishes them (a run that is still going), ``Threaded``
finishes each attempt from a thread of its own (a non-blocking runner, retried by the core).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pluggy
import pytest

from woflo import (
    BaseTaskRun,
    Outcome,
    RunState,
    TaskCall,
    WaitTimeout,
    hookimpl,
    hookspecs,
    task,
)
from woflo.errors import TaskStopped, WofloError
from woflo.plugins import PluginSystem
from woflo.runners import SequentialTaskRun
from woflo.testing import HookRecorder, add


class Boom(Exception):
    """The task's own exception type."""


def flaky(failures: int, then: Any) -> Callable[[], Any]:
    """A function raising ``Boom(n)`` on its first ``failures`` calls (``n``: the call's
    number), then returning ``then``."""
    calls: list[int] = []

    def flaky() -> Any:
        calls.append(1)
        if len(calls) <= failures:
            raise Boom(len(calls))
        return then

    return flaky


def fail() -> None:
    """Raise ``Boom("x")``."""
    raise Boom("x")


class Parked(BaseTaskRun[Any]):
    """Starts each attempt and never finishes it; ``kill_attempt`` records the kill."""

    name = "parked"

    def start_attempt(self, call: TaskCall) -> None:
        self.killed: list[int] = []
        self.report_started(call)

    def kill_attempt(self, call: TaskCall) -> None:
        self.killed.append(call.attempt)


class Threaded(BaseTaskRun[Any]):
    """Executes each attempt in a new thread and reports from there."""

    name = "threaded"

    def start_attempt(self, call: TaskCall) -> None:
        def work() -> None:
            self.report_started(call)
            self.report_finished(call, self.execute(call))

        threading.Thread(target=work, daemon=True).start()


@pytest.fixture
def parked_run() -> Any:
    """A non-blocking run that stays running until the test (or teardown) stops it."""
    run = task(runner=Parked)(lambda: 1)()
    yield run
    run.stop()


# ---- results and errors ---------------------------------------------------------------------


def test_completed_run() -> None:
    run = task(runner=SequentialTaskRun)(lambda x: x * 2)(21)
    assert run.state is RunState.COMPLETED
    assert run.state.is_final
    assert not run.is_running()
    assert run.get_result() == 42
    assert run.get_result(timeout=0) == 42
    assert run.exception() is None
    assert run.attempts == 1
    assert run.errors == ()
    assert run.wait() is True
    assert run.wait(timeout=0) is True
    assert run.duration >= 0
    assert len(run.run_id) == 16
    assert "completed" in repr(run)


def test_a_run_says_when_it_was_called_and_its_attempt_started_and_how_it_ended(
    parked_run: BaseTaskRun[Any],
) -> None:
    before = time.time()
    run = task(runner=SequentialTaskRun, retries=1, retry_sleep_time=0)(flaky(1, "done"))()
    assert before <= run.created_at <= run.attempt_started_at <= time.time()  # type: ignore[operator]
    assert run.outcome is not None
    assert (run.outcome.value, run.outcome.error) == ("done", None)
    assert run.outcome.duration >= 0
    failed = task(runner=SequentialTaskRun)(flaky(1, None))()
    assert failed.outcome is not None
    assert failed.outcome.error is failed.exception()
    assert parked_run.outcome is None  # (still going: never waits, never raises)
    assert parked_run.attempt_started_at is not None
    waiting = task(runner=Parked)(lambda value: value)(parked_run)  # (pending: no attempt yet)
    assert (waiting.attempt_started_at, waiting.outcome) == (None, None)


def test_failed_run_reraises_the_tasks_own_exception() -> None:
    @task(runner=SequentialTaskRun)
    def fail() -> None:
        raise Boom("bad input")

    run = fail()
    assert run.state is RunState.FAILED
    with pytest.raises(Boom, match="bad input") as info:
        run.get_result()
    assert info.value is run.exception()
    assert run.errors == (info.value,)
    assert run.attempts == 1
    assert not isinstance(info.value, WofloError)  # never wrapped


def test_every_run_has_its_own_id_and_task() -> None:
    t = task(runner=SequentialTaskRun)(lambda: None)
    a, b = t(), t()
    assert a.run_id != b.run_id
    assert a.task is t
    assert b.task is t


def test_run_states_are_documented_and_final_ones_marked() -> None:
    assert {s.value for s in RunState} == {
        "pending",
        "running",
        "awaiting_retry",
        "completed",
        "failed",
        "crashed",
        "timed_out",
        "stopped",
        "upstream_failed",
    }
    assert {s for s in RunState if s.is_final} == {
        RunState.COMPLETED,
        RunState.FAILED,
        RunState.CRASHED,
        RunState.TIMED_OUT,
        RunState.STOPPED,
        RunState.UPSTREAM_FAILED,
    }
    assert str(RunState.AWAITING_RETRY) == "awaiting_retry"


# ---- waiting with a timeout, stopping -------------------------------------------------------


def test_waiting_on_an_unfinished_run_times_out(parked_run: BaseTaskRun[Any]) -> None:
    run = parked_run
    assert run.is_running()
    assert run.state is RunState.RUNNING
    assert run.attempts == 1
    assert run.wait(timeout=0.01) is False
    with pytest.raises(WaitTimeout, match=r"still running after 0.01 s") as info:
        run.get_result(timeout=0.01)
    assert isinstance(info.value, TimeoutError)  # `except TimeoutError` catches it too
    with pytest.raises(WaitTimeout):
        run.exception(timeout=0)
    assert run.is_running()  # the run goes on


def test_stop_ends_a_running_run(recorder: HookRecorder, parked_run: Any) -> None:
    run = parked_run
    assert run.stop() is True
    assert run.state is RunState.STOPPED
    assert not run.is_running()
    assert run.killed == [1]
    with pytest.raises(TaskStopped, match=run.run_id):
        run.get_result(timeout=0)
    assert isinstance(run.exception(), TaskStopped)
    assert run.stop() is False  # idempotent
    assert run.stop() is False
    assert recorder.calls == [
        ("run_created", 0, "pending"),
        ("attempt_started", 1, "running"),
        ("attempt_finished", 1, "stopped"),
        ("run_finished", 1, "stopped"),
    ]
    assert isinstance(recorder.outcomes[0].error, TaskStopped)


def test_stop_of_a_final_run_returns_false(recorder: HookRecorder) -> None:
    run = task(runner=SequentialTaskRun)(lambda: 1)()
    assert run.stop() is False
    assert run.state is RunState.COMPLETED
    assert run.get_result() == 1
    assert recorder.hooks.count("run_finished") == 1


def test_stop_from_another_thread_wakes_a_waiter(parked_run: BaseTaskRun[Any]) -> None:
    waiting = threading.Event()

    def stop_when_waiting() -> None:
        waiting.wait(5)
        parked_run.stop()

    stopper = threading.Thread(target=stop_when_waiting)
    stopper.start()
    waiting.set()
    with pytest.raises(TaskStopped):
        parked_run.get_result(timeout=5)
    stopper.join(5)
    assert parked_run.state is RunState.STOPPED


def test_a_non_blocking_runner_is_retried_by_the_core(recorder: HookRecorder) -> None:
    run = task(runner=Threaded, retries=2, retry_sleep_time=0.01)(flaky(2, then="ok"))()
    assert run.get_result(timeout=10) == "ok"
    assert run.wait(timeout=10)
    assert run.attempts == 3
    assert [str(e) for e in run.errors] == ["1", "2"]
    assert recorder.hooks == [
        "run_created",
        *["attempt_started", "attempt_finished", "retry_scheduled"] * 2,
        "attempt_started",
        "attempt_finished",
        "run_finished",
    ]


def test_a_runner_that_cannot_start_an_attempt_fails_the_run() -> None:
    class Broken(BaseTaskRun[Any]):
        name = "broken"
        blocking = True

        def start_attempt(self, call: TaskCall) -> None:
            raise OSError("no worker")

    run = task(runner=Broken)(lambda: 1)()
    assert run.state is RunState.FAILED
    with pytest.raises(OSError, match="no worker"):
        run.get_result()


# ---- the lifecycle hook order ---------------------------------------------------------------


def hook_calls(attempts: int, final: str) -> list[tuple[str, int, str]]:
    """The ``recorder.calls`` of a run of ``attempts`` attempts, each but the last one retried,
    that ends in the state ``final``."""
    calls = [("run_created", 0, "pending")]
    for attempt in range(1, attempts + 1):
        calls += [("attempt_started", attempt, "running"), ("attempt_finished", attempt, "running")]
        if attempt < attempts:
            calls.append(("retry_scheduled", attempt, "awaiting_retry"))
    calls.append(("run_finished", attempts, final))
    return calls


def test_hook_order_of_a_success(recorder: HookRecorder) -> None:
    run = task(runner=SequentialTaskRun)(lambda: 1)()
    assert recorder.runs == [run]
    assert recorder.calls == hook_calls(attempts=1, final="completed")
    assert recorder.outcomes[0].ok
    assert recorder.outcomes[0].value == 1
    assert recorder.outcomes[0].duration >= 0


def test_hook_order_of_a_failure(recorder: HookRecorder) -> None:
    task(runner=SequentialTaskRun)(fail)()
    assert recorder.calls == hook_calls(attempts=1, final="failed")
    assert isinstance(recorder.outcomes[0].error, Boom)
    assert not recorder.outcomes[0].ok


def test_hook_order_of_a_retried_success(recorder: HookRecorder) -> None:
    run = task(runner=SequentialTaskRun, retries=3, retry_sleep_time=0)(flaky(2, then=3))()
    assert run.get_result() == 3
    assert recorder.calls == hook_calls(attempts=3, final="completed")
    assert recorder.delays == [0.0, 0.0]


def test_hook_order_when_retries_run_out(recorder: HookRecorder) -> None:
    task(runner=SequentialTaskRun, retries=1)(fail)()
    assert recorder.calls == hook_calls(attempts=2, final="failed")


def test_per_task_plugins_see_only_their_tasks_runs() -> None:
    mine = HookRecorder()
    with_plugin = task(runner=SequentialTaskRun, plugins=[mine])(lambda: 1)
    without = task(runner=SequentialTaskRun)(lambda: 2)
    without()
    assert mine.calls == []
    with_plugin()
    assert mine.hooks == ["run_created", "attempt_started", "attempt_finished", "run_finished"]


def test_hook_implementations_take_any_subset_of_arguments_in_any_order(
    plugins: PluginSystem,
) -> None:
    """Like pluggy: an implementation names the arguments it wants, in any order; one
    registered after runs already fired the hooks is called from then on."""
    seen: list[tuple[Any, ...]] = []

    class Picky:
        @hookimpl
        def woflo_attempt_finished(self, outcome: Outcome, attempt: int) -> None:
            seen.append(("finished", outcome.value, attempt))

        @hookimpl
        def woflo_retry_scheduled(self, delay: float, run: Any) -> None:
            seen.append(("retry", delay, run.task.name))

    class Late:
        @hookimpl
        def woflo_attempt_finished(self, attempt: int) -> None:
            seen.append(("late", attempt))

    work = task(runner=SequentialTaskRun, retries=1, retry_sleep_time=0)(flaky(1, then="done"))
    plugins.add(Picky(), name="picky")
    work()
    assert seen == [("finished", None, 1), ("retry", 0.0, work.name), ("finished", "done", 2)]
    seen.clear()
    plugins.add(Late(), name="late")
    task(runner=SequentialTaskRun, retries=1, retry_sleep_time=0)(flaky(1, then="done"))()
    assert ("late", 1) in seen
    assert ("late", 2) in seen
    assert len(seen) == 5


# ---- a failing hook implementation ----------------------------------------------------------


class Faulty:
    """Raises in every lifecycle hook."""

    @hookimpl
    def woflo_run_created(self) -> None:
        raise RuntimeError("created hook broke")

    @hookimpl
    def woflo_attempt_started(self, attempt: int) -> None:
        raise RuntimeError(f"started hook broke on {attempt}")

    @hookimpl
    def woflo_attempt_finished(self) -> None:
        raise RuntimeError("finished hook broke")

    @hookimpl
    def woflo_retry_scheduled(self) -> None:
        raise RuntimeError("retry hook broke")

    @hookimpl
    def woflo_run_finished(self) -> None:
        raise RuntimeError("run_finished hook broke")


@pytest.mark.parametrize("faulty_first", [True, False], ids=["before-recorder", "after-recorder"])
def test_a_failing_hook_does_not_corrupt_the_run(
    plugins: PluginSystem,
    caplog: pytest.LogCaptureFixture,
    faulty_first: bool,
) -> None:
    # pluggy calls the most recently registered first: cover the faulty one on either side
    recorder = HookRecorder()
    pair: list[tuple[object, str]] = [(Faulty(), "faulty"), (recorder, "recorder")]
    for plugin, name in pair if not faulty_first else reversed(pair):
        plugins.add(plugin, name=name)
    with caplog.at_level(logging.ERROR, logger="woflo.plugins"):
        run = task(runner=SequentialTaskRun, retries=1)(flaky(1, then="done"))()
    assert run.state is RunState.COMPLETED
    assert run.get_result() == "done"
    assert not run.is_running()
    assert run.attempts == 2
    # the other plugin saw everything
    assert recorder.calls[-1] == ("run_finished", 2, "completed")
    assert len(recorder.calls) == 7
    # every failure is kept on the run and logged on 'woflo.plugins'
    messages = [str(e) for e in run.hook_errors]
    assert messages == [
        "created hook broke",
        "started hook broke on 1",
        "finished hook broke",
        "retry hook broke",
        "started hook broke on 2",
        "finished hook broke",
        "run_finished hook broke",
    ]
    records = [r for r in caplog.records if r.name == "woflo.plugins"]
    assert len(records) == 7
    assert all(r.levelno == logging.ERROR for r in records)
    assert "woflo_run_created of plugin 'faulty'" in records[0].getMessage()
    assert run.run_id in records[0].getMessage()
    assert records[0].exc_info is not None
    assert records[0].exc_info[1] is run.hook_errors[0]


def test_a_failing_decision_hook_counts_as_no_retry(
    plugins: PluginSystem, caplog: pytest.LogCaptureFixture
) -> None:
    class BadPolicy:
        @hookimpl
        def woflo_retry_delay(self) -> float:
            raise RuntimeError("policy broke")

    plugins.add(BadPolicy(), name="bad-policy")

    with caplog.at_level(logging.ERROR, logger="woflo.plugins"):
        run = task(runner=SequentialTaskRun, retries=3)(fail)()
    assert run.state is RunState.FAILED
    assert run.attempts == 1
    assert [str(e) for e in run.hook_errors] == ["policy broke"]
    assert "woflo_retry_delay" in caplog.records[0].getMessage()


def test_decisions_are_answered_in_pluggys_order_and_wrappers_see_the_answer(
    plugins: PluginSystem,
) -> None:
    """The first answer of a ``firstresult`` decision wins (``tryfirst`` first, then the most
    recently registered); a wrapper, when there is one, sees it and may change it."""
    asked: list[str] = []

    def policy(name: str, delay: float | None, **options: bool) -> object:
        class Policy:
            @hookimpl(**options)
            def woflo_retry_delay(self) -> float | None:
                asked.append(name)
                return delay

        return Policy()

    plugins.add(policy("early", 60.0), name="early")
    plugins.add(policy("silent", None, tryfirst=True), name="silent")
    plugins.add(policy("late", 0.0), name="late")
    run = task(runner=SequentialTaskRun, retries=1)(flaky(1, "done"))()
    assert (run.get_result(), run.attempts) == ("done", 2)
    assert asked == ["silent", "late"]  # (early's 60 s never asked)

    class NoRetry:
        @hookimpl(wrapper=True)
        def woflo_retry_delay(self) -> Any:
            answer = yield
            asked.append(f"wrapper saw {answer}")
            return None

    plugins.add(NoRetry(), name="no-retry")
    asked.clear()
    run = task(runner=SequentialTaskRun, retries=1)(flaky(1, "done"))()
    assert (run.state, run.attempts) == (RunState.FAILED, 1)
    assert asked == ["silent", "late", "wrapper saw 0.0"]


@pytest.mark.parametrize("answer", [-1, "soon", True, [1]])
def test_a_bad_retry_delay_is_reported_and_not_retried(
    plugins: PluginSystem, caplog: pytest.LogCaptureFixture, answer: object
) -> None:
    class Odd:
        @hookimpl
        def woflo_retry_delay(self) -> object:
            return answer

    plugins.add(Odd(), name="odd")

    with caplog.at_level(logging.ERROR, logger="woflo.plugins"):
        run = task(runner=SequentialTaskRun)(fail)()
    assert run.state is RunState.FAILED
    assert run.attempts == 1
    assert len(run.hook_errors) == 1
    assert "expected seconds >= 0" in str(run.hook_errors[0])


def on_a_plain_pluggy_manager(system: PluginSystem) -> PluginSystem:
    """The plugins of ``system`` on a plain ``pluggy.PluginManager`` (which counts nothing)."""
    pm = pluggy.PluginManager("woflo")
    pm.add_hookspecs(hookspecs)
    for name, plugin in system.pm.list_name_plugin():
        pm.register(plugin, name=name)
    return PluginSystem(pm)


@pytest.mark.parametrize("manager", ["woflo's", "pluggy's own"])
def test_a_plugin_registered_or_removed_between_calls_is_seen_at_the_next_call(
    plugins: PluginSystem, manager: str
) -> None:
    """woflo plans each hook's calls once per change to what is registered: a plugin
    registered, removed or blocked through the manager itself is called, or no longer called,
    from the next call of every family of hooks on (on a plain pluggy manager too)."""
    system = plugins if manager == "woflo's" else on_a_plain_pluggy_manager(plugins)
    seen: list[str] = []

    class Watch:
        @hookimpl
        def woflo_run_finished(self) -> None:
            seen.append("notified")

        @hookimpl
        def woflo_attempt_deadline(self) -> float:
            seen.append("asked")
            return 7.0

        @hookimpl(wrapper=True)
        def woflo_execute_attempt(self) -> Any:
            seen.append("wrapped")
            return (yield)

    run = task(runner=SequentialTaskRun)(add)(1, 2)  # (a finished run to call hooks with)
    call = TaskCall("add", run.run_id, 1, add, (1, 2))

    def use() -> tuple[float | None, object, list[str]]:
        seen.clear()
        system.hooks.run_finished(run)
        limit = system.hooks.attempt_deadline(run, 1)
        return limit, system.hooks.execute_attempt(call).value, list(seen)

    assert use() == (None, 3, [])
    watch = Watch()
    system.pm.register(watch, name="watch")
    assert use() == (7.0, 3, ["notified", "asked", "wrapped"])
    system.pm.unregister(watch)
    assert use() == (None, 3, [])
    system.pm.register(watch, name="watch")
    assert use() == (7.0, 3, ["notified", "asked", "wrapped"])
    system.pm.set_blocked("watch")
    assert use() == (None, 3, [])


def test_lifecycle_hooks_cannot_be_wrappers(plugins: PluginSystem) -> None:
    class Wrapping:
        @hookimpl(wrapper=True)
        def woflo_run_finished(self, run: BaseTaskRun[Any]) -> Any:
            return (yield)

    with pytest.raises(WofloError, match="lifecycle notification and cannot be a wrapper"):
        plugins.add(Wrapping(), name="wrapping")
    assert "wrapping" not in plugins.infos


def test_an_execution_wrapper_runs_around_every_attempt(plugins: PluginSystem) -> None:
    seen: list[tuple[str, int, object]] = []

    class Around:
        @hookimpl(wrapper=True)
        def woflo_execute_attempt(self, call: TaskCall) -> Any:
            seen.append(("before", call.attempt, call.task_name))
            outcome: Outcome = yield
            seen.append(("after", call.attempt, outcome.value))
            return outcome

    plugins.add(Around(), name="around")
    run = task(runner=SequentialTaskRun, name="t")(lambda: 7)()
    assert run.get_result() == 7
    assert seen == [("before", 1, "t"), ("after", 1, 7)]


def _wrappers(*kinds: str) -> list[object]:
    """Execution wrappers, registered in this order (so the last one is the outermost)."""

    def make(kind: str) -> object:
        class Wrapper:
            @hookimpl(wrapper=True)
            def woflo_execute_attempt(self, call: TaskCall) -> Any:
                if kind == "no yield":
                    return Outcome(value="never")
                if kind == "raise before":
                    raise Boom("before")
                if kind == "stop iteration before":
                    raise StopIteration
                try:
                    outcome: Outcome = yield
                except Boom:
                    if kind != "rescue":
                        raise
                    return Outcome(value="rescued")
                if kind == "add 1":
                    return Outcome(value=outcome.value + 1)
                if kind == "times 10":
                    return Outcome(value=outcome.value * 10)
                if kind == "raise after":
                    raise Boom("after")
                if kind == "second yield":
                    yield
                if kind == "second yield, close raises":
                    try:
                        yield
                    except GeneratorExit:
                        raise Boom("close") from None
                return outcome

        return Wrapper()

    return [make(kind) for kind in kinds]


def _fails() -> int:
    raise Boom("task")


@pytest.mark.parametrize(
    "kinds",
    [
        ("pass",),
        ("add 1", "times 10"),
        ("times 10", "add 1"),
        ("raise before", "rescue"),
        ("rescue", "raise before"),
        ("raise after", "pass", "rescue"),
        ("no yield", "rescue"),
        ("second yield", "pass"),
        ("second yield", "rescue"),
        ("second yield, close raises", "rescue"),
        ("stop iteration before", "pass"),
        ("rescue",),
    ],
)
@pytest.mark.parametrize("fn", [lambda: 7, _fails], ids=["returns", "raises"])
def test_execution_wrappers_answer_what_pluggys_call_answers(
    plugins: PluginSystem, kinds: tuple[str, ...], fn: Callable[[], Any]
) -> None:
    # woflo drives new-style wrappers itself (pluggy's machinery was most of their cost): the
    # outcome must be pluggy's for any stack of wrappers, whatever each one does
    for number, wrapper in enumerate(_wrappers(*kinds)):
        plugins.add(wrapper, name=f"wrapper-{number}")
    run = task(runner=SequentialTaskRun)(fn)()
    call = TaskCall("t", run.run_id, 1, fn)
    ours = run.execute(call)
    try:
        theirs = plugins.pm.hook.woflo_execute_attempt(call=call)
    except BaseException as exc:
        theirs = Outcome(error=exc)

    def seen(outcome: Outcome) -> tuple[object, ...]:
        error = outcome.error
        return outcome.value, type(error), str(error) if error is not None else None

    assert seen(ours) == seen(theirs)
    if kinds == ("add 1", "times 10") and fn is not _fails:
        assert ours.value == (7 + 1) * 10  # (registered last: the outermost, its answer last)


def test_hook_arguments_given_a_default_are_passed_as_pluggy_passes_them(
    plugins: PluginSystem,
) -> None:
    seen: list[object] = []

    class Defaults:
        @hookimpl(wrapper=True)
        def woflo_execute_attempt(self, call: TaskCall | None = None) -> Any:
            seen.append(call.task_name if call is not None else None)
            return (yield)

        @hookimpl
        def woflo_attempt_started(self, run: Any, attempt: int | None = None) -> None:
            seen.append(attempt)

        @hookimpl
        def woflo_retry_delay(self, run: Any = None) -> None:
            seen.append(run is not None)

    plugins.add(Defaults(), name="defaults")
    assert task(runner=SequentialTaskRun, name="t")(_fails)().state is RunState.FAILED
    assert seen == [1, "t", True]


def test_an_old_style_hookwrapper_around_the_attempt_still_works(plugins: PluginSystem) -> None:
    class OldStyle:
        @hookimpl(hookwrapper=True)
        def woflo_execute_attempt(self, call: TaskCall) -> Any:
            result = yield
            result.force_result(Outcome(value=result.get_result().value + 1))

    for number, wrapper in enumerate([*_wrappers("times 10"), OldStyle()]):
        plugins.add(wrapper, name=f"wrapper-{number}")
    assert task(runner=SequentialTaskRun)(lambda: 7)().get_result() == 71


def test_run_finished_fires_before_waiters_are_woken(plugins: PluginSystem) -> None:
    seen: list[tuple[bool, bool, str, object]] = []

    class Watch:
        @hookimpl
        def woflo_run_finished(self, run: BaseTaskRun[Any]) -> None:
            # the run is final, its error readable at once, but nobody is woken yet
            seen.append((run.is_running(), run.wait(0), run.state.value, run.exception()))

    plugins.add(Watch(), name="watch")
    run = task(runner=SequentialTaskRun)(lambda: 1)()
    assert seen == [(True, False, "completed", None)]
    assert not run.is_running()


def test_get_result_returns_once_the_run_is_final_as_is_running_says(
    plugins: PluginSystem,
) -> None:
    """The value is known before the run_finished hooks ran; a caller gets it only once they
    did (so is_running() is False after get_result()), unless it only waits for them past its
    timeout; a hook itself gets it at once."""
    from tests.woflo_plugins.multiprocess._support import add

    entered, release, got = threading.Event(), threading.Event(), threading.Event()
    seen_by_hook: list[Any] = []

    class Slow:
        @hookimpl
        def woflo_run_finished(self, run: Any) -> None:
            seen_by_hook.append(run.get_result())  # (on the thread ending it: no wait)
            entered.set()
            release.wait(30)

    plugins.add(Slow(), name="slow")
    run = task(name="add")(add.fn)(1, 2)  # (decorated now: with this plugin system)
    assert entered.wait(30)
    assert run.get_result(timeout=0.01) == 3  # (only hooks left at its timeout: the value)
    waiter = threading.Thread(target=lambda: (run.get_result(), got.set()))
    waiter.start()
    assert not got.wait(0.2)  # it waits for the hooks
    assert run.is_running()
    release.set()
    assert got.wait(30)
    waiter.join(30)
    assert not run.is_running()
    assert seen_by_hook == [3]
