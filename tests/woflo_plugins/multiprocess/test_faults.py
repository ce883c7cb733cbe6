"""Faults: bad input, crashed workers, stop() in every state, and retries across workers.

After every fault, the runner must keep working: most tests end with a good call.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests._helpers import TIMEOUT, read_pid, wait_for, wait_gone
from tests.woflo_plugins.multiprocess._support import (
    FrozenError,
    Gate,
    TwoArgError,
    UnpicklesWith,
    _die,
    _exit_now,
    _explode,
    add,
    crashes_once,
    exit_hard,
    exits_cleanly,
    fails_then_waits_long,
    fails_twice,
    getpid,
    held,
    held_ignoring_sigterm,
    held_one_at_a_time,
    held_with_grandchild,
    identity,
    ignore,
    log_then_die,
    one_running_one_pending,
    pool_counts,
    raise_frozen,
    raise_two_arg,
    raised_as_its_own_type,
    returns_lock,
    returns_unloadable,
    segfault,
    sys_exit,
)
from woflo import RunState, task
from woflo.errors import ArgumentNotPicklable, RemoteTraceback, TaskCrashed, TaskStopped


def assert_still_works() -> None:
    assert add(20, 22).get_result(timeout=TIMEOUT) == 42


# ---- bad input ------------------------------------------------------------------------------


def test_unpicklable_positional_argument_fails_at_the_call() -> None:
    with pytest.raises(ArgumentNotPicklable, match=r"argument #1 \(positional\) of task 'add'"):
        add(1, threading.Lock())
    assert issubclass(ArgumentNotPicklable, TypeError)
    assert_still_works()


def test_unpicklable_keyword_argument_fails_at_the_call() -> None:
    with pytest.raises(ArgumentNotPicklable, match=r"argument 'b' of task 'add'") as info:
        add(1, b=threading.Lock())
    assert "lock" in str(info.value)
    assert_still_works()


def test_many_bad_calls_then_many_good_ones() -> None:
    lock = threading.Lock()
    for _ in range(100):
        with pytest.raises(ArgumentNotPicklable):
            identity(lock)
    runs = [add(i, 1) for i in range(100)]
    assert [run.get_result(timeout=TIMEOUT) for run in runs] == list(range(1, 101))


def test_unpicklable_task_fails_at_the_call() -> None:
    lock = threading.Lock()

    @task
    def uses_lock() -> bool:
        return lock.locked()

    with pytest.raises(ArgumentNotPicklable, match="task 'test_unpicklable_task_fails_at_the"):
        uses_lock()
    assert_still_works()


def test_unpicklable_result_fails_that_run_only() -> None:
    run = returns_lock()
    with pytest.raises(TypeError, match="pickle") as info:
        run.get_result(timeout=TIMEOUT)
    assert run.state is RunState.FAILED
    assert any("pickling the result of task 'returns_lock'" in n for n in info.value.__notes__)
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert_still_works()


def test_exception_with_a_custom_init_arrives_as_its_own_type() -> None:
    error = raised_as_its_own_type(raise_two_arg(1, 2), TwoArgError, "raise TwoArgError(a, b)")
    assert (error.a, error.b) == (1, 2)
    assert str(error) == "a=1, b=2"


def test_frozen_dataclass_exception_arrives_as_its_own_type() -> None:
    run = raise_frozen(7)
    error = raised_as_its_own_type(run, FrozenError, 'raise FrozenError(code, "cold")')
    assert (error.code, error.reason) == (7, "cold")
    assert run.state is RunState.FAILED


def test_argument_that_fails_to_unpickle_in_the_worker_fails_that_run() -> None:
    run = identity(UnpicklesWith(_explode, "no such thing here"))
    with pytest.raises(ValueError, match="no such thing here") as info:
        run.get_result(timeout=TIMEOUT)
    assert run.state is RunState.FAILED
    assert any("unpickling the arguments of task 'identity'" in n for n in info.value.__notes__)
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "_explode" in info.value.__cause__.tb
    assert identity("fine").get_result(timeout=TIMEOUT) == "fine"


def test_argument_that_exits_while_unpickled_is_a_task_failure() -> None:
    run = ignore(UnpicklesWith(_exit_now, 4))
    with pytest.raises(SystemExit) as info:
        run.get_result(timeout=TIMEOUT)
    assert info.value.code == 4
    assert run.state is RunState.FAILED
    assert_still_works()


def test_argument_that_kills_the_worker_while_unpickled_crashes_that_run() -> None:
    run = ignore(UnpicklesWith(_die, 5))
    with pytest.raises(TaskCrashed, match="exited with code 5") as info:
        run.get_result(timeout=TIMEOUT)
    assert info.value.exitcode == 5
    assert run.state is RunState.CRASHED
    assert_still_works()


@pytest.mark.parametrize(
    ("fn", "arg", "error"), [(_explode, "bad result", ValueError), (_exit_now, 6, SystemExit)]
)
def test_result_that_fails_to_unpickle_in_the_caller_fails_that_run(
    fn: Any, arg: Any, error: type[BaseException]
) -> None:
    run = returns_unloadable(fn, arg)
    with pytest.raises(error) as info:
        run.get_result(timeout=TIMEOUT)
    assert run.state is RunState.FAILED
    assert any("unpickling the result" in n for n in info.value.__notes__)
    assert_still_works()  # the watcher thread survived


# ---- crashes ------------------------------------------------------------------------------


def test_os_exit_crashes_the_run_with_its_exit_code(gate: Gate) -> None:
    run = exit_hard(gate.path, 3)
    with pytest.raises(TaskCrashed, match="exited with code 3") as info:
        run.get_result(timeout=TIMEOUT)
    pid = read_pid(gate.path / "exit.pid")
    assert run.state is RunState.CRASHED
    assert (info.value.exitcode, info.value.pid) == (3, pid)
    assert f"pid {pid}" in str(info.value)
    assert_still_works()


def test_segfault_crashes_the_run_naming_the_signal() -> None:
    run = segfault()
    with pytest.raises(TaskCrashed, match="SIGSEGV") as info:
        run.get_result(timeout=TIMEOUT)
    assert info.value.exitcode == -signal.SIGSEGV
    assert run.state is RunState.CRASHED
    assert_still_works()


def test_worker_killed_from_outside_crashes_only_its_run(gate: Gate, runs: list[Any]) -> None:
    victim, bystander = held(gate.path, "victim"), held(gate.path, "bystander")
    runs += [victim, bystander]
    pid = gate.pid("victim")
    other = gate.pid("bystander")
    assert pid != other
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(TaskCrashed, match="SIGKILL") as info:
        victim.get_result(timeout=TIMEOUT)
    assert (info.value.exitcode, info.value.pid) == (-signal.SIGKILL, pid)
    assert victim.state is RunState.CRASHED
    assert bystander.is_running()
    assert_still_works()
    gate.release()
    assert bystander.get_result(timeout=TIMEOUT) == other
    assert bystander.state is RunState.COMPLETED


def test_log_written_just_before_a_crash_reaches_the_parent() -> None:
    name = "woflo.tests.multiprocess.crash"
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        run = log_then_die(name, 9)
        error = run.exception(timeout=TIMEOUT)
    finally:
        logger.removeHandler(handler)
    assert isinstance(error, TaskCrashed)
    assert [r.getMessage() for r in records] == [f"last words from pid {error.pid}"]
    assert records[0].run_id == run.run_id  # type: ignore[attr-defined]


def test_sys_exit_is_a_task_failure_not_a_crash(tmp_path: Path) -> None:
    run = sys_exit(1)
    with pytest.raises(SystemExit) as info:
        run.get_result(timeout=TIMEOUT)
    assert info.value.code == 1
    assert run.state is RunState.FAILED
    # and it is not retried, even when retries are asked for
    retried = exits_cleanly(tmp_path)
    with pytest.raises(SystemExit):
        retried.get_result(timeout=TIMEOUT)
    assert retried.attempts == 1
    assert [p.name for p in tmp_path.glob("attempt-*")] == ["attempt-1"]
    assert_still_works()


# ---- stop() in every state ------------------------------------------------------------------


def test_stop_a_pending_run(gate: Gate, runs: list[Any]) -> None:
    first, second = one_running_one_pending(gate, runs)
    assert second.state is RunState.PENDING
    assert second.stop() is True
    assert second.state is RunState.STOPPED
    assert not second.is_running()
    with pytest.raises(TaskStopped):
        second.get_result(timeout=0)
    assert second.attempts == 0
    gate.release()
    first.get_result(timeout=TIMEOUT)
    third = held_one_at_a_time(gate.path, "third")  # the slot is free, and nothing took it
    assert third.get_result(timeout=TIMEOUT) > 0
    assert not gate.started("second")


def test_stop_a_running_run_kills_its_worker(gate: Gate, runs: list[Any]) -> None:
    run, other = held(gate.path, "run"), held(gate.path, "other")
    runs += [run, other]
    pid = gate.pid("run")
    gate.pid("other")
    wait_for(lambda: run.state is RunState.RUNNING, what="the run to be running")
    start = time.monotonic()
    assert run.stop() is True
    assert time.monotonic() - start < 0.5
    assert run.state is RunState.STOPPED
    assert not run.is_running()
    with pytest.raises(TaskStopped, match="was stopped"):
        run.get_result(timeout=0)
    wait_gone([pid], timeout=2)
    assert other.is_running()  # stop() kills only that run's worker
    assert run.stop() is False  # twice: nothing more to do
    assert run.state is RunState.STOPPED
    assert_still_works()  # the stopped worker is replaced
    gate.release()
    assert other.get_result(timeout=TIMEOUT) > 0


def test_stop_right_after_the_start_kills_a_fresh_worker(
    configure: Any, gate: Gate, runs: list[Any]
) -> None:
    """A run is running as soon as its job is sent to a new worker, which may not have set up
    its process group yet: stop() must kill it at once all the same (no waiting for SIGKILL)."""
    configure(kill_grace=30)
    for round_ in range(5):
        batch = [held(gate.path, f"round{round_}-{i}") for i in range(4)]
        runs += batch
        wait_for(lambda b=batch: all(r.state is RunState.RUNNING for r in b), what="running")
        for run in batch:
            assert run.stop() is True
        wait_for(lambda: pool_counts()["busy"] == 0, timeout=2, what="the workers to die")


def test_stop_a_run_awaiting_retry(tmp_path: Path, runs: list[Any]) -> None:
    run = fails_then_waits_long(tmp_path)
    runs.append(run)
    wait_for(lambda: run.state is RunState.AWAITING_RETRY, what="the retry to be scheduled")
    start = time.monotonic()
    assert run.stop() is True
    assert time.monotonic() - start < 0.5
    assert run.state is RunState.STOPPED
    with pytest.raises(TaskStopped):
        run.get_result(timeout=0)
    assert run.attempts == 1
    assert len(run.errors) == 1
    assert isinstance(run.errors[0], ConnectionError)
    assert run.stop() is False


def test_stop_a_finished_run() -> None:
    run = add(1, 1)
    assert run.get_result(timeout=TIMEOUT) == 2
    assert run.stop() is False
    assert run.stop() is False
    assert run.state is RunState.COMPLETED
    assert run.get_result() == 2


def test_stop_escalates_to_sigkill_for_a_task_ignoring_sigterm(
    configure: Any, gate: Gate, runs: list[Any]
) -> None:
    configure(kill_grace=0.2)
    run = held_ignoring_sigterm(gate.path, "stubborn")
    runs.append(run)
    pid = gate.pid("stubborn")
    start = time.monotonic()
    assert run.stop() is True
    assert time.monotonic() - start < 0.5
    assert run.state is RunState.STOPPED
    wait_gone([pid], timeout=3)
    assert_still_works()


def test_stop_kills_the_tasks_own_children(gate: Gate, runs: list[Any]) -> None:
    run = held_with_grandchild(gate.path, "parent")
    runs.append(run)
    worker = gate.pid("parent")
    grandchild = read_pid(gate.path / "parent.child")
    assert run.stop() is True
    wait_gone([worker, grandchild], timeout=3)


# ---- retries compose with the runner --------------------------------------------------------


def test_retries_run_until_an_attempt_succeeds(tmp_path: Path) -> None:
    run = fails_twice(tmp_path)
    assert run.get_result(timeout=TIMEOUT) == 3
    assert run.attempts == 3
    assert [type(e) for e in run.errors] == [ConnectionError, ConnectionError]
    assert run.state is RunState.COMPLETED


def test_a_crashed_attempt_is_retried_in_a_fresh_worker(tmp_path: Path) -> None:
    run = crashes_once(tmp_path)
    pid = run.get_result(timeout=TIMEOUT)
    crashed_pid = int((tmp_path / "attempt-1").read_text())
    assert pid != crashed_pid
    assert run.attempts == 2
    [error] = run.errors
    assert isinstance(error, TaskCrashed)
    assert (error.pid, error.exitcode) == (crashed_pid, 3)
    assert run.state is RunState.COMPLETED
    wait_gone([crashed_pid], timeout=2)
    assert getpid().get_result(timeout=TIMEOUT) != crashed_pid
