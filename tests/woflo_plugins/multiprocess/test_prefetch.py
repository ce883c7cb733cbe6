"""Calls queued on a busy worker (``configure(prefetch=...)``): while many short calls wait,
each busy worker is sent the next ones with its current call, to start the moment it is free.
What a user relies on: a queued call that is stopped never runs, one queued behind a call that
turns out long runs on another worker, and a worker's death loses none of its queued calls."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests._helpers import TIMEOUT
from tests.woflo_plugins.multiprocess._support import Gate, add, held, step, stepped
from woflo import RunState, hookimpl, task
from woflo.errors import OptionTypeError, OptionValueError, TaskCrashed
from woflo.plugins import PluginSystem


def _short_lately(gate: Gate, the_task: Any = stepped) -> None:
    """Run ``the_task`` quickly a few times: its calls are then short, and may be queued."""
    for run in [the_task(gate.path, f"warm{i}", False) for i in range(20)]:
        run.get_result(timeout=TIMEOUT)


def _queue_behind_holder(
    configure: Callable[..., None],
    gate: Gate,
    tmp_path: Path,
    runs: list[Any],
    run_of: dict[str, Any] | None = None,
    the_task: Any = stepped,
) -> tuple[Any, Any]:
    """On a pool of one worker, ``the_task`` short lately: ``holder`` (held at ``gate``)
    starts on it, with ``queued`` (quick) waiting behind it; both were sent when the call
    before them ended."""
    configure(max_workers=1)
    _short_lately(gate, the_task)
    first_gate = Gate(tmp_path / "first")
    first_gate.path.mkdir()
    first = held(first_gate.path, "first")
    runs.append(first)
    first_gate.pid("first")
    holder = the_task(gate.path, "holder", True)
    queued = the_task(gate.path, "queued", False)
    runs += [holder, queued]
    if run_of is not None:
        run_of.update(holder=holder, queued=queued)
    first_gate.release()
    first.get_result(timeout=TIMEOUT)
    gate.pid("holder")
    return holder, queued


def test_a_queued_call_that_is_stopped_never_runs(
    configure: Callable[..., None],
    gate: Gate,
    tmp_path: Path,
    runs: list[Any],
    plugins: PluginSystem,
) -> None:
    """Stopped the moment the call ahead of it starts (it is queued then, sent with it)."""
    stopped: list[bool] = []

    class StopQueued:
        @hookimpl
        def woflo_attempt_started(self, run: Any) -> None:
            if run.args[1] == "holder":
                stopped.append(run_of["queued"].stop())

    run_of: dict[str, Any] = {}
    plugins.add(StopQueued(), name="stop-queued")
    stepping = task(step)  # (a task made after the plugin was added)
    holder, queued = _queue_behind_holder(configure, gate, tmp_path, runs, run_of, stepping)
    assert stopped == [True]
    assert queued.state is RunState.STOPPED
    assert not queued.is_running()
    assert holder.is_running()
    gate.release()
    pid = holder.get_result(timeout=TIMEOUT)
    # the one worker goes on with the next call, and never ran the stopped one
    assert stepping(gate.path, "after", False).get_result(timeout=TIMEOUT) == pid
    assert not (gate.path / "queued.ran").exists()
    assert queued.state is RunState.STOPPED


def test_a_call_queued_behind_one_that_runs_long_runs_on_another_worker(
    configure: Callable[..., None], gate: Gate, tmp_path: Path, runs: list[Any]
) -> None:
    holder, queued = _queue_behind_holder(configure, gate, tmp_path, runs)
    configure(max_workers=2)  # room for a second worker: nothing waits in the pool's queue
    # it does not wait for the holder, which is released only after
    pid = queued.get_result(timeout=TIMEOUT)
    assert pid != gate.pid("holder")
    assert holder.is_running()
    gate.release()
    assert holder.get_result(timeout=TIMEOUT) == gate.pid("holder")


def test_a_worker_that_dies_hands_its_queued_calls_to_another(
    configure: Callable[..., None], gate: Gate, tmp_path: Path, runs: list[Any]
) -> None:
    holder, queued = _queue_behind_holder(configure, gate, tmp_path, runs)
    dead = gate.pid("holder")
    os.kill(dead, signal.SIGKILL)
    with pytest.raises(TaskCrashed):
        holder.get_result(timeout=TIMEOUT)
    pid = queued.get_result(timeout=TIMEOUT)
    assert pid != dead
    assert queued.attempts == 1


def test_a_burst_with_stops_ends_each_run_once_with_its_own_value(
    configure: Callable[..., None], gate: Gate, runs: list[Any]
) -> None:
    configure(max_workers=2, prefetch=8)
    _short_lately(gate)
    burst = [stepped(gate.path, f"b{i}", False) for i in range(600)]
    runs += burst
    stopped = {i for i in range(0, 600, 7) if burst[i].stop()}
    for i, run in enumerate(burst):
        assert run.wait(TIMEOUT)
        if i in stopped:
            assert run.state is RunState.STOPPED
        else:
            assert run.state is RunState.COMPLETED, (i, run.exception())
            assert (gate.path / f"b{i}.ran").read_text() == str(run.get_result())
    assert stopped, "no call was stopped before it ended: the test proves nothing"


def test_prefetch_off_still_runs_every_call(configure: Callable[..., None], gate: Gate) -> None:
    configure(max_workers=2, prefetch=0)
    _short_lately(gate)
    burst = [stepped(gate.path, f"b{i}", False) for i in range(200)]
    assert len({run.get_result(timeout=TIMEOUT) for run in burst}) <= 2


@pytest.mark.parametrize(
    ("value", "error"), [(-1, OptionValueError), ("4", OptionTypeError), (1.5, OptionTypeError)]
)
def test_a_bad_prefetch_is_refused_naming_it(
    configure: Callable[..., None], value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match="prefetch"):
        configure(prefetch=value)


@pytest.mark.slow
def test_a_caller_holding_the_gil_in_a_burst_starts_no_worker_beyond_the_eager_ones(
    configure: Callable[..., None],
) -> None:
    # While the caller's thread holds the GIL (a long C call, the garbage collector), the
    # watcher reads nothing: no finish for 50 ms is then its own pause, not stuck workers.
    # The pool grew by four workers for such a pause (this failed one run in two before).
    import woflo_plugins.multiprocess as mp

    configure()
    eager = (os.cpu_count() or 2) + 2
    assert add(1, 2).get_result(timeout=TIMEOUT) == 3
    interval = sys.getswitchinterval()
    for _ in range(12):
        runs = [add(i, 1) for i in range(2_000)]
        sys.setswitchinterval(5.0)
        try:
            end = time.perf_counter() + 0.3
            while time.perf_counter() < end:  # (holds the GIL: the watcher cannot run)
                pass
        finally:
            sys.setswitchinterval(interval)
        assert [run.get_result(timeout=TIMEOUT) for run in runs] == list(range(1, 2_001))
    status = mp.status()
    assert status is not None
    assert len(status.workers) <= eager
