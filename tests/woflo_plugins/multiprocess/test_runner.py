"""The multiprocess runner, as a user sees it: results, errors, what can be called, concurrency,
limits, warm workers, scripts without a ``__main__`` guard, output and logs."""

from __future__ import annotations

import logging
import os
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests._helpers import TIMEOUT, wait_for, wait_gone
from tests.woflo_plugins.multiprocess._support import (
    Gate,
    add,
    apply,
    fail,
    getpid,
    held,
    log_warning,
    meet,
    one_running_one_pending,
    pool_counts,
    run_script,
)
from woflo import RunState, task
from woflo.errors import RemoteTraceback
from woflo_plugins.multiprocess import MultiprocessTaskRun

# ---- what runs, and how results and errors come back ----------------------------------------


def test_is_the_default_runner() -> None:
    from woflo.runners import MultiprocessTaskRun as registered

    assert registered is MultiprocessTaskRun
    assert task(lambda: None).runner is MultiprocessTaskRun
    assert isinstance(add(1, 2), MultiprocessTaskRun)


def test_returns_the_value() -> None:
    run = add(2, 3)
    assert run.get_result(timeout=TIMEOUT) == 5
    assert run.state is RunState.COMPLETED
    assert run.attempts == 1
    assert not run.is_running()


def test_call_returns_at_once_while_the_task_runs(gate: Gate, runs: list[Any]) -> None:
    start = time.monotonic()
    run = held(gate.path, "held")
    runs.append(run)
    returned_after = time.monotonic() - start
    assert run.is_running()
    assert run.state in (RunState.PENDING, RunState.RUNNING)
    worker = gate.pid("held")
    assert worker != os.getpid()
    assert returned_after < 1.0  # generous for a cold pool on a loaded machine; never blocks
    wait_for(lambda: run.state is RunState.RUNNING, what="the run to be running")
    gate.release()
    assert run.get_result(timeout=TIMEOUT) == worker
    assert not run.is_running()


def test_task_exception_is_reraised_with_the_worker_traceback() -> None:
    run = fail("it broke")
    with pytest.raises(ValueError, match="it broke") as info:
        run.get_result(timeout=TIMEOUT)
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "raise ValueError(message)" in cause.tb
    assert "_support.py" in cause.tb
    assert "ValueError: it broke" in cause.tb
    assert run.state is RunState.FAILED
    assert run.errors == (info.value,)
    assert run.exception() is info.value


@task
def square(x: int) -> int:
    return x * x


class Account:
    def __init__(self, balance: int) -> None:
        self.balance = balance

    @task
    def deposit(self, amount: int) -> int:
        return self.balance + amount


class Multiplier:
    def __init__(self, factor: int) -> None:
        self.factor = factor

    def __call__(self, x: int) -> int:
        return self.factor * x


def test_function_defined_in_the_test_module() -> None:
    assert square(7).get_result(timeout=TIMEOUT) == 49


def test_nested_function_with_a_closure() -> None:
    offset = 100

    @task
    def shifted(x: int) -> int:
        return x + offset

    assert shifted(1).get_result(timeout=TIMEOUT) == 101


def test_lambda_passed_as_an_argument() -> None:
    base = 40
    assert apply(lambda x: x + base, 2).get_result(timeout=TIMEOUT) == 42


def test_method_defined_as_a_task_in_a_class_body() -> None:
    assert Account(10).deposit(5).get_result(timeout=TIMEOUT) == 15


def test_callable_object() -> None:
    triple = task(Multiplier(3))
    assert triple(4).get_result(timeout=TIMEOUT) == 12


MAIN_SCRIPT = """\
import sys
from dataclasses import dataclass
from woflo import task

print("top-level code ran", flush=True)

class MainError(Exception):
    pass

@dataclass
class Point:
    x: int
    y: int

@task
def mirror(p):
    return Point(-p.x, -p.y)

@task
def boom():
    raise MainError("raised in __main__")

@task
def apply(fn, x):
    return fn(x)

def make_scaler(k):
    @task
    def scale(x):
        return x * k
    return scale

class Box:
    def __init__(self, v):
        self.v = v

    @task
    def get(self):
        return self.v

class Adder:
    def __call__(self, a, b):
        return a + b

runs = [mirror(Point(1, 2)) for _ in range(3)]
print("points", [r.get_result(timeout=20) == Point(-1, -2) for r in runs])
try:
    boom().get_result(timeout=20)
except MainError as exc:
    print("caught", type(exc).__name__, exc, type(exc.__cause__).__name__)
print("nested", make_scaler(3)(5).get_result(timeout=20))
print("lambda", apply(lambda v: v * 2, 21).get_result(timeout=20))
print("method", Box("boxed").get().get_result(timeout=20))
print("callable", task(Adder())(2, 3).get_result(timeout=20))
"""

MAIN_EXPECTED = [
    "top-level code ran",
    "points [True, True, True]",
    "caught MainError raised in __main__ RemoteTraceback",
    "nested 15",
    "lambda 42",
    "method boxed",
    "callable 5",
]


@pytest.mark.parametrize(
    "flags",
    [(), ("-X", "dev", "-W", "error::DeprecationWarning")],
    ids=["plain", "dev-mode-deprecation-errors"],
)
def test_script_without_main_guard(tmp_path: Path, flags: tuple[str, ...]) -> None:
    """Top-level calls, no ``if __name__ == "__main__"``: the script runs once, in the caller
    only; functions, classes, closures and lambdas of ``__main__`` reach the workers, and the
    caller gets its own classes back. In dev mode, with DeprecationWarning an error, nothing is
    printed to stderr: no fork-with-threads warning, no unclosed resources at exit."""
    script = tmp_path / "main_script.py"
    script.write_text(MAIN_SCRIPT)
    # (the logging plugin would report the deliberate failure on stderr)
    proc = run_script(script, flags=flags, env={"WOFLO_LOG_LEVEL": "critical"}, timeout=60)
    assert proc.stderr == ""
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == MAIN_EXPECTED


# ---- every call starts at once; limits when asked for -------------------------------------


def test_every_call_starts_at_once(configure: Any, tmp_path: Path, runs: list[Any]) -> None:
    """Runs that each wait until all have arrived can only finish if they run together: first
    on a cold pool, then on a warm one with fewer idle workers than calls."""
    for round_, count in enumerate((os.cpu_count() or 2, (os.cpu_count() or 2) + 4)):
        place = tmp_path / f"round{round_}"
        place.mkdir()
        batch = [meet(place, f"run{i}", count) for i in range(count)]
        runs += batch
        pids = [run.get_result(timeout=TIMEOUT) for run in batch]
        assert len(set(pids)) == count


def _cpu_seconds_while_waiting(run: Any, seconds: float) -> float:
    """CPU time this process spends while ``run.wait(seconds)`` blocks (the run stays pending)."""
    start = time.process_time()
    assert not run.wait(seconds)
    return time.process_time() - start


def test_warm_worker_is_reused() -> None:
    pids = [getpid().get_result(timeout=TIMEOUT) for _ in range(5)]
    assert len(set(pids)) == 1
    assert pids[0] != os.getpid()


def test_max_concurrency_keeps_runs_pending(gate: Gate, runs: list[Any]) -> None:
    first, second = one_running_one_pending(gate, runs)
    # Other tasks are not held back by this task's cap, and the pool had time to go wrong.
    assert add(1, 2).get_result(timeout=TIMEOUT) == 3
    assert first.state is RunState.RUNNING
    assert second.state is RunState.PENDING
    assert second.is_running()
    # Waiting is idle: the watcher thread does not spin while a run waits for its turn.
    assert _cpu_seconds_while_waiting(second, 0.5) < 0.25
    assert second.state is RunState.PENDING
    assert not gate.started("second")
    gate.release()
    assert first.get_result(timeout=TIMEOUT) > 0
    assert second.get_result(timeout=TIMEOUT) > 0
    assert second.attempts == 1


def test_max_workers_caps_the_pool(configure: Any, gate: Gate, runs: list[Any]) -> None:
    configure(max_workers=2)
    runs += [held(gate.path, f"run{i}") for i in range(4)]
    wait_for(lambda: sum(r.state is RunState.RUNNING for r in runs) == 2, what="2 running")
    assert pool_counts() == {"idle": 0, "busy": 2, "starting": 0, "pending": 2}
    assert sorted(r.state.value for r in runs) == ["pending", "pending", "running", "running"]
    pending = next(r for r in runs if r.state is RunState.PENDING)
    assert _cpu_seconds_while_waiting(pending, 0.5) < 0.25
    assert pool_counts() == {"idle": 0, "busy": 2, "starting": 0, "pending": 2}
    gate.release()
    pids = {run.get_result(timeout=TIMEOUT) for run in runs}
    assert len(pids) <= 2


def test_idle_workers_retire(configure: Any) -> None:
    configure(idle_timeout=0.2)
    pid = getpid().get_result(timeout=TIMEOUT)
    wait_gone([pid], timeout=5)
    zero = {"idle": 0, "busy": 0, "starting": 0, "pending": 0}
    wait_for(lambda: pool_counts() == zero, timeout=5, what="no workers")
    assert getpid().get_result(timeout=TIMEOUT) not in (pid, os.getpid())


# ---- interpreter exit, output, logs ---------------------------------------------------------


def test_exit_waits_for_runs_still_going(tmp_path: Path) -> None:
    script = tmp_path / "ends_early.py"
    script.write_text(
        textwrap.dedent(
            """\
            import time
            from woflo import task

            @task
            def slow():
                time.sleep(0.5)
                print("slow task done", flush=True)

            slow()
            print("end of script", flush=True)
            """
        )
    )
    proc = run_script(script)
    assert proc.stderr == ""
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == ["end of script", "slow task done"]


def test_output_and_logs_reach_the_parent(tmp_path: Path) -> None:
    script = tmp_path / "talks.py"
    script.write_text(
        textwrap.dedent(
            """\
            import logging, os, sys
            from woflo import task

            logging.basicConfig(
                level=logging.INFO,
                format="LOG %(name)s %(levelname)s %(task)s %(attempt)s %(process)d %(message)s",
            )

            @task
            def talk():
                print("stdout from", os.getpid())
                print("stderr from", os.getpid(), file=sys.stderr)
                logging.getLogger("user.module").info("info from the task")
                return os.getpid()

            print("worker", talk().get_result(timeout=20))
            """
        )
    )
    proc = run_script(script)
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.splitlines()[-1]
    assert last.startswith("worker ")
    pid = int(last.split()[1])
    assert f"stdout from {pid}" in proc.stdout.splitlines()
    assert f"stderr from {pid}" in proc.stderr.splitlines()
    assert f"LOG user.module INFO talk 1 {pid} info from the task" in proc.stderr.splitlines()


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_log_records_reach_the_parent_handlers_with_run_context() -> None:
    name = "woflo.tests.multiprocess"
    handler = _Records()
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        run = log_warning(name, "hello")
        pid = run.get_result(timeout=TIMEOUT)
    finally:
        logger.removeHandler(handler)
    [record] = [r for r in handler.records if r.getMessage().startswith("hello")]
    assert record.getMessage() == f"hello from pid {pid}"
    assert record.levelno == logging.WARNING
    assert record.name == name
    assert record.process == pid != os.getpid()
    assert record.task == "log_warning"  # type: ignore[attr-defined]
    assert record.run_id == run.run_id  # type: ignore[attr-defined]
    assert record.attempt == 1  # type: ignore[attr-defined]
