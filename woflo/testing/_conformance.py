"""The runner conformance suite: every behaviour of :class:`woflo.BaseTaskRun` a user relies on.

Each test drives the runner through the public API only. The runner runs as a *probed*
subclass, which records what the runner reports for each attempt (never changing it), so the
suite also fails a runner that breaks the reporting contract: an attempt finished twice, a
finish without a start report, a zero duration, arguments dropped. Cases that need an option
a plugin contributes (``retries``, ``timeout``) skip, saying so, when that plugin is absent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from woflo import BaseTaskRun, Outcome, RunState, TaskCall, task
from woflo.errors import RunInterrupted, TaskStopped, TaskTimeout, WaitTimeout
from woflo.plugins import get_plugin_system
from woflo.testing._bodies import (
    WAIT,
    add,
    block,
    echo,
    execution_probe,
    fail_times,
    raise_value_error,
    where_am_i,
)

__all__ = ["RunnerConformance", "runner_conformance"]


class _Reports:
    """What a probed runner reported, per attempt (its :class:`~woflo.TaskCall`)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: list[TaskCall] = []  # by the runner, not by the core
        self.finished: list[tuple[TaskCall, Outcome, bool]] = []  # (call, outcome, started)
        self.held: list[TaskCall] = []
        self.hold = threading.Event()  # set: start_attempt waits for `let_go`
        self.let_go = threading.Event()

    def problems(self) -> list[str]:
        """Every breach of the reporting contract seen so far."""
        found = []
        with self.lock:
            finished = list(self.finished)
        seen: dict[int, int] = {}
        for call, outcome, started in finished:
            label = f"attempt {call.attempt} of run {call.run_id}"
            seen[id(call)] = seen.get(id(call), 0) + 1
            if seen[id(call)] == 2:
                found.append(f"{label} was reported finished twice")
            if not started:
                found.append(f"{label} was reported finished but never reported started")
            executed = outcome.error is None or not isinstance(outcome.error, RunInterrupted)
            if executed and not outcome.duration > 0:
                found.append(f"{label} was reported with a duration of {outcome.duration!r} s")
        return found


_probes: dict[type[BaseTaskRun[Any]], type[BaseTaskRun[Any]]] = {}
_reports = _Reports()


def _probed(runner: type[BaseTaskRun[Any]]) -> type[BaseTaskRun[Any]]:
    """``runner`` with its reports recorded in :data:`_reports` (behaviour unchanged)."""
    cls = _probes.get(runner)
    if cls is not None:
        return cls

    class Probed(runner):  # type: ignore[valid-type,misc]
        def start_attempt(self, call: TaskCall) -> None:
            reports = _reports
            if reports.hold.is_set():
                with reports.lock:
                    reports.held.append(call)
                reports.let_go.wait(WAIT)
            super().start_attempt(call)

        def report_started(self, call: TaskCall) -> None:
            with _reports.lock:
                _reports.started.append(call)
            super().report_started(call)

        def report_finished(
            self, call: TaskCall, outcome: Outcome, *, may_retry: bool = True
        ) -> None:
            with _reports.lock:
                started = any(c is call for c in _reports.started)
                _reports.finished.append((call, outcome, started))
            super().report_finished(call, outcome, may_retry=may_retry)

    Probed.__name__ = Probed.__qualname__ = f"Probed{runner.__name__}"
    _probes[runner] = Probed
    return Probed


_NO_THREADS_AT_EXIT = sys.implementation.name == "cpython" and sys.version_info[:3] in (
    (3, 12, 0),
    (3, 12, 1),
)
"""CPython 3.12.0 and 3.12.1 refuse to start a thread once the main thread has ended (fixed in
3.12.2), so a runner that needs a new thread for a retry cannot start it at exit there."""
_THREAD_REFUSED = "can't create new thread at interpreter shutdown"


def _wait_for(path: Path, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not path.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def _require_option(name: str) -> None:
    if name not in get_plugin_system().options:
        pytest.skip(
            f"needs the {name!r} task option, which no plugin registered here contributes "
            "(its plugin is not installed, or disabled by WOFLO_DISABLE_PLUGINS)"
        )


class RunnerConformance:
    """The behaviour every runner must have; subclass and set ``runner``, or use
    :func:`runner_conformance`."""

    runner: ClassVar[type[BaseTaskRun[Any]] | str]

    @pytest.fixture(autouse=True)
    def _conformance_setup(self, woflo_recorder: Any, tmp_path: Path) -> Iterator[None]:
        global _reports
        _reports = self.reports = _Reports()
        self.recorder = woflo_recorder
        self.tmp = tmp_path
        self.release = tmp_path / "release"
        self._threads: list[threading.Thread] = []
        try:
            yield
        finally:
            self.reports.let_go.set()
            self.release.touch()  # whatever still blocks (runners that cannot kill) ends
            for thread in self._threads:
                thread.join(WAIT)

    # ---- helpers -------------------------------------------------------------------------

    def _task(self, fn: Callable[..., Any], **options: Any) -> Any:
        for name in options:
            if name not in ("plugins", "name"):
                _require_option(name)
        t = task(runner=self.runner, **options)(fn)
        t.runner = _probed(t.runner)  # only here, in the caller: the task pickles unchanged
        return t

    def _start(self, t: Any, *args: Any, in_thread: bool = False) -> BaseTaskRun[Any]:
        """Call ``t``; for a blocking runner (or ``in_thread``), from another thread,
        returning the run at once."""
        if not t.runner.blocking and not in_thread:
            run: BaseTaskRun[Any] = t(*args)
            return run
        created = self.recorder.events["run_created"]
        created.clear()
        seen = len(self.recorder.runs)
        thread = threading.Thread(target=t, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()
        assert created.wait(WAIT), "the run was not created"
        created_run: BaseTaskRun[Any] = self.recorder.runs[seen]
        return created_run

    def _blocking_run(self, **options: Any) -> BaseTaskRun[Any]:
        started = self.tmp / f"started-{len(self._threads)}-{time.monotonic_ns()}"
        run = self._start(self._task(block, **options), str(started), str(self.release))
        _wait_for(started, "the task to start")
        return run

    def _assert_reports_sound(self, grace: float = 0.0) -> None:
        """No breach of the reporting contract so far; with ``grace``, also none in the next
        ``grace`` seconds (a second report of an attempt comes after the run has ended, and
        no event says that none will come)."""
        deadline = time.monotonic() + grace
        while not (problems := self.reports.problems()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not problems, f"{self.runner!r} broke the reporting contract: {problems}"

    def _script(self, body: str) -> tuple[Path, dict[str, str]]:
        """A script using this runner (guarded: some runners' workers import it), and an
        environment in which it finds what this test process finds."""
        runner = self.runner
        if isinstance(runner, str):
            lookup = repr(runner)
        else:
            module = sys.modules.get(runner.__module__)
            if module is None or getattr(module, runner.__qualname__, None) is not runner:
                pytest.skip(f"{runner!r} is not importable by name, so no script can use it")
            lookup = (
                f"getattr(importlib.import_module({runner.__module__!r}), {runner.__qualname__!r})"
            )
        script = self.tmp / "script.py"
        script.write_text(
            "import importlib, sys\n"
            "from woflo import task\n"
            "from woflo.testing import block, fail_once_then_record\n"
            f"RUNNER = {lookup}\n"
            'if __name__ == "__main__":\n' + textwrap.indent(textwrap.dedent(body), "    "),
            encoding="utf-8",
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        return script, env

    # ---- results ---------------------------------------------------------------------------

    def test_returns_the_value(self) -> None:
        run = self._task(add)(2, 3)
        assert run.get_result(timeout=WAIT) == 5
        assert run.state is RunState.COMPLETED
        assert run.attempts == 1
        assert run.exception() is None
        assert not run.is_running()
        assert run.wait(0)
        self._assert_reports_sound()

    def test_passes_every_argument(self) -> None:
        run = self._task(echo)(1, "two", three=3, four=[4, 4])
        assert run.get_result(timeout=WAIT) == ((1, "two"), {"three": 3, "four": [4, 4]})

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
        self._assert_reports_sound()

    def test_the_execution_wrappers_run_where_the_attempt_executes(self) -> None:
        run = self._task(where_am_i, plugins=[execution_probe])()
        seen = run.get_result(timeout=WAIT)
        assert seen["probe"] == (run.run_id, 1), "the task's own execution wrapper did not run"
        if "logging" in get_plugin_system().infos:
            context = {k: seen["structlog"].get(k) for k in ("task", "run_id", "attempt")}
            assert context == {"task": "where_am_i", "run_id": run.run_id, "attempt": 1}

    # ---- attempts, reported once each ----------------------------------------------------

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
        assert len(self.reports.finished) == 3
        self._assert_reports_sound()

    def test_a_failed_run_fires_the_hooks_in_order(self) -> None:
        run = self._task(raise_value_error)("once")
        assert run.wait(WAIT)
        assert self.recorder.calls == [
            ("run_created", 0, "pending"),
            ("attempt_started", 1, "running"),
            ("attempt_finished", 1, "running"),
            ("run_finished", 1, "failed"),
        ]
        self._assert_reports_sound()

    def test_each_attempt_is_reported_once_with_its_duration(self) -> None:
        assert self._task(add)(1, 2).get_result(timeout=WAIT) == 3
        [outcome] = self.recorder.outcomes
        assert outcome.duration > 0, f"the attempt was reported with duration {outcome.duration}"
        self._assert_reports_sound(grace=0.2)
        assert len(self.reports.finished) == 1

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

    def test_stop_a_pending_attempt(self) -> None:
        """Stopped after the core handed the attempt over, before the runner began it: the
        run ends stopped at once, and the runner's late start of it changes nothing."""
        self.reports.hold.set()
        run = self._start(self._task(add), 1, 2, in_thread=True)
        deadline = time.monotonic() + WAIT
        while not self.reports.held:
            assert time.monotonic() < deadline, "the attempt was never handed to the runner"
            time.sleep(0.002)
        assert run.state.value == "pending"
        assert run.stop() is True
        assert run.state.value == "stopped"
        self.reports.hold.clear()
        self.reports.let_go.set()
        after = self._task(add)(2, 2)  # the runner goes on working after the stopped attempt
        assert after.get_result(timeout=WAIT) == 4
        assert run.state is RunState.STOPPED
        assert isinstance(run.exception(), TaskStopped)
        assert [hook for hook, _, _ in self.recorder.calls[:2]] == ["run_created", "run_finished"]

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

    # ---- the program around the runs -------------------------------------------------------

    def test_the_wait_at_exit_runs_a_retry_that_falls_due(self) -> None:
        """A program that ends while a run waits to retry: the retry runs, then it exits 0.

        (On CPython 3.12.0/3.12.1, where no thread can start at exit, a runner that needs one
        for the retry passes if the run fails saying so instead: a clear error, no hang.)"""
        _require_option("retries")
        counter, out = self.tmp / "counter", self.tmp / "out"
        script, env = self._script(
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
        if not out.exists() and _NO_THREADS_AT_EXIT and _THREAD_REFUSED in output:
            return  # the retry could not start, and the run failed saying why: no hang
        assert out.exists(), f"the retry did not run before the program exited:\n{output}"
        assert out.read_text() == "2"

    def test_ctrl_c_ends_the_program_promptly(self) -> None:
        """Ctrl-C while a run executes: the program ends as interrupted, within seconds."""
        started = self.tmp / "started"
        script, env = self._script(
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
                _wait_for(started, "the task to start in the script")
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
