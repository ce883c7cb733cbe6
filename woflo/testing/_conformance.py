"""The runner conformance suite: every behaviour of :class:`woflo.BaseTaskRun` a user relies on.

Each test drives the runner through the public API only, through the probed runner of
:mod:`._harness`. Cases that need an option a plugin contributes (``retries``, ``timeout``) skip,
saying so, when that plugin is absent. The cases of runs feeding runs are
:mod:`._composition`'s.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import traceback
from typing import Any

import pytest

from woflo import BaseTaskRun, RunState
from woflo.errors import TaskStopped, TaskTimeout, WaitTimeout
from woflo.plugins import get_plugin_system
from woflo.testing._bodies import (
    add,
    block,
    echo,
    execution_probe,
    fail_times,
    raise_value_error,
    where_am_i,
)
from woflo.testing._composition import CompositionCases
from woflo.testing._harness import (
    NO_THREADS_AT_EXIT,
    THREAD_REFUSED,
    WAIT,
    Harness,
    require_option,
    wait_for_file,
)

__all__ = ["RunnerConformance", "runner_conformance"]


class RunnerConformance(CompositionCases, Harness):
    """The behaviour every runner must have; subclass and set ``runner``, or use
    :func:`runner_conformance`."""

    # ---- results ---------------------------------------------------------------------------

    def test_returns_the_value(self) -> None:
        run = self.task_for(add)(2, 3)
        assert run.get_result(timeout=WAIT) == 5
        assert run.state is RunState.COMPLETED
        assert run.attempts == 1
        assert run.exception() is None
        assert not run.is_running()
        assert run.wait(0)
        self.assert_reports_sound()

    def test_passes_every_argument(self) -> None:
        run = self.task_for(echo)(1, "two", three=3, four=[4, 4])
        assert run.get_result(timeout=WAIT) == ((1, "two"), {"three": 3, "four": [4, 4]})

    def test_reraises_the_task_exception_with_its_traceback(self) -> None:
        run = self.task_for(raise_value_error)("boom")
        with pytest.raises(ValueError, match="boom") as info:
            run.get_result(timeout=WAIT)
        assert run.state is RunState.FAILED
        assert isinstance(run.exception(), ValueError)
        error = info.value
        text = str(error.__cause__) if error.__cause__ is not None else ""
        frames = [frame.f_code.co_name for frame, _ in traceback.walk_tb(error.__traceback__)]
        assert "raise_value_error" in text or "raise_value_error" in frames
        self.assert_reports_sound()

    def test_the_execution_wrappers_run_where_the_attempt_executes(self) -> None:
        run = self.task_for(where_am_i, plugins=[execution_probe])()
        seen = run.get_result(timeout=WAIT)
        assert seen["probe"] == (run.run_id, 1), "the task's own execution wrapper did not run"
        if "logging" in get_plugin_system().infos:
            context = {k: seen["structlog"].get(k) for k in ("task", "run_id", "attempt")}
            assert context == {"task": "where_am_i", "run_id": run.run_id, "attempt": 1}

    # ---- attempts, reported once each ----------------------------------------------------

    def test_retries_compose_with_the_runner(self) -> None:
        counter = self.tmp / "counter"
        run = self.task_for(fail_times, retries=2, retry_sleep_time=0.01)(str(counter), 2)
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
        assert len(self.reports.finished) == 3
        self.assert_reports_sound()

    def test_a_failed_run_fires_the_hooks_in_order(self) -> None:
        run = self.task_for(raise_value_error)("once")
        assert run.wait(WAIT)
        assert self.recorder.calls == [
            ("run_created", 0, "pending"),
            ("attempt_started", 1, "running"),
            ("attempt_finished", 1, "running"),
            ("run_finished", 1, "failed"),
        ]
        self.assert_reports_sound()

    def test_each_attempt_is_reported_once_with_its_duration(self) -> None:
        assert self.task_for(add)(1, 2).get_result(timeout=WAIT) == 3
        [outcome] = self.recorder.outcomes
        assert outcome.duration > 0, f"the attempt was reported with duration {outcome.duration}"
        self.assert_reports_sound(grace=0.2)
        assert len(self.reports.finished) == 1

    # ---- waiting ---------------------------------------------------------------------------

    def test_waiting_with_a_timeout(self) -> None:
        run = self.blocking_run()
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
        run = self.blocking_run()
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

    def test_stop_a_pending_attempt(self) -> None:
        """Stopped after the core handed the attempt over, before the runner began it: the
        run ends stopped at once, and the runner's late start of it changes nothing."""
        self.reports.hold.set()
        run = self.start(self.task_for(add), 1, 2, in_thread=True)
        deadline = time.monotonic() + WAIT
        while not self.reports.held:
            assert time.monotonic() < deadline, "the attempt was never handed to the runner"
            time.sleep(0.002)
        assert run.state.value == "pending"
        assert run.stop() is True
        assert run.state.value == "stopped"
        self.reports.hold.clear()
        self.reports.let_go.set()
        after = self.task_for(add)(2, 2)  # the runner goes on working after the stopped attempt
        assert after.get_result(timeout=WAIT) == 4
        assert run.state is RunState.STOPPED
        assert isinstance(run.exception(), TaskStopped)
        assert [hook for hook, _, _ in self.recorder.calls[:2]] == ["run_created", "run_finished"]

    def test_stop_while_awaiting_retry(self) -> None:
        run = self.start(
            self.task_for(raise_value_error, retries=1, retry_sleep_time=WAIT * 10), "again"
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
        run = self.task_for(add)(1, 1)
        assert run.get_result(timeout=WAIT) == 2
        assert run.stop() is False
        assert run.state is RunState.COMPLETED
        assert run.get_result() == 2

    # ---- time limits -----------------------------------------------------------------------

    def test_an_attempt_past_its_timeout_ends_timed_out(self) -> None:
        started = self.tmp / "started-timeout"
        run = self.start(self.task_for(block, timeout=0.2), str(started), str(self.release), 1.0)
        assert run.wait(WAIT)
        assert run.state is RunState.TIMED_OUT
        assert isinstance(run.exception(), TaskTimeout)

    # ---- the program around the runs -------------------------------------------------------

    def test_the_wait_at_exit_runs_a_retry_that_falls_due(self) -> None:
        """A program that ends while a run waits to retry: the retry runs, then it exits 0.

        (On CPython 3.12.0/3.12.1, where no thread can start at exit, a runner that needs one
        for the retry passes if the run fails saying so instead: a clear error, no hang.)"""
        require_option("retries")
        counter, out = self.tmp / "counter", self.tmp / "out"
        script, env = self.script(
            f"""
            t = task(runner=RUNNER, retries=1, retry_sleep_time=0.3)(fail_once_then_record)
            t({str(counter)!r}, {str(out)!r})
            """
        )
        with (self.tmp / "log").open("wb") as log:  # a file, not a pipe a stray worker keeps
            code = subprocess.run(
                [sys.executable, str(script)], env=env, stdout=log, stderr=log, timeout=WAIT * 2
            ).returncode
        output = (self.tmp / "log").read_text(errors="replace")
        assert code == 0, output
        if not out.exists() and NO_THREADS_AT_EXIT and THREAD_REFUSED in output:
            return  # the retry could not start, and the run failed saying why: no hang
        assert out.exists(), f"the retry did not run before the program exited:\n{output}"
        assert out.read_text() == "2"

    def test_ctrl_c_ends_the_program_promptly(self) -> None:
        """Ctrl-C while a run executes: the program ends as interrupted, within seconds."""
        started = self.tmp / "started"
        script, env = self.script(
            f"""
            t = task(runner=RUNNER)(block)
            t({str(started)!r}, {str(self.release)!r})
            """
        )
        with (self.tmp / "log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, str(script)], env=env, stdout=log, stderr=log
            )
            try:
                wait_for_file(started, "the task to start in the script")
                process.send_signal(signal.SIGINT)
                code = process.wait(timeout=10)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        assert code in (-signal.SIGINT, 130), (self.tmp / "log").read_text(errors="replace")


def runner_conformance(runner: type[BaseTaskRun[Any]] | str) -> type[RunnerConformance]:
    """A test class running the conformance suite against ``runner`` (class or name)."""
    label = runner if isinstance(runner, str) else runner.__name__
    return type(f"TestConformance_{label}", (RunnerConformance,), {"runner": runner})
