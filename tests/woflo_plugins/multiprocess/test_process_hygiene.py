"""Process hygiene: no orphans, prompt Ctrl-C, one watcher thread, and file descriptors,
threads, processes and runs back to their baseline after many runs."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import pytest

import woflo_plugins.multiprocess as mp
from tests._helpers import TIMEOUT, children_of, pid_alive, wait_for, wait_gone
from tests.woflo_plugins.multiprocess._support import (
    Gate,
    getpid,
    held,
    noop,
    open_fds,
    pool_counts,
    run_script,
    script_env,
    zygote_pid,
)
from woflo import RunState
from woflo.errors import TaskStopped

NO_WORKERS = {"idle": 0, "busy": 0, "starting": 0, "pending": 0}

SLEEPERS = """\
import os, sys, time
from pathlib import Path
from woflo import RunState, task
import woflo_plugins.multiprocess as mp

gate = Path(sys.argv[1])

def report(name, text):
    (gate / (name + ".tmp")).write_text(text)
    os.replace(gate / (name + ".tmp"), gate / name)

def attempt(name):  # one file per attempt: name-1.pid, name-2.pid, ...
    report(f"{name}-{len(list(gate.glob(name + '-*.pid'))) + 1}.pid", str(os.getpid()))

@task(retries=2)  # a stop must not count as a failure to retry
def sleeper(i):
    attempt(f"sleeper{i}")
    time.sleep(60)

@task(retries=3, retry_sleep_time=1.0)
def flaky():
    attempt("flaky")
    raise ConnectionError("try again")

runs = [sleeper(i) for i in range(2)]
retrying = flaky()
deadline = time.monotonic() + 20
while len(list(gate.glob("*.pid"))) < 3 or retrying.state is not RunState.AWAITING_RETRY:
    if time.monotonic() > deadline:
        sys.exit("the runs did not start")
    time.sleep(0.005)
report("zygote", str(mp.status().zygote_pid))
"""


def _start(script: Path, gate: Path) -> subprocess.Popen[bytes]:
    with (gate / "stdout").open("wb") as out, (gate / "stderr").open("wb") as err:
        return subprocess.Popen(
            [sys.executable, str(script), str(gate)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=script_env(),
            cwd=script.parent,
            start_new_session=True,  # its own process group, as a shell gives a foreground job
        )


def _processes(gate: Path) -> list[int]:
    """The worker pids the script reported (one per attempt) and its zygote's."""
    wait_for((gate / "zygote").exists, what="the script to start its runs")
    return [int(p.read_text()) for p in [*gate.glob("*.pid"), gate / "zygote"]]


def test_no_orphans_when_the_caller_is_killed(tmp_path: Path, gate: Gate) -> None:
    script = tmp_path / "killed.py"
    script.write_text(SLEEPERS + "time.sleep(60)\n")
    proc = _start(script, gate.path)
    try:
        pids = _processes(gate.path)
        assert all(pid_alive(pid) for pid in pids)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=TIMEOUT)
        wait_gone(pids, timeout=2)
    finally:
        proc.kill()
        proc.wait(timeout=TIMEOUT)


@pytest.mark.parametrize("where", ["waiting-in-main", "waiting-at-exit"])
def test_ctrl_c_stops_everything_promptly(tmp_path: Path, gate: Gate, where: str) -> None:
    """SIGINT to the script's process group while two runs sleep and a third awaits its retry:
    the script exits within 5 s, no retry starts, no worker survives, no traceback storm."""
    script = tmp_path / "interrupted.py"
    end = "retrying.wait()\n" if where == "waiting-in-main" else ""
    script.write_text(SLEEPERS + end)
    proc = _start(script, gate.path)
    try:
        pids = _processes(gate.path)
        # The interpreter is in its last statement, or in woflo's wait at exit.
        if where == "waiting-at-exit":
            wait_for(lambda: _in_exit_wait(proc.pid), what="the script to wait at exit")
        start = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=5)
        assert time.monotonic() - start < 5
        # interrupted, as the shell and CI must see: -SIGINT or 130, never success
        assert proc.returncode in (-signal.SIGINT, 130)
        wait_gone(pids, timeout=2)
    finally:
        proc.kill()
        proc.wait(timeout=TIMEOUT)
    attempts = sorted(p.name for p in gate.path.glob("*.pid"))
    assert attempts == ["flaky-1.pid", "sleeper0-1.pid", "sleeper1-1.pid"]
    stderr = (gate.path / "stderr").read_text()
    assert stderr.count("Traceback") <= 1, stderr
    assert "Exception ignored" not in stderr, stderr


def _in_exit_wait(pid: int) -> bool:
    """Whether the script's main thread is blocked (it has reached the wait at exit)."""
    try:
        stat = Path(f"/proc/{pid}/task/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "S"


def test_one_thread_watches_all_workers(configure: Any, gate: Gate, runs: list[Any]) -> None:
    getpid().get_result(timeout=TIMEOUT)  # the pool and its watcher thread exist
    threads = threading.active_count()
    runs += [held(gate.path, f"run{i}") for i in range(8)]
    wait_for(lambda: all(r.state is RunState.RUNNING for r in runs), what="8 running runs")
    assert threading.active_count() == threads
    gate.release()
    assert len({run.get_result(timeout=TIMEOUT) for run in runs}) == 8
    assert threading.active_count() == threads


def test_2000_runs_leave_nothing_behind(configure: Any) -> None:
    me = os.getpid()
    before = (open_fds(), threading.active_count(), children_of(me))
    configure(idle_timeout=0.2)
    getpid().get_result(timeout=TIMEOUT)
    zygote = zygote_pid()
    wait_for(lambda: pool_counts() == NO_WORKERS and not children_of(zygote), what="retired")
    fds, threads = open_fds(), threading.active_count()

    runs = [noop() for _ in range(2000)]
    assert [run.get_result(timeout=TIMEOUT) for run in runs] == [None] * 2000
    assert threading.active_count() == threads
    probe = weakref.ref(runs[-1])
    del runs
    gc.collect()
    assert probe() is None  # woflo keeps no finished run alive

    wait_for(lambda: pool_counts() == NO_WORKERS, what="idle workers to retire")
    wait_for(lambda: not children_of(zygote), what="retired workers to be reaped")
    wait_for(lambda: open_fds() == fds, what=f"{fds} open fds (now {open_fds()})")
    assert threading.active_count() == threads

    mp.shutdown()
    wait_gone([zygote], timeout=5)
    assert (open_fds(), threading.active_count(), children_of(me)) == before


def test_shutdown_stops_runs_and_kills_workers(configure: Any, gate: Gate) -> None:
    run = held(gate.path, "held")
    worker = gate.pid("held")
    zygote = zygote_pid()
    mp.shutdown()
    assert run.wait(timeout=TIMEOUT)
    assert run.state is RunState.STOPPED
    with pytest.raises(TaskStopped):
        run.get_result()
    wait_gone([worker, zygote], timeout=2)
    assert zygote not in children_of(os.getpid())  # reaped: no zombie
    assert getpid().get_result(timeout=TIMEOUT) not in (worker, os.getpid())  # a new pool


def test_shutdown_with_busy_workers_is_quiet(tmp_path: Path) -> None:
    """Workers killed while the pool closes: it closes fast, and nothing is printed (the
    zygote leaves quietly)."""
    script = tmp_path / "shutdowns.py"
    script.write_text(
        textwrap.dedent(
            """\
            import time
            from woflo import task
            import woflo_plugins.multiprocess as mp

            @task
            def sleeper():
                time.sleep(60)

            for _ in range(5):
                runs = [sleeper() for _ in range(4)]
                deadline = time.monotonic() + 20
                while sum(r.state.value == "running" for r in runs) < 4:
                    assert time.monotonic() < deadline
                    time.sleep(0.005)
                start = time.monotonic()
                mp.shutdown()
                assert time.monotonic() - start < 2, "shutdown() took too long"
                assert all(r.state.value == "stopped" for r in runs)
            print("ok")
            """
        )
    )
    # dev mode: an unclosed resource in the caller, the zygote or a worker shows on stderr
    flags = ("-X", "dev")
    proc = run_script(script, flags=flags, env={"WOFLO_LOG_LEVEL": "critical"}, timeout=60)
    assert proc.stderr == ""
    assert proc.returncode == 0
    assert proc.stdout == "ok\n"
