"""``SequentialTaskRun``: in the calling thread, blocking, stoppable from another thread."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from woflo import RunState, hookimpl, task
from woflo.errors import TaskStopped
from woflo.plugins import PluginSystem
from woflo.runners import SequentialTaskRun


def test_is_registered_and_importable_from_woflo_runners(plugins: PluginSystem) -> None:
    import woflo.runners
    from woflo_plugins import sequential

    assert woflo.runners.SequentialTaskRun is sequential.SequentialTaskRun
    assert plugins.runners["sequential"] is SequentialTaskRun
    assert SequentialTaskRun.name == "sequential"
    assert SequentialTaskRun.blocking


def test_runs_in_the_calling_thread_and_returns_a_finished_run() -> None:
    seen: list[int] = []

    @task(runner=SequentialTaskRun)
    def where() -> int:
        seen.append(threading.get_ident())
        return 5

    run = where()
    assert seen == [threading.get_ident()]
    assert not run.is_running()
    assert run.state is RunState.COMPLETED
    assert run.wait(timeout=0) is True
    assert run.get_result() == 5


def test_a_run_that_fails_is_finished_too() -> None:
    run = task(runner=SequentialTaskRun)(lambda: 1 / 0)()
    assert not run.is_running()
    assert run.state is RunState.FAILED
    with pytest.raises(ZeroDivisionError):
        run.get_result()


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_propagates_and_is_not_retried(
    recorder: Any, interrupt: type[BaseException]
) -> None:
    calls: list[int] = []

    @task(runner=SequentialTaskRun, retries=3, retry_sleep_time=0)
    def interrupted() -> None:
        calls.append(1)
        raise interrupt()

    with pytest.raises(interrupt):
        interrupted()
    assert calls == [1]
    [run] = recorder.runs
    assert run.state.is_final
    assert not run.is_running()
    assert run.attempts == 1
    assert recorder.hooks == ["run_created", "attempt_started", "attempt_finished", "run_finished"]
    assert isinstance(run.exception(), interrupt)


def test_stop_during_the_retry_sleep_ends_the_run_promptly(
    plugins: PluginSystem, recorder: Any
) -> None:
    sleeping = threading.Event()

    class Signal:
        @hookimpl
        def woflo_retry_scheduled(self) -> None:
            sleeping.set()

    plugins.add(Signal(), name="signal")
    calls: list[int] = []

    @task(runner=SequentialTaskRun, retries=5, retry_sleep_time=60)
    def fail() -> None:
        calls.append(1)
        raise ValueError("try again later")

    stopped: list[bool] = []

    def stopper() -> None:
        assert sleeping.wait(10)
        stopped.append(recorder.runs[0].stop())

    thread = threading.Thread(target=stopper)
    thread.start()
    start = time.monotonic()
    run = fail()  # would sleep 60 s before the second attempt
    elapsed = time.monotonic() - start
    thread.join(10)
    assert stopped == [True]
    assert elapsed < 10
    assert calls == [1]
    assert run.state is RunState.STOPPED
    assert run.attempts == 1
    with pytest.raises(TaskStopped):
        run.get_result()
    assert [type(e) for e in run.errors] == [ValueError]
    assert recorder.calls == [
        ("run_created", 0, "pending"),
        ("attempt_started", 1, "running"),
        ("attempt_finished", 1, "running"),
        ("retry_scheduled", 1, "awaiting_retry"),
        ("run_finished", 1, "stopped"),
    ]


def test_stop_during_an_attempt_discards_its_result(plugins: PluginSystem, recorder: Any) -> None:
    started = threading.Event()
    release = threading.Event()

    @task(runner=SequentialTaskRun, retries=2)
    def slow() -> str:
        started.set()
        assert release.wait(10)
        return "late"

    def stopper() -> None:
        assert started.wait(10)
        recorder.runs[0].stop()
        release.set()

    thread = threading.Thread(target=stopper)
    thread.start()
    run = slow()
    thread.join(10)
    assert run.state is RunState.STOPPED
    with pytest.raises(TaskStopped):
        run.get_result()
    assert recorder.hooks == ["run_created", "attempt_started", "attempt_finished", "run_finished"]
