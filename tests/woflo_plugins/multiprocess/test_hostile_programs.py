"""What production programs do to a process pool: many open files, infinite settings, a broken
watcher, shutdown() under retries, a fork of the caller, bad environment variables."""

from __future__ import annotations

import os
import resource
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import woflo_plugins.multiprocess as mp
from tests._helpers import TIMEOUT, wait_for, wait_gone
from tests.woflo_plugins.multiprocess._support import Gate, add, fail, held, run_script
from woflo import RunState, task
from woflo.errors import OptionValueError, PoolBroken, TaskStopped


def test_a_program_with_thousands_of_open_files_runs_tasks(configure: Any) -> None:
    """No select() anywhere: descriptors above 1024 are fine for the pool and its zygote."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1500
    if hard != resource.RLIM_INFINITY and hard < wanted + 100:
        pytest.skip(f"the hard limit on open files here is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted + 100, hard))
    files = []
    try:
        while len(files) < wanted:
            files.append(os.open(os.devnull, os.O_RDONLY))
        assert max(files) > 1024
        runs = [add(i, 1) for i in range(20)]  # a new pool: its sockets are above 1024 too
        assert [run.get_result(timeout=TIMEOUT) for run in runs] == list(range(1, 21))
    finally:
        for fd in files:
            os.close(fd)
        mp.reset()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize(
    "setting", [{"idle_timeout": float("inf")}, {"kill_grace": float("inf")}], ids=str
)
def test_an_infinite_setting_means_no_limit(configure: Any, setting: dict[str, float]) -> None:
    configure(**setting)
    assert add(1, 2).get_result(timeout=TIMEOUT) == 3
    assert add(2, 2).get_result(timeout=TIMEOUT) == 4  # the watcher is alive and well


def test_infinite_settings_from_the_environment(
    configure: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(mp.IDLE_TIMEOUT_ENV, "inf")
    mp.reset()
    assert add(1, 1).get_result(timeout=TIMEOUT) == 2


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5", "nan"])
def test_a_bad_max_workers_in_the_environment_fails_the_call_naming_it(
    configure: Any, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(mp.MAX_WORKERS_ENV, value)
    mp.reset()
    with pytest.raises(OptionValueError, match=rf"WOFLO_MAX_WORKERS='{value}'.*whole number"):
        add(1, 1)


def test_a_dead_watcher_fails_its_runs_with_pool_broken_and_the_next_call_works(
    configure: Any, gate: Gate, runs: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from woflo_plugins.multiprocess import _schedule

    run = held(gate.path, "held")
    runs.append(run)
    gate.pid("held")

    def broken(self: Any, now: float, idle_timeout: float) -> float:
        raise OverflowError("timeout value is too large")

    monkeypatch.setattr(_schedule.Schedule, "next_deadline", broken)
    add(1, 1)  # wakes the watcher, which now fails
    assert run.wait(TIMEOUT)
    assert run.state is RunState.FAILED
    error = run.exception()
    assert isinstance(error, PoolBroken)
    assert "watcher thread failed" in str(error)
    assert "OverflowError" in str(error)
    monkeypatch.undo()
    assert add(2, 3).get_result(timeout=TIMEOUT) == 5  # a fresh pool


def test_shutdown_stops_runs_with_retries_too(configure: Any, gate: Gate) -> None:
    """A stop is never retried: shutdown() ends every run stopped, retries or not."""
    patient = task(retries=3, retry_sleep_time=0)(held.fn)
    run = patient(gate.path, "patient")
    gate.pid("patient")
    mp.shutdown()
    assert run.wait(TIMEOUT)
    assert run.state is RunState.STOPPED
    assert run.attempts == 1
    assert isinstance(run.exception(), TaskStopped)


def test_a_forked_child_of_the_caller_does_not_wait_for_its_parents_runs(tmp_path: Path) -> None:
    script = tmp_path / "fork.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, sys, time
            from woflo import task

            @task
            def nap(seconds):
                time.sleep(seconds)
                return seconds

            run = nap(1.0)
            pid = os.fork()
            if pid == 0:  # the child ends its program at once: nothing of its own runs
                start = time.monotonic()
                sys.exit(0)
            _, status = os.waitpid(pid, 0)
            print("child", os.waitstatus_to_exitcode(status), flush=True)
            print("parent", run.get_result(), flush=True)
            """
        )
    )
    result = run_script(script, timeout=20)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["child", "0", "parent", "1.0"]


def test_the_pool_waits_for_its_runs_after_a_forked_child_exits(tmp_path: Path) -> None:
    """The parent's runs and timers are its own: the child's exit does not touch them."""
    script = tmp_path / "fork_retry.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os
            from woflo import task
            from woflo.testing import fail_once_then_record

            t = task(retries=1, retry_sleep_time=0.3)(fail_once_then_record)
            t({str(tmp_path / "counter")!r}, {str(tmp_path / "out")!r})
            if os.fork() == 0:
                os._exit(0)
            """
        )
    )
    result = run_script(script, timeout=20)
    assert result.returncode == 0, result.stderr
    wait_for(lambda: (tmp_path / "out").exists(), timeout=5, what="the retry's result")
    assert (tmp_path / "out").read_text() == "2"


def test_importing_a_guardless_script_does_not_recurse_in_workers(tmp_path: Path) -> None:
    """``a.py`` calls its task at top level (allowed in a script); ``b.py`` imports it and calls
    the task too. The worker that imports ``a`` to run it must not run ``a``'s top-level calls:
    it refuses them at once, and the run fails saying why, instead of every worker starting
    pools of its own."""
    (tmp_path / "a.py").write_text(
        textwrap.dedent(
            """
            import os
            from woflo import task

            @task
            def work(x):
                return x * 2

            print("a top level in", os.getpid(), os.getppid(), flush=True)
            work(1)
            """
        )
    )
    (tmp_path / "b.py").write_text(
        textwrap.dedent(
            """
            import os
            from woflo.errors import CalledDuringImport
            import a

            run = a.work(21)
            try:
                run.get_result(timeout=30)
            except CalledDuringImport as exc:
                print("refused:", exc)
            print("b done in", os.getpid(), flush=True)
            """
        )
    )
    result = run_script(tmp_path / "b.py", env={"PYTHONPATH": str(tmp_path)}, timeout=30)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    caller = lines[-1].split()[-1]
    tops = [line.split()[-2:] for line in lines if line.startswith("a top level")]
    assert tops[0][0] == caller
    # Workers import ``a`` (its print runs), and refuse its task call: every one of them is a
    # worker of the caller's own pool (one zygote), none of a pool a worker started.
    zygotes = {parent for pid, parent in tops[1:]}
    assert len(zygotes) <= 1, tops
    assert caller not in zygotes
    [refused] = [line for line in lines if line.startswith("refused:")]
    assert "task 'work' was called while this worker process imported the module" in refused
    assert "__main__" in refused


# ---- user code in the caller -----------------------------------------------------------------


_WAITED_FOR: dict[str, Any] = {}  # the run the predicate below waits for (caller side only)


def _when_the_other_is_done(error: BaseException, attempt: int) -> bool:
    """A ``retry_if`` predicate (importable, so the task pickles) that blocks on a run."""
    _WAITED_FOR.setdefault("asked", []).append(attempt)
    return isinstance(_WAITED_FOR["other"].get_result(timeout=HELD_UP), int)


HELD_UP = 2.0
"""How long the cases below let user code hold the watcher before they count it as stuck."""


def test_a_retry_predicate_that_waits_for_another_run_does_not_deadlock(
    configure: Any, gate: Gate, runs: list[Any]
) -> None:
    """The predicate runs off the thread that delivers results, so the run it waits for can
    still be delivered."""
    other = held(gate.path, "other")
    runs.append(other)
    gate.pid("other")
    _WAITED_FOR.clear()
    _WAITED_FOR["other"] = other
    run = task(retries=1, retry_if=_when_the_other_is_done)(fail.fn)("no")
    runs.append(run)
    wait_for(lambda: _WAITED_FOR.get("asked"), what="the predicate to be asked")
    gate.release()
    assert run.wait(TIMEOUT)
    assert (run.state, run.attempts, _WAITED_FOR["asked"]) == (RunState.FAILED, 2, [1])
    assert not run.hook_errors
    assert other.state is RunState.COMPLETED


def test_a_retry_predicate_need_not_be_picklable(configure: Any) -> None:
    """The retry policy is the caller's: a ``retry_if`` closure over a lock (or a run) stays
    in the caller, and the task still goes to a worker by value."""
    import threading

    lock = threading.Lock()
    asked: list[int] = []

    def predicate(error: BaseException, attempt: int) -> bool:
        with lock:
            asked.append(attempt)
        return attempt < 2

    run = task(retries=5, retry_if=predicate, timeout=30)(fail.fn)("no")
    assert run.wait(TIMEOUT)
    assert (run.state, run.attempts, asked) == (RunState.FAILED, 2, [1, 2])


def test_a_slow_hook_does_not_hold_up_other_runs(
    configure: Any, plugins: Any, runs: list[Any]
) -> None:
    import threading

    from woflo import hookimpl

    slow_one = threading.Event()
    go_on = threading.Event()

    class Slow:
        @hookimpl
        def woflo_attempt_finished(self, run: Any) -> None:
            if run.task.name == "slow":
                slow_one.set()
                go_on.wait(TIMEOUT)

    plugins.add(Slow(), name="slow-hook")
    assert add(0, 0).get_result(timeout=TIMEOUT) == 0
    zygote = mp.status().zygote_pid
    try:
        slow = task(name="slow")(add.fn)(1, 1)
        runs.append(slow)
        assert slow_one.wait(TIMEOUT)
        fast = [add(i, i) for i in range(5)]
        assert [r.get_result(timeout=HELD_UP) for r in fast] == [0, 2, 4, 6, 8]
        assert slow.is_running()  # still in its hook
    finally:
        go_on.set()
    assert slow.get_result(timeout=TIMEOUT) == 2
    # The held thread, relieved, stands by again; the spare one ends. The zygote is tied to the
    # thread that started it (Linux's parent-death signal follows the thread): it lives on.
    wait_for(lambda: _pool_threads() == 2, what="the pool to be back to two threads")
    configure(max_runs_per_worker=1)  # so that each run needs a new worker from the zygote
    assert [add(2, i).get_result(timeout=TIMEOUT) for i in range(3)] == [2, 3, 4]
    assert mp.status().zygote_pid == zygote


def _pool_threads() -> int:
    import threading

    return sum(1 for t in threading.enumerate() if t.name == "woflo-multiprocess")


def test_a_logging_handler_that_raises_neither_kills_the_worker_nor_fails_the_run(
    configure: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    import logging

    from tests.woflo_plugins.multiprocess._support import log_warning

    class Broken(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raise RuntimeError("the log server is down")

    logger = logging.getLogger("acme.broken")
    handler = Broken()
    logger.addHandler(handler)
    try:
        run = log_warning("acme.broken", "hello")
        pid = run.get_result(timeout=TIMEOUT)
        again = log_warning("acme.broken", "again")
        assert again.get_result(timeout=TIMEOUT) == pid  # the same worker: nothing killed it
    finally:
        logger.removeHandler(handler)
    assert run.state is RunState.COMPLETED
    assert "the log server is down" in capfd.readouterr().err


# ---- the world an attempt runs in ------------------------------------------------------------


def test_an_attempt_runs_in_the_callers_directory_and_environment_as_of_the_call(
    configure: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.woflo_plugins.multiprocess._support import where_and_what

    monkeypatch.delenv("WOFLO_TEST_SETTING", raising=False)
    before = where_and_what("WOFLO_TEST_SETTING").get_result(timeout=TIMEOUT)  # pool started
    assert before[1] is None
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WOFLO_TEST_SETTING", "now")
    cwd, value, _ = where_and_what("WOFLO_TEST_SETTING").get_result(timeout=TIMEOUT)
    assert (Path(cwd), value) == (tmp_path, "now")
    monkeypatch.delenv("WOFLO_TEST_SETTING")
    assert where_and_what("WOFLO_TEST_SETTING").get_result(timeout=TIMEOUT)[1] is None


def test_what_one_run_changes_in_its_worker_does_not_reach_the_next(
    configure: Any, tmp_path: Path
) -> None:
    from tests.woflo_plugins.multiprocess._support import (
        change_the_process,
        what_a_run_can_change,
    )

    configure(max_workers=1)  # one worker: the next run is on the same process
    here = os.getcwd()
    pid = change_the_process(str(tmp_path)).get_result(timeout=TIMEOUT)
    cwd, leak, path, handler, alarm, same, mask = what_a_run_can_change().get_result(
        timeout=TIMEOUT
    )
    assert same == pid
    assert (cwd, leak, path, handler, alarm) == (here, None, False, False, 0)
    assert mask != 0o077


def test_a_worker_that_cannot_be_put_back_retires(configure: Any) -> None:
    from tests.woflo_plugins.multiprocess._support import close_stdout, where_and_what

    configure(max_workers=1)
    pid = close_stdout().get_result(timeout=TIMEOUT)
    _, _, next_pid = where_and_what("HOME").get_result(timeout=TIMEOUT)
    assert next_pid != pid  # a fresh worker, not one whose standard output is gone


def test_max_runs_per_worker_retires_workers(configure: Any) -> None:
    from tests.woflo_plugins.multiprocess._support import getpid

    configure(max_workers=1, max_runs_per_worker=2)
    pids = [getpid().get_result(timeout=TIMEOUT) for _ in range(6)]
    assert [pids.count(p) for p in dict.fromkeys(pids)] == [2, 2, 2]


# ---- everything an attempt started dies with it ------------------------------------------------


def _children(gate: Path) -> list[int]:
    wait_for(lambda: (gate / "children.pid").exists(), what="the task's children")
    return [int(pid) for pid in (gate / "children.pid").read_text().split()]


def _kill_all(pids: list[int]) -> None:
    import signal

    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="subreapers are Linux's")
def test_stop_kills_a_child_the_task_started_in_its_own_session(configure: Any, gate: Gate) -> None:
    from tests.woflo_plugins.multiprocess._support import starts_children

    run = starts_children(gate.path)
    pids = _children(gate.path)
    worker = gate.pid("parent")
    try:
        assert run.stop() is True
        wait_gone([worker, *pids], timeout=5)
    finally:
        _kill_all(pids)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="subreapers are Linux's")
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_every_process_a_task_started_dies_with_a_killed_caller(tmp_path: Path, how: str) -> None:
    """The OOM killer (SIGKILL) or ``docker stop`` (SIGTERM) ends the program: its workers,
    the zygote, and every process its tasks started, in their own sessions too, die with it."""
    import signal
    import subprocess

    gate = tmp_path / "gate"
    gate.mkdir()
    script = tmp_path / "caller.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, pathlib, time
            from tests.woflo_plugins.multiprocess._support import starts_children
            import woflo_plugins.multiprocess as mp

            run = starts_children(pathlib.Path({str(gate)!r}))
            while not (pathlib.Path({str(gate)!r}) / "parent.pid").exists():
                time.sleep(0.005)
            (pathlib.Path({str(gate)!r}) / "zygote").write_text(str(mp.status().zygote_pid))
            time.sleep(60)
            """
        )
    )
    root = str(Path(__file__).resolve().parents[3])
    with (tmp_path / "log").open("wb") as log:  # a file: a survivor must not hold our pipe
        caller = subprocess.Popen(
            [sys.executable, str(script)],
            env={**os.environ, "PYTHONPATH": root},
            stdout=log,
            stderr=log,
        )
    pids: list[int] = []
    try:
        wait_for(lambda: (gate / "zygote").exists(), what="the caller's runs to start")
        pids = [
            *_children(gate),
            int((gate / "parent.pid").read_text()),
            int((gate / "zygote").read_text()),
        ]
        caller.send_signal(getattr(signal, how))
        caller.wait(TIMEOUT)
        wait_gone(pids, timeout=3)
    finally:
        _kill_all(pids)
        if caller.poll() is None:
            caller.kill()
            caller.wait()
