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

The suite runs the runner as a probed subclass that records its reports, so it also fails a
runner that reports an attempt twice, never reports a start, reports zero durations or drops
arguments; it covers stopping a pending attempt, the wait at interpreter exit with a retry due,
Ctrl-C, and the run context where the attempt executes. Task bodies run wherever the runner puts
them (another process, another machine with a shared file system): they coordinate with the
tests through files in ``tmp_path``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from woflo import BaseTaskRun, Outcome, hookimpl
from woflo.plugins import PluginSystem, set_plugin_system
from woflo.testing._bodies import (
    WAIT,
    ExecutionProbe,
    add,
    async_add,
    block,
    echo,
    execution_probe,
    fail_once_then_record,
    fail_times,
    raise_value_error,
    where_am_i,
)
from woflo.testing._conformance import RunnerConformance, runner_conformance

__all__ = [
    "WAIT",
    "ExecutionProbe",
    "HookRecorder",
    "RunnerConformance",
    "add",
    "async_add",
    "block",
    "echo",
    "execution_probe",
    "fail_once_then_record",
    "fail_times",
    "raise_value_error",
    "runner_conformance",
    "where_am_i",
]


# ---- fixtures ------------------------------------------------------------------------------


@dataclass
class HookRecorder:
    """A plugin recording lifecycle hook calls as ``(hook, attempt, state)`` in ``calls``.

    ``attempt`` is the attempt number for attempt hooks, ``run.attempts`` for run hooks;
    ``events[hook]`` is a :class:`threading.Event` set the first time ``hook`` fires.
    """

    calls: list[tuple[str, int, str]] = field(default_factory=list)
    runs: list[BaseTaskRun[Any]] = field(default_factory=list)
    order: list[tuple[str, BaseTaskRun[Any]]] = field(default_factory=list)
    """``(hook, run)`` of every call, in order."""
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
        self.order.append((hook, run))
        self.events[hook].set()

    def hooks_of(self, run: BaseTaskRun[Any]) -> list[str]:
        """The hooks that fired for ``run``, in order."""
        return [hook for hook, r in list(self.order) if r is run]

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
