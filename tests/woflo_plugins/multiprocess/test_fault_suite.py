"""The fault and bad-input suite: what the other multiprocess tests do not show yet.

Each of the suite's 21 cases is mapped to the tests showing it in ``docs/reliability.md``
(checked by the last test here). This file adds the missing ones: bad objects at every step of
a call (pickling, unpickling, freeing), 100 MB in flight when a run is stopped or its worker
dies, calls at interpreter exit, the user's multiprocessing start method, and a Hypothesis
model of random calls, stops, waits and kills.

woflo never uses multiprocessing's start methods (workers come from an exec'd zygote), but a
program may set one: the ``start_method`` fixture runs a script that does, once per method.

Every wait is bounded: a hang fails its test instead of blocking the suite.
"""

from __future__ import annotations

import collections
import gc
import itertools
import logging
import multiprocessing
import os
import re
import signal
import subprocess
import textwrap
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests._helpers import TIMEOUT, pid_alive, read_pid, wait_for, wait_gone
from tests.woflo_plugins.multiprocess._support import (
    DiesWhenFreed,
    Gate,
    KwOnlyError,
    PicklesWith,
    UnpicklesWith,
    _die,
    _exit_now,
    _explode,
    _segfault,
    add,
    dies_after_returning,
    exit_hard,
    fail,
    fails_then_waits_long,
    getpid,
    getpid_ignoring,
    held,
    held_one_at_a_time,
    held_then_retried,
    hold,
    hold_then_return,
    identity,
    ignore,
    large_result_after_a_log,
    process_state,
    raise_from_a_module_only_the_worker_has,
    raise_kw_only,
    raise_value_error,
    raise_with_unpicklable_argument,
    raised_as_its_own_type,
    return_value,
    returns_dies_when_freed,
    returns_unpicklable_by,
    rss_mb,
    run_script,
    stops_itself_after_returning,
    worker_pids,
)
from woflo import RunState, hookimpl, task
from woflo.errors import (
    ArgumentNotPicklable,
    RemoteTaskError,
    RemoteTraceback,
    TaskCrashed,
    TaskStopped,
    TaskTimeout,
)
from woflo.plugins import PluginSystem

ROOT = Path(__file__).resolve().parents[3]

SIZE = 100 << 20
"""The size of the large argument and results: 100 MB."""


def assert_still_works() -> None:
    assert add(20, 22).get_result(timeout=TIMEOUT) == 42


def _kill_if_alive(pid: int) -> None:
    if pid and pid_alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ---- the user's multiprocessing start method ------------------------------------------------

START_METHOD_HEADER = """\
import multiprocessing
multiprocessing.set_start_method({method!r}, force=True)
"""


@dataclass
class StartMethod:
    """Runs scripts that first set multiprocessing's start method to :attr:`name`."""

    name: str
    directory: Path

    def run(self, name: str, body: str, *args: str) -> subprocess.CompletedProcess[str]:
        script = self.directory / f"{name}.py"
        script.write_text(START_METHOD_HEADER.format(method=self.name) + textwrap.dedent(body))
        # (the logging plugin would report the deliberate failures on stderr)
        return run_script(script, *args, env={"WOFLO_LOG_LEVEL": "critical"}, timeout=60)


@pytest.fixture(params=multiprocessing.get_all_start_methods())
def start_method(request: pytest.FixtureRequest, tmp_path: Path) -> StartMethod:
    """Each start method this platform has (fork, spawn, forkserver on Linux)."""
    return StartMethod(request.param, tmp_path)


NO_GUARD_SCRIPT = """\
import os
from dataclasses import dataclass
from pathlib import Path
from woflo import task

# every execution of this top-level code leaves a line, whatever process it happens in
with open(Path(__file__).with_name("top-level-runs"), "a") as runs_file:
    runs_file.write(f"{os.getpid()}\\n")
print("top-level code ran", flush=True)

@dataclass
class Point:
    x: int
    y: int

@task
def mirror(p):
    return Point(-p.x, -p.y)

@task
def apply(fn, x):
    return fn(x)

def make_scaler(k):
    @task
    def scale(x):
        return x * k
    return scale

runs = [mirror(Point(i, 2 * i)) for i in range(3)]
print("points", [r.get_result(timeout=20) == Point(-i, -2 * i) for i, r in enumerate(runs)])
print("nested", make_scaler(3)(5).get_result(timeout=20))
print("lambda", apply(lambda v: v + 1, 41).get_result(timeout=20))
print("start method", multiprocessing.get_start_method())
print("pid", os.getpid())
"""


@pytest.mark.slow
def test_script_without_main_guard_under_every_start_method(start_method: StartMethod) -> None:
    """Case 18: top-level calls and no ``__main__`` guard: the top level runs once, in the
    caller, whatever start method the program set; ``__main__`` objects reach the workers."""
    proc = start_method.run("no_guard", NO_GUARD_SCRIPT)
    assert proc.stderr == ""
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[:-1] == [
        "top-level code ran",
        "points [True, True, True]",
        "nested 15",
        "lambda 42",
        f"start method {start_method.name}",
    ]
    pid = lines[-1].removeprefix("pid ")
    assert (start_method.directory / "top-level-runs").read_text().split() == [pid]


FAULTS_SCRIPT = """\
import os, signal, sys, time
from pathlib import Path
from woflo import task

here = Path(__file__).parent

@task
def segfault():
    import ctypes
    ctypes.string_at(0)

@task
def exit_hard(code):
    os._exit(code)

@task
def held(name):
    (here / (name + ".tmp")).write_text(str(os.getpid()))
    os.replace(here / (name + ".tmp"), here / (name + ".pid"))
    time.sleep(30)

@task
def slow():
    time.sleep(0.3)
    print("slow task done", flush=True)

def bounded(predicate, what):
    deadline = time.monotonic() + 20
    while not predicate():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.005)

error = segfault().exception(timeout=20)
print("segfault", type(error).__name__, error.exitcode == -signal.SIGSEGV)
error = exit_hard(123).exception(timeout=20)
print("os._exit", type(error).__name__, error.exitcode)
run = held("held")
bounded((here / "held.pid").exists, "the held task")
pid = int((here / "held.pid").read_text())
print("stop", run.stop(), run.stop(), run.state.value, type(run.exception()).__name__)

def gone():
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False

bounded(gone, "the stopped worker to die")
print("worker gone")
slow()
print("end of script", flush=True)
"""


@pytest.mark.slow
def test_crash_stop_and_exit_wait_under_every_start_method(start_method: StartMethod) -> None:
    """Cases 1, 2, 13 and 15 in a program that set a start method: a segfault and
    ``os._exit(123)`` crash their runs, naming the signal and the code; ``stop()`` (twice)
    kills the worker; at exit the program waits for the run still going, then exits 0 with
    nothing on stderr."""
    proc = start_method.run("faults", FAULTS_SCRIPT)
    assert proc.stderr == ""
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == [
        "segfault TaskCrashed True",
        "os._exit TaskCrashed 123",
        "stop True False stopped TaskStopped",
        "worker gone",
        "end of script",
        "slow task done",
    ]


CHILD_SCRIPT = """\
import os
from dataclasses import dataclass
from woflo import task

@dataclass
class Point:
    x: int
    y: int

@task
def mirror(p):
    return Point(-p.x, -p.y)

def child(queue):
    try:
        result = mirror(Point(1, 2)).get_result(timeout=20)
        queue.put(f"child {result == Point(-1, -2)}")
    except BaseException as exc:
        queue.put(f"child failed: {type(exc).__name__}: {exc}")

if __name__ == "__main__":
    print("parent", mirror(Point(3, 4)).get_result(timeout=20) == Point(-3, -4))
    queue = multiprocessing.Queue()
    process = multiprocessing.Process(target=child, args=(queue,))
    process.start()
    print(queue.get(timeout=30))
    process.join(30)
    print("exitcode", process.exitcode)
"""


@pytest.mark.slow
def test_tasks_of_the_script_called_in_a_multiprocessing_child(
    start_method: StartMethod, request: pytest.FixtureRequest
) -> None:
    """A process the program starts with multiprocessing calls a task (and passes a class)
    defined in the script. Under fork the child's pool is its own; under spawn and forkserver
    the child runs the script as ``__mp_main__``."""
    proc = start_method.run("child", CHILD_SCRIPT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["parent True", "child True", "exitcode 0"]


# ---- 4. a worker killed from outside, with retries ------------------------------------------


def test_a_worker_killed_from_outside_is_retried_in_a_fresh_worker(gate: Gate) -> None:
    run = held_then_retried(gate.path)
    pid = gate.pid("first")
    os.kill(pid, signal.SIGKILL)
    assert run.get_result(timeout=TIMEOUT) not in (pid, os.getpid())
    assert run.state is RunState.COMPLETED
    assert run.attempts == 2
    [error] = run.errors
    assert isinstance(error, TaskCrashed)
    assert (error.pid, error.exitcode) == (pid, -signal.SIGKILL)
    assert "SIGKILL" in str(error)


# ---- 5. arguments whose pickling fails in every way -----------------------------------------


def test_arguments_whose_pickling_fails_then_good_calls() -> None:
    """Pickling that raises fails the call with ArgumentNotPicklable; pickling that raises
    SystemExit propagates it unchanged (as from any code of the caller's); nothing starts,
    and later calls all behave."""
    for _ in range(50):
        with pytest.raises(ArgumentNotPicklable, match="argument #0") as info:
            identity(PicklesWith(_explode, "cannot"))
        assert isinstance(info.value.__cause__, ValueError)
        with pytest.raises(SystemExit) as exited:
            identity(PicklesWith(_exit_now, 3))
        assert exited.value.code == 3
        with pytest.raises(ArgumentNotPicklable):
            identity(value=threading.Lock())
    runs = [add(i, 1) for i in range(100)]
    assert [run.get_result(timeout=TIMEOUT) for run in runs] == list(range(1, 101))


# ---- 6, 7. an argument that crashes the worker, a result whose pickling fails ---------------


def test_argument_that_segfaults_the_worker_while_unpickled_crashes_that_run() -> None:
    run = ignore(UnpicklesWith(_segfault, 0))
    with pytest.raises(TaskCrashed, match="SIGSEGV") as info:
        run.get_result(timeout=TIMEOUT)
    assert info.value.exitcode == -signal.SIGSEGV
    assert run.state is RunState.CRASHED
    assert_still_works()


@pytest.mark.parametrize(
    ("fn", "arg", "state", "expected"),
    [
        (_die, 7, RunState.CRASHED, "exited with code 7"),
        (_segfault, 0, RunState.CRASHED, "killed by signal SIGSEGV"),
        (_exit_now, 8, RunState.FAILED, SystemExit),
        (_explode, "no pickle for you", RunState.FAILED, ValueError),
    ],
    ids=["os-exit", "segfault", "sys-exit", "raises"],
)
def test_result_whose_pickling_kills_exits_or_raises(
    fn: Any, arg: Any, state: RunState, expected: Any
) -> None:
    """Case 7: a result whose pickling ends the worker crashes the run (exit code or signal);
    one whose pickling raises (SystemExit included) fails it with that exception, noted."""
    run = returns_unpicklable_by(fn, arg)
    error = run.exception(timeout=TIMEOUT)
    assert run.state is state
    if isinstance(expected, str):
        assert isinstance(error, TaskCrashed)
        assert expected in str(error)
    else:
        assert error is not None
        assert type(error) is expected
        assert any("pickling the result of task" in n for n in error.__notes__)
        assert isinstance(error.__cause__, RemoteTraceback)
    assert_still_works()


# ---- 9. exceptions that do not survive a pickle round trip ----------------------------------


def test_exception_with_keyword_only_arguments_arrives_as_its_own_type() -> None:
    error = raised_as_its_own_type(raise_kw_only(5), KwOnlyError, "raise KwOnlyError(code=code")
    assert (error.code, error.reason) == (5, "keywords")
    assert str(error) == "code=5 reason=keywords"


def test_exception_with_an_unpicklable_argument_arrives_as_its_own_type() -> None:
    """Its type is importable, so the caller gets it (``except ValueError`` works), with the
    message standing in for the arguments that could not travel."""
    error = raised_as_its_own_type(
        raise_with_unpicklable_argument("carries a lock"),
        ValueError,
        "raise ValueError(message, threading.Lock())",
        match="carries a lock",
    )
    assert "lock" in str(error)


def test_exception_whose_class_the_caller_cannot_load_arrives_as_a_stand_in(
    tmp_path: Path,
) -> None:
    run = raise_from_a_module_only_the_worker_has(tmp_path)
    with pytest.raises(RemoteTaskError) as info:
        run.get_result(timeout=TIMEOUT)
    error = info.value
    assert error.type_name == "only_in_the_worker.OnlyInTheWorker"
    assert str(error) == "only_in_the_worker.OnlyInTheWorker: cannot be loaded by the caller"
    assert "raise only_in_the_worker.OnlyInTheWorker(" in error.remote_traceback
    assert isinstance(error.__cause__, RemoteTraceback)
    assert run.state is RunState.FAILED


# ---- 10. a __del__ that kills the worker ----------------------------------------------------


def test_a_del_that_kills_the_worker_after_the_result_was_sent(gate: Gate) -> None:
    """The result arrives and the run stays completed; the dead worker is replaced."""
    run = dies_after_returning(gate.path, 11, "the value")
    assert run.get_result(timeout=TIMEOUT) == "the value"
    pid = gate.pid("dies")
    gate.release()  # frees the object: its __del__ ends the worker
    wait_gone([pid], timeout=5)
    wait_for(lambda: pid not in worker_pids(), what="the pool to hear of the death")
    assert run.state is RunState.COMPLETED
    assert run.get_result() == "the value"
    assert getpid().get_result(timeout=TIMEOUT) not in (pid, os.getpid())


@pytest.mark.parametrize("which", ["argument", "result"])
def test_a_del_that_kills_the_worker_when_it_drops_the_call(which: str) -> None:
    """As loky's ``CrashAtGCInWorker``: the worker frees the call's argument, or its copy of
    the result, once done with it; the result was computed and must arrive."""
    run: Any
    if which == "argument":
        run = getpid_ignoring(DiesWhenFreed(12))
        pid = run.get_result(timeout=TIMEOUT)
    else:
        run = returns_dies_when_freed(13)
        pid, copy = run.get_result(timeout=TIMEOUT)
        assert isinstance(copy, DiesWhenFreed)
        assert copy.pid is None  # the caller's copy is disarmed
    assert run.state is RunState.COMPLETED
    # the worker then dies: no later call may be handed to it
    wait_gone([pid], timeout=5)
    wait_for(lambda: pid not in worker_pids(), what="the pool to hear of the death")


# ---- 11. large data -------------------------------------------------------------------------


@pytest.mark.slow
def test_a_100_mb_argument_and_result_round_trip() -> None:
    """It arrives intact, and once the caller drops the run and the value, reference counting
    alone frees them (no reference cycle keeps the run, its argument and their pickle)."""
    data = bytes(range(256)) * (SIZE // 256)
    collecting = gc.isenabled()
    gc.disable()
    try:
        before = rss_mb()
        run = identity(data)
        result = run.get_result(timeout=TIMEOUT)
        assert len(result) == SIZE
        assert result == data
        assert result is not data
        probe = weakref.ref(run)
        del run, result
        assert probe() is None
        wait_for(lambda: rss_mb() < before + 60, what=f"memory back near {before:.0f} MB")
    finally:
        if collecting:
            gc.enable()
    wait_for(
        lambda: all(rss_mb(pid) < 80 for pid in worker_pids()),
        what="the workers to give the memory back",
    )
    assert_still_works()


class _PausingHandler(logging.Handler):
    """Holds the thread emitting on it (the pool's watcher) until :attr:`resume` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.paused = threading.Event()
        self.resume = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.paused.set()
        self.resume.wait(TIMEOUT)


@pytest.fixture
def pause_watcher(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, _PausingHandler]]:
    """A logger whose records, sent by a task, hold the caller's watcher thread: meanwhile
    nobody reads the workers' sockets, nor hands them jobs. (Normally a standby thread takes
    over the watch from a thread held in the caller's code; here it is kept from doing so, to
    hold the I/O as a stalled machine or a long blocking send would.)"""
    from woflo_plugins.multiprocess import _relay

    monkeypatch.setattr(_relay, "TAKE_OVER_AFTER", 3600.0)
    name = "woflo.tests.fault_suite.pause"
    handler = _PausingHandler()
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield name, handler
    finally:
        handler.resume.set()
        logger.removeHandler(handler)
        logger.propagate = True


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["stop", "os-exit", "sigkill"])
def test_a_100_mb_result_in_flight_when_the_run_is_stopped_or_the_worker_dies(
    gate: Gate, runs: list[Any], pause_watcher: tuple[str, _PausingHandler], fault: str
) -> None:
    """The worker is in the middle of sending 100 MB (nobody reads: the watcher is held) when
    the run is stopped, the worker ends itself with ``os._exit(9)``, or it is SIGKILLed. Once
    the watcher reads again it finds part of a frame and then the end: that run ends stopped or
    crashed, and nothing deadlocks."""
    name, handler = pause_watcher
    run = large_result_after_a_log(gate.path, name, SIZE, fault == "os-exit")
    runs.append(run)
    assert handler.paused.wait(TIMEOUT)
    pid = read_pid(gate.path / "sending")
    if fault == "stop":
        assert run.stop() is True
    elif fault == "sigkill":
        os.kill(pid, signal.SIGKILL)
    wait_gone([pid], timeout=5)
    handler.resume.set()
    assert run.wait(TIMEOUT)
    error = run.exception()
    if fault == "stop":
        assert run.state is RunState.STOPPED
        assert isinstance(error, TaskStopped)
    else:
        assert run.state is RunState.CRASHED
        assert isinstance(error, TaskCrashed)
        assert (error.pid, error.exitcode) == (pid, 9 if fault == "os-exit" else -signal.SIGKILL)
    assert_still_works()


@pytest.mark.slow
def test_stop_while_a_100_mb_argument_is_in_flight_from_the_caller(
    configure: Any, recorder: Any
) -> None:
    """The only worker is stopped (SIGSTOP) while idle: the call blocks in the caller's thread
    handing it 100 MB. ``stop()`` from another thread ends the run and that call returns."""
    configure(max_workers=1)
    pid = getpid().get_result(timeout=TIMEOUT)
    os.kill(pid, signal.SIGSTOP)
    caller: threading.Thread | None = None
    try:
        wait_for(lambda: process_state(pid) == "T", what="the worker to be stopped")
        measure = task(len)
        returned: list[Any] = []
        caller = threading.Thread(target=lambda: returned.append(measure(b"a" * SIZE)))
        caller.start()
        wait_for(lambda: recorder.runs, what="the run to be created")
        [run] = recorder.runs
        wait_for(lambda: run.state is RunState.RUNNING, what="the attempt to start")
        caller.join(0.2)
        assert caller.is_alive()  # still handing over the 100 MB
        assert run.stop() is True
        caller.join(TIMEOUT)
        assert not caller.is_alive()
        assert returned == [run]
        assert run.state is RunState.STOPPED
        wait_gone([pid], timeout=5)
    finally:
        _kill_if_alive(pid)
        if caller is not None:
            caller.join(TIMEOUT)
    assert_still_works()


@pytest.mark.slow
def test_stop_while_a_100_mb_argument_is_in_flight_from_the_watcher(
    configure: Any, gate: Gate, pause_watcher: tuple[str, _PausingHandler]
) -> None:
    """A run waits for the only worker; when that worker finishes, the watcher thread hands it
    the 100 MB job, but the worker has stopped itself (SIGSTOP) and reads nothing: the result
    it sent before still arrives, and ``stop()`` of the waiting run ends it and frees the pool
    (the SIGTERM comes with a SIGCONT)."""
    name, handler = pause_watcher
    configure(max_workers=1, kill_grace=30)
    measure = task(len)
    first = stops_itself_after_returning(gate.path, name)
    pid = gate.pid("stopper")
    try:
        second: Any = measure(b"a" * SIZE)
        assert second.state is RunState.PENDING
        gate.release()
        assert handler.paused.wait(TIMEOUT)
        wait_for(lambda: process_state(pid) == "T", what="the worker to stop itself")
        handler.resume.set()  # the watcher reads the result, then hands the worker the job
        assert first.get_result(timeout=5) == pid
        wait_for(lambda: second.state is RunState.RUNNING, what="the job to be handed over")
        assert second.stop() is True
        wait_gone([pid], timeout=5)
    finally:
        _kill_if_alive(pid)
    assert isinstance(second.exception(), TaskStopped)
    assert second.state.value == "stopped"
    assert_still_works()


def test_a_worker_that_reads_nothing_while_handed_a_large_job_stalls_no_other_run(
    configure: Any, gate: Gate
) -> None:
    """As above, but nothing holds the watcher: while its send of 100 MB to the stopped worker
    blocks, a standby thread takes over the watch, so another worker is started and its run
    delivered; ``stop()`` of the stuck run still ends it."""
    configure(max_workers=1, kill_grace=30)
    measure = task(len)
    first = stops_itself_after_returning(gate.path, "woflo.tests.fault_suite.unheld")
    pid = gate.pid("stopper")
    try:
        second: Any = measure(b"a" * SIZE)
        gate.release()
        assert first.get_result(timeout=TIMEOUT) == pid
        wait_for(lambda: process_state(pid) == "T", what="the worker to stop itself")
        wait_for(lambda: second.state is RunState.RUNNING, what="the job to be handed over")
        configure(max_workers=2)
        assert add(2, 3).get_result(timeout=5) == 5  # (before the standby: stuck behind the send)
        assert second.is_running()
        assert second.stop() is True
        wait_gone([pid], timeout=5)
    finally:
        _kill_if_alive(pid)
    assert isinstance(second.exception(), TaskStopped)
    assert_still_works()


# ---- 13. stop() in every state, twice -------------------------------------------------------


@pytest.mark.parametrize(
    "state", ["pending", "running", "awaiting_retry", "completed", "failed", "crashed"]
)
def test_stop_twice_in_every_state(state: str, gate: Gate, runs: list[Any], tmp_path: Path) -> None:
    run: Any
    if state == "pending":
        runs.append(held_one_at_a_time(gate.path, "first"))
        gate.pid("first")
        run = held_one_at_a_time(gate.path, "second")
    elif state == "running":
        run = held(gate.path, "held")
        gate.pid("held")
    elif state == "awaiting_retry":
        run = fails_then_waits_long(tmp_path)
    elif state == "completed":
        run = add(1, 2)
    elif state == "failed":
        run = fail("no")
    else:
        run = exit_hard(gate.path, 4)
    runs.append(run)
    final = state in ("completed", "failed", "crashed")
    if final:  # (the state is final a moment before the run is: its run_finished hooks run)
        assert run.wait(TIMEOUT)
    else:
        wait_for(lambda: run.state.value == state, what=f"the run to be {state}")
    assert run.state.value == state
    assert run.stop() is not final
    assert run.stop() is False
    assert run.state.value == (state if final else "stopped")
    assert not run.is_running()
    assert run.exception() is run.exception()
    gate.release()
    assert_still_works()


# ---- 15. task calls at interpreter exit -----------------------------------------------------

ATEXIT_SCRIPT = """\
import atexit, sys, time
from woflo import task
from woflo.errors import WofloError

@task
def double(x):
    return 2 * x

@task
def slow():
    time.sleep(0.3)
    print("slow task done", flush=True)

def hook():
    try:
        run = double(1)
    except WofloError as exc:
        print("hook:", type(exc).__name__, exc, flush=True)
    else:
        print("hook: started a run nobody waits for", run, flush=True)

order = sys.argv[1]
if order == "before-the-first-run":
    atexit.register(hook)
if order != "no-run-before-exit":
    print("main", double(2).get_result(timeout=20))
    slow()
if order != "before-the-first-run":
    atexit.register(hook)
print("end of script", flush=True)
"""


@pytest.mark.parametrize(
    "order", ["before-the-first-run", "after-the-first-run", "no-run-before-exit"]
)
def test_a_task_call_from_an_atexit_hook_gets_a_clear_error(tmp_path: Path, order: str) -> None:
    """Whether the hook runs before woflo's wait at exit (registered after the first run, or
    with no run before exit: woflo's wait is registered on the first run) or after it, the
    call raises a WofloError saying why, at once; runs still going are waited for."""
    script = tmp_path / "atexit_call.py"
    script.write_text(ATEXIT_SCRIPT)
    proc = run_script(script, order)
    assert proc.stderr == ""
    assert proc.returncode == 0
    hook = (
        "hook: InterpreterExiting cannot start a run of task 'double': the interpreter is exiting "
        "(call tasks before exit, not from atexit handlers or finalizers)"
    )
    expected = ["end of script", hook]
    if order != "no-run-before-exit":
        expected += ["main 4", "slow task done"]
    assert sorted(proc.stdout.splitlines()) == sorted(expected)
    if order == "before-the-first-run":  # woflo's wait at exit ran first
        assert proc.stdout.splitlines()[-2:] == ["slow task done", hook]


# ---- 20. retry with timeout, and stop() during the retry sleep ------------------------------


def test_stop_during_the_retry_sleep_after_a_timed_out_attempt(gate: Gate, runs: list[Any]) -> None:
    run = task(retries=2, timeout=0.3, retry_sleep_time=30)(hold)(gate.path, "slow")
    runs.append(run)
    pid = gate.pid("slow")
    wait_for(lambda: run.state is RunState.AWAITING_RETRY, what="the retry to be scheduled")
    assert not pid_alive(pid)  # the timed-out worker was dead before the retry was scheduled
    assert [type(e) for e in run.errors] == [TaskTimeout]
    start = time.monotonic()
    assert run.stop() is True
    assert time.monotonic() - start < 0.5
    assert run.state is RunState.STOPPED
    assert isinstance(run.exception(), TaskStopped)
    time.sleep(0.1)
    assert run.attempts == 1
    assert [type(e) for e in run.errors] == [TaskTimeout]


# ---- 21. a model of random calls, stops, waits and kills ------------------------------------


@dataclass(eq=False)
class _Call:
    run: Any
    kind: str  # "ok", "fail" or "held"
    value: int
    stopped: bool = False  # stop() returned True
    killed: bool = False  # its worker was SIGKILLed

    @property
    def bound_to_run(self) -> bool:
        """A held call that nothing ended: it runs until the gate opens."""
        return self.kind == "held" and not self.stopped and not self.killed

    def expected_state(self) -> RunState:
        if self.stopped:
            return RunState.STOPPED
        if self.killed:
            return RunState.CRASHED
        return RunState.FAILED if self.kind == "fail" else RunState.COMPLETED


@pytest.mark.slow
def test_random_calls_stops_waits_and_kills_against_a_model(
    tmp_path: Path, plugins: PluginSystem
) -> None:
    """Every run ends in exactly one final state (``run_finished`` once, attempts reported
    once each), the one the model allows; ``is_running()`` agrees with it; a completed run
    returns its own call's value and a failed one its own error, the same each time asked."""
    finished: collections.Counter[str] = collections.Counter()
    attempts_finished: collections.Counter[str] = collections.Counter()

    class Count:
        @hookimpl
        def woflo_attempt_finished(self, run: Any) -> None:
            attempts_finished[run.run_id] += 1

        @hookimpl
        def woflo_run_finished(self, run: Any) -> None:
            finished[run.run_id] += 1

    plugins.add(Count(), name="count")
    ok, bad, held_value = task(return_value), task(raise_value_error), task(hold_then_return)
    values = itertools.count()
    gates = itertools.count()

    class Calls(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            path = tmp_path / f"gate{next(gates)}"
            path.mkdir()
            self.gate = Gate(path)
            self.calls: list[_Call] = []

        @rule(kind=st.sampled_from(["held", "ok", "fail"]))
        def call(self, kind: str) -> None:
            value = next(values)
            if kind == "ok":
                run = ok(value)
            elif kind == "fail":
                run = bad(f"boom {value}")
            else:
                run = held_value(self.gate.path, f"held{value}", value)
            self.calls.append(_Call(run, kind, value))

        @precondition(lambda self: bool(self.calls))
        @rule(data=st.data())
        def stop(self, data: st.DataObject) -> None:
            call = data.draw(st.sampled_from(self.calls))
            if call.run.stop():
                assert not call.stopped
                call.stopped = True
                assert call.run.state is RunState.STOPPED
                assert not call.run.is_running()
            else:
                assert call.run.state.is_final
                assert not call.bound_to_run

        @precondition(lambda self: bool(self.calls))
        @rule(data=st.data(), timeout=st.sampled_from([0.0, 0.01, 0.05]))
        def wait(self, data: st.DataObject, timeout: float) -> None:
            call = data.draw(st.sampled_from(self.calls))
            if call.run.wait(timeout):
                assert call.run.state.is_final
                assert not call.run.is_running()
                assert not call.bound_to_run

        @precondition(lambda self: any(c.bound_to_run for c in self.calls))
        @rule(data=st.data())
        def kill_worker(self, data: st.DataObject) -> None:
            call = data.draw(st.sampled_from([c for c in self.calls if c.bound_to_run]))
            pid = self.gate.pid(f"held{call.value}")
            os.kill(pid, signal.SIGKILL)
            call.killed = True

        @invariant()
        def consistent(self) -> None:
            for call in self.calls:
                if not call.run.is_running():
                    assert call.run.state.is_final
                if call.bound_to_run:
                    assert call.run.is_running()
                if call.stopped:
                    assert call.run.state is RunState.STOPPED

        def teardown(self) -> None:
            self.gate.release()
            for call in self.calls:
                assert call.run.wait(TIMEOUT), call
            for call in self.calls:
                run = call.run
                assert not run.is_running()
                assert run.state is call.expected_state(), (call, run.exception())
                if run.state is RunState.COMPLETED:
                    assert run.get_result() == call.value
                    assert run.get_result() == call.value
                elif run.state is RunState.FAILED:
                    error = run.exception()
                    assert type(error) is ValueError
                    assert str(error) == f"boom {call.value}"
                    assert run.exception() is error
                elif run.state is RunState.CRASHED:
                    error = run.exception()
                    assert isinstance(error, TaskCrashed)
                    assert error.exitcode == -signal.SIGKILL
                else:
                    assert isinstance(run.exception(), TaskStopped)
                assert finished[run.run_id] == 1
                assert attempts_finished[run.run_id] == run.attempts
                assert run.attempts <= 1
                assert run.stop() is False

    run_state_machine_as_test(
        Calls,
        settings=settings(
            max_examples=25,
            stateful_step_count=20,
            deadline=None,
            phases=[Phase.explicit, Phase.reuse, Phase.generate],
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


# ---- the table in docs/reliability.md names tests that exist --------------------------------


def test_the_reliability_table_names_existing_tests() -> None:
    doc = (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    rows = [line for line in doc.splitlines() if re.match(r"\|\s*\d+\s*\|", line)]
    assert [int(row.split("|")[1]) for row in rows] == list(
        range(1, len(rows) + 1)
    )  # (numbered in order)
    for row in rows:
        names = re.findall(r"`([\w/]+\.py)::(\w+)(?:\[[^\]]*\])?`", row)
        assert names, row
        for file, test in names:
            source = (ROOT / file).read_text(encoding="utf-8")
            assert re.search(rf"^def {test}\(", source, re.M), f"{file}::{test} is not a test"
