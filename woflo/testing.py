"""Test helpers for plugin and runner authors; pytest loads this module as a plugin.

Installing woflo registers it with pytest (entry-point group ``pytest11``), so these fixtures are
available in any test suite:

``woflo_plugin_system``
    A fresh :class:`~woflo.plugins.PluginSystem` loaded from the ``woflo`` entry points (as in
    production), installed as the process-wide one for the test only. ``.add(plugin)``
    registers a plugin for this test.
``woflo_recorder``
    A :class:`HookRecorder` registered on it: every lifecycle hook call, in order.

And the **runner conformance suite**: every behaviour of :class:`woflo.BaseTaskRun` a user relies
on, checked against any runner with one line in a test file::

    from woflo.testing import runner_conformance

    TestThreadTaskRun = runner_conformance(ThreadTaskRun)

Task bodies run wherever the runner puts them (another process, another machine with a shared
file system): they coordinate with the tests through files in ``tmp_path``.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

from woflo import BaseTaskRun, Outcome, RunState, hookimpl, task
from woflo.errors import TaskStopped, TaskTimeout, WaitTimeout
from woflo.plugins import PluginSystem, set_plugin_system

__all__ = ["HookRecorder", "RunnerConformance", "runner_conformance"]

WAIT = 30.0
"""Seconds any wait in the suite may take before the test fails instead of hanging."""


# ---- fixtures ------------------------------------------------------------------------------


@dataclass
class HookRecorder:
    """A plugin recording lifecycle hook calls as ``(hook, attempt, state)`` in ``calls``.

    ``attempt`` is the attempt number for attempt hooks, ``run.attempts`` for run hooks;
    ``events[hook]`` is a :class:`threading.Event` set the first time ``hook`` fires.
    """

    calls: list[tuple[str, int, str]] = field(default_factory=list)
    runs: list[BaseTaskRun[Any]] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    events: dict[str, threading.Event] = field(
        default_factory=lambda: {
            name: threading.Event()
            for name in (
                "run_created",
                "attempt_started",
                "attempt_finished",
                "retry_scheduled",
                "run_finished",
            )
        }
    )

    def _add(self, hook: str, run: BaseTaskRun[Any], attempt: int | None = None) -> None:
        self.calls.append((hook, run.attempts if attempt is None else attempt, run.state.value))
        self.events[hook].set()

    @hookimpl
    def woflo_run_created(self, run: BaseTaskRun[Any]) -> None:
        self.runs.append(run)
        self._add("run_created", run)

    @hookimpl
    def woflo_attempt_started(self, run: BaseTaskRun[Any], attempt: int) -> None:
        self._add("attempt_started", run, attempt)

    @hookimpl
    def woflo_attempt_finished(self, run: BaseTaskRun[Any], attempt: int, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        self._add("attempt_finished", run, attempt)

    @hookimpl
    def woflo_retry_scheduled(
        self, run: BaseTaskRun[Any], attempt: int, outcome: Outcome, delay: float
    ) -> None:
        self.delays.append(delay)
        self._add("retry_scheduled", run, attempt)

    @hookimpl
    def woflo_run_finished(self, run: BaseTaskRun[Any]) -> None:
        self._add("run_finished", run)

    @property
    def hooks(self) -> list[str]:
        """Only the hook names, in order."""
        return [hook for hook, _, _ in self.calls]


@pytest.fixture
def woflo_plugin_system() -> Iterator[PluginSystem]:
    """A fresh plugin system from the entry points, process-wide for this test only."""
    system = PluginSystem.from_entry_points()
    previous = set_plugin_system(system)
    try:
        yield system
    finally:
        set_plugin_system(previous)


@pytest.fixture
def woflo_recorder(woflo_plugin_system: PluginSystem) -> HookRecorder:
    """A :class:`HookRecorder` registered on this test's plugin system."""
    recorder = HookRecorder()
    woflo_plugin_system.add(recorder, name="woflo-recorder")
    return recorder


# ---- task bodies (module level, so any runner can import them where it executes) ------------


def add(a: int, b: int) -> int:
    """Return ``a + b``."""
    return a + b


def raise_value_error(message: str) -> None:
    """Raise ``ValueError(message)``."""
    raise ValueError(message)


def fail_times(counter: str, failures: int) -> int:
    """Fail the first ``failures`` calls (counted in the file ``counter``), then return the
    count."""
    path = Path(counter)
    count = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(count))
    if count <= failures:
        raise ConnectionError(f"failure {count}")
    return count


def block(started: str, release: str, limit: float = WAIT) -> str:
    """Create the file ``started``, then wait until ``release`` exists (at most ``limit`` s)."""
    Path(started).touch()
    deadline = time.monotonic() + limit
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.005)
    return "released"


def _wait_for(path: Path, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not path.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


# ---- the conformance suite ---------------------------------------------------------------------


class RunnerConformance:
    """The behaviour every runner must have; subclass and set ``runner``, or use
    :func:`runner_conformance`."""

    runner: ClassVar[type[BaseTaskRun[Any]] | str]

    @pytest.fixture(autouse=True)
    def _conformance_setup(self, woflo_recorder: HookRecorder, tmp_path: Path) -> Iterator[None]:
        self.recorder = woflo_recorder
        self.tmp = tmp_path
        self.release = tmp_path / "release"
        self._threads: list[threading.Thread] = []
        try:
            yield
        finally:
            self.release.touch()  # whatever still blocks (runners that cannot kill) ends
            for thread in self._threads:
                thread.join(WAIT)

    def _task(self, fn: Callable[..., Any], **options: Any) -> Any:
        return task(runner=self.runner, **options)(fn)

    def _start(self, t: Any, *args: Any) -> BaseTaskRun[Any]:
        """Call ``t``; for a blocking runner, from another thread, returning the run at once."""
        if not t.runner.blocking:
            run: BaseTaskRun[Any] = t(*args)
            return run
        created = self.recorder.events["run_created"]
        created.clear()
        seen = len(self.recorder.runs)
        thread = threading.Thread(target=t, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()
        assert created.wait(WAIT), "the run was not created"
        return self.recorder.runs[seen]

    def _blocking_run(self, **options: Any) -> BaseTaskRun[Any]:
        started = self.tmp / f"started-{len(self._threads)}-{time.monotonic_ns()}"
        run = self._start(self._task(block, **options), str(started), str(self.release))
        _wait_for(started, "the task to start")
        return run

    # ---- results ---------------------------------------------------------------------------

    def test_returns_the_value(self) -> None:
        run = self._task(add)(2, 3)
        assert run.get_result(timeout=WAIT) == 5
        assert run.state is RunState.COMPLETED
        assert run.attempts == 1
        assert run.exception() is None
        assert not run.is_running()
        assert run.wait(0)

    def test_reraises_the_task_exception_with_its_traceback(self) -> None:
        run = self._task(raise_value_error)("boom")
        with pytest.raises(ValueError, match="boom") as info:
            run.get_result(timeout=WAIT)
        assert run.state is RunState.FAILED
        assert isinstance(run.exception(), ValueError)
        error = info.value
        text = str(error.__cause__) if error.__cause__ is not None else ""
        frames = [frame.f_code.co_name for frame, _ in traceback.walk_tb(error.__traceback__)]
        assert "raise_value_error" in text or "raise_value_error" in frames

    def test_retries_compose_with_the_runner(self) -> None:
        counter = self.tmp / "counter"
        run = self._task(fail_times, retries=2, retry_sleep_time=0.01)(str(counter), 2)
        assert run.get_result(timeout=WAIT) == 3
        assert run.attempts == 3
        assert [type(e) for e in run.errors] == [ConnectionError, ConnectionError]
        assert self.recorder.hooks == [
            "run_created",
            "attempt_started",
            "attempt_finished",
            "retry_scheduled",
            "attempt_started",
            "attempt_finished",
            "retry_scheduled",
            "attempt_started",
            "attempt_finished",
            "run_finished",
        ]

    def test_a_failed_run_fires_the_hooks_in_order(self) -> None:
        run = self._task(raise_value_error)("once")
        assert run.wait(WAIT)
        assert self.recorder.calls == [
            ("run_created", 0, "pending"),
            ("attempt_started", 1, "running"),
            ("attempt_finished", 1, "running"),
            ("run_finished", 1, "failed"),
        ]

    # ---- waiting ---------------------------------------------------------------------------

    def test_waiting_with_a_timeout(self) -> None:
        run = self._blocking_run()
        assert run.is_running()
        assert run.state in (RunState.PENDING, RunState.RUNNING)
        assert run.wait(0.05) is False
        with pytest.raises(WaitTimeout):
            run.get_result(timeout=0.05)
        with pytest.raises(WaitTimeout):
            run.exception(timeout=0.05)
        self.release.touch()
        assert run.get_result(timeout=WAIT) == "released"
        assert not run.is_running()

    # ---- stopping --------------------------------------------------------------------------

    def test_stop_a_running_run(self) -> None:
        run = self._blocking_run()
        assert run.stop() is True
        assert run.state is RunState.STOPPED
        assert not run.is_running()
        assert run.wait(0)
        with pytest.raises(TaskStopped):
            run.get_result(timeout=WAIT)
        assert run.stop() is False  # idempotent
        assert run.state is RunState.STOPPED
        assert self.recorder.hooks[-1] == "run_finished"
        assert self.recorder.hooks.count("run_finished") == 1

    def test_stop_while_awaiting_retry(self) -> None:
        run = self._start(
            self._task(raise_value_error, retries=1, retry_sleep_time=WAIT * 10), "again"
        )
        assert self.recorder.events["retry_scheduled"].wait(WAIT)
        assert run.state.value == "awaiting_retry"
        assert run.attempts == 1
        assert run.stop() is True
        assert run.wait(WAIT)
        assert run.state is RunState.STOPPED
        assert run.attempts == 1
        assert isinstance(run.exception(), TaskStopped)

    def test_stop_a_finished_run(self) -> None:
        run = self._task(add)(1, 1)
        assert run.get_result(timeout=WAIT) == 2
        assert run.stop() is False
        assert run.state is RunState.COMPLETED
        assert run.get_result() == 2

    # ---- time limits -----------------------------------------------------------------------

    def test_an_attempt_past_its_timeout_ends_timed_out(self) -> None:
        started = self.tmp / "started-timeout"
        run = self._start(self._task(block, timeout=0.2), str(started), str(self.release), 1.0)
        assert run.wait(WAIT)
        assert run.state is RunState.TIMED_OUT
        assert isinstance(run.exception(), TaskTimeout)


def runner_conformance(runner: type[BaseTaskRun[Any]] | str) -> type[RunnerConformance]:
    """A test class running the conformance suite against ``runner`` (class or name)."""
    label = runner if isinstance(runner, str) else runner.__name__
    return type(f"TestConformance_{label}", (RunnerConformance,), {"runner": runner})
