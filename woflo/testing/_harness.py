"""The harness of the runner conformance suite: the probed runner and the helpers its cases use.

The runner runs as a *probed* subclass, which records what the runner reports for each attempt
(never changing it), so the suite also fails a runner that breaks the reporting contract: an
attempt finished twice, a finish without a start report, a zero duration, arguments dropped.
"""

from __future__ import annotations

import os
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from woflo import BaseTaskRun, Outcome, TaskCall, task
from woflo.errors import RunInterrupted
from woflo.plugins import get_plugin_system
from woflo.testing._bodies import (
    WAIT,
    block,
)

__all__ = ["WAIT", "Harness", "require_option", "wait_for_file"]


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

        def report_started(self, call: TaskCall, **kwargs: Any) -> None:
            with _reports.lock:
                _reports.started.append(call)
            super().report_started(call, **kwargs)

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


NO_THREADS_AT_EXIT = sys.implementation.name == "cpython" and sys.version_info[:3] in (
    (3, 12, 0),
    (3, 12, 1),
)
"""CPython 3.12.0 and 3.12.1 refuse to start a thread once the main thread has ended (fixed in
3.12.2), so a runner that needs a new thread for a retry cannot start it at exit there."""
THREAD_REFUSED = "can't create new thread at interpreter shutdown"


def wait_for_file(path: Path, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not path.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def require_option(name: str) -> None:
    if name not in get_plugin_system().options:
        pytest.skip(
            f"needs the {name!r} task option, which no plugin registered here contributes "
            "(its plugin is not installed, or disabled by WOFLO_DISABLE_PLUGINS)"
        )


class Harness:
    """Set-up and helpers for the cases: ``runner`` is the runner under test."""

    runner: ClassVar[type[BaseTaskRun[Any]] | str]

    @pytest.fixture(autouse=True)
    def _conformance_setup(self, woflo_recorder: Any, tmp_path: Path) -> Iterator[None]:
        global _reports
        _reports = self.reports = _Reports()
        self.recorder = woflo_recorder
        self.tmp = tmp_path
        self.release = tmp_path / "release"
        self.threads: list[threading.Thread] = []
        try:
            yield
        finally:
            self.reports.let_go.set()
            self.release.touch()  # whatever still blocks (runners that cannot kill) ends
            for thread in self.threads:
                thread.join(WAIT)

    # ---- helpers -------------------------------------------------------------------------

    def task_for(self, fn: Callable[..., Any], **options: Any) -> Any:
        for name in options:
            if name not in ("plugins", "name"):
                require_option(name)
        t = task(runner=self.runner, **options)(fn)
        t.runner = _probed(t.runner)  # only here, in the caller: the task pickles unchanged
        return t

    def start(self, t: Any, *args: Any, in_thread: bool = False) -> BaseTaskRun[Any]:
        """Call ``t``; for a blocking runner (or ``in_thread``), from another thread,
        returning the run at once."""
        if not t.runner.blocking and not in_thread:
            run: BaseTaskRun[Any] = t(*args)
            return run
        created = self.recorder.events["run_created"]
        created.clear()
        seen = len(self.recorder.runs)
        thread = threading.Thread(target=t, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()
        assert created.wait(WAIT), "the run was not created"
        created_run: BaseTaskRun[Any] = self.recorder.runs[seen]
        return created_run

    def blocking_run(self, **options: Any) -> BaseTaskRun[Any]:
        started = self.tmp / f"started-{len(self.threads)}-{time.monotonic_ns()}"
        run = self.start(self.task_for(block, **options), str(started), str(self.release))
        wait_for_file(started, "the task to start")
        return run

    def assert_reports_sound(self, grace: float = 0.0) -> None:
        """No breach of the reporting contract so far; with ``grace``, also none in the next
        ``grace`` seconds (a second report of an attempt comes after the run has ended, and
        no event says that none will come)."""
        deadline = time.monotonic() + grace
        while not (problems := self.reports.problems()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not problems, f"{self.runner!r} broke the reporting contract: {problems}"

    def script(self, body: str) -> tuple[Path, dict[str, str]]:
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
