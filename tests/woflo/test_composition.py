"""Runs that feed runs, across runners; groups, waiting, asyncio, progress (what the
conformance suite does not cover runner by runner)."""

from __future__ import annotations

import asyncio
import io
import json
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

import woflo
from tests.woflo_plugins.multiprocess._support import Gate, add, fail, held, run_script
from woflo import (
    FIRST_EXCEPTION,
    RunGroup,
    RunState,
    as_completed,
    progress,
    task,
    unmapped,
    wait,
)
from woflo.errors import OptionTypeError, OptionValueError, TaskTimeout, UpstreamFailed, WaitTimeout
from woflo.runners import SequentialTaskRun
from woflo.testing import async_add

TIMEOUT = 30.0
seq_add = task(runner=SequentialTaskRun, name="seq_add")(add.fn)


def test_a_multiprocess_run_feeds_a_sequential_one_and_back() -> None:
    a = add(1, 2)  # multiprocess
    b = seq_add(a, 10)  # blocks in the caller until a completed, then runs here
    assert (b.state, b.get_result()) == (RunState.COMPLETED, 13)
    c = add(b, seq_add(1, 1))
    assert c.get_result(timeout=TIMEOUT) == 15


def test_a_dependent_on_a_held_run_stays_pending_without_a_thread(gate: Gate) -> None:
    upstream = held(gate.path, "up")
    gate.pid("up")
    before = threading.active_count()
    dependents = [add(upstream, i) for i in range(50)]
    assert threading.active_count() == before  # no thread per waiting run
    assert {d.state for d in dependents} == {RunState.PENDING}
    gate.release()
    assert [d.get_result(timeout=TIMEOUT) for d in dependents] == [
        upstream.get_result() + i for i in range(50)
    ]


def test_upstream_failed_is_logged_naming_the_upstream(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WOFLO_LOG_FORMAT", "json")
    broken = fail("no")
    run = add(broken, 1)
    assert run.wait(TIMEOUT)
    events = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line[:1] == "{"]
    [event] = [e for e in events if e["event"] == "task.upstream_failed"]
    assert (event["run_id"], event["upstream_run_id"]) == (run.run_id, broken.run_id)
    assert (event["upstream_task"], event["upstream_state"], event["attempt"]) == (
        "fail",
        "failed",
        0,
    )
    assert event["level"] == "warning"


def test_a_chain_of_dependent_runs() -> None:
    run = add(0, 1)
    for _ in range(30):
        run = add(run, 1)
    assert run.get_result(timeout=TIMEOUT) == 31


def test_map_refuses_what_it_cannot_map_at_the_call() -> None:
    with pytest.raises(OptionTypeError, match="cannot iterate run"):
        add.map(add(1, 1), unmapped(1))
    with pytest.raises(OptionTypeError, match="takes iterables"):
        add.map(3, [1])
    with pytest.raises(OptionTypeError, match="at least one iterable"):
        add.map(unmapped(1), unmapped(2))
    with pytest.raises(OptionValueError, match=r"different lengths \(2, 3\)"):
        add.map([1, 2], b=[1, 2, 3])


def test_a_group_is_a_sequence_of_runs_used_as_one(gate: Gate) -> None:
    group = add.map(range(5), b=unmapped(1))
    assert isinstance(group, RunGroup)
    assert isinstance(group[1:3], RunGroup)
    assert len(group[1:3]) == 2
    assert group.get_result(timeout=TIMEOUT) == [1, 2, 3, 4, 5]
    assert [r.get_result() for r in group] == [1, 2, 3, 4, 5]
    assert group.wait(0)
    assert "5 completed" in repr(group)
    mixed = RunGroup([add(1, 1), fail("second"), held(gate.path, "third")])
    with pytest.raises(ValueError, match="second"):  # the first error, in order
        mixed.get_result(timeout=TIMEOUT)
    assert mixed.is_running()
    assert mixed.stop() == 1
    assert not mixed.is_running()


def test_wait_first_exception_and_bad_arguments(gate: Gate) -> None:
    slow = held(gate.path, "slow")
    broken = fail("early")
    done, not_done = wait([slow, broken], timeout=TIMEOUT, return_when=FIRST_EXCEPTION)
    assert (done, not_done) == ({broken}, {slow})
    with pytest.raises(OptionValueError, match="return_when"):
        wait([slow], return_when="SOMETIMES")
    with pytest.raises(OptionTypeError, match="iterable of runs"):
        wait(slow)  # type: ignore[arg-type]
    with pytest.raises(OptionTypeError, match="takes runs"):
        list(as_completed([1]))  # type: ignore[list-item]
    done, not_done = wait([slow], timeout=0.01)
    assert (done, not_done) == (set(), {slow})
    slow.stop()


def test_await_never_blocks_the_event_loop(gate: Gate) -> None:
    async def main() -> tuple[int, int, list[int]]:
        upstream = held(gate.path, "awaited")
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while upstream.is_running():
                ticks += 1
                await asyncio.sleep(0.005)

        ticker = asyncio.ensure_future(tick())
        await asyncio.sleep(0.05)
        gate.release()
        pid = await upstream
        await ticker
        group = add.map([1, 2], [3, 4])
        return pid, ticks, await group

    pid, ticks, values = asyncio.run(main())
    assert pid > 0
    assert ticks >= 5  # the loop went on while the run was awaited
    assert values == [4, 6]


def test_awaiting_a_failed_run_raises_its_error() -> None:
    async def main() -> None:
        await fail("awaited error")

    with pytest.raises(ValueError, match="awaited error"):
        asyncio.run(main())


def test_an_async_task_on_the_sequential_runner_called_from_a_running_loop() -> None:
    """The call blocks, as a sequential call does, and runs the coroutine in a loop of its own
    on a helper thread: no un-awaited coroutine, no deadlock."""
    seq_async = task(runner=SequentialTaskRun)(async_add)

    async def main() -> Any:
        run = seq_async(2, 3)
        return run.state, run.get_result(), await run

    assert asyncio.run(main()) == (RunState.COMPLETED, 5, 5)


async def sleeps_async(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "woke"


def test_timeout_and_stop_kill_an_async_task_in_its_worker() -> None:
    slow = task(timeout=0.3)(sleeps_async)(60)
    assert slow.wait(TIMEOUT)
    assert slow.state is RunState.TIMED_OUT
    assert isinstance(slow.exception(), TaskTimeout)
    stopped = task(sleeps_async)(60)
    assert stopped.stop()
    assert stopped.state is RunState.STOPPED


def test_progress_draws_a_bar_on_a_terminal_and_lines_otherwise() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    runs = [add(i, i) for i in range(4)] + [fail("x")]
    shown = Terminal()
    assert progress(runs, timeout=TIMEOUT, file=shown) == runs
    text = shown.getvalue()
    assert text.startswith("\r[")
    assert "5/5" in text
    assert "4 completed" in text
    assert "1 failed" in text
    plain = io.StringIO()
    progress(runs, file=plain)
    lines = plain.getvalue().splitlines()
    assert lines
    assert all(line.startswith("[") for line in lines)
    assert "\r" not in plain.getvalue()


def test_progress_times_out(gate: Gate) -> None:
    slow = held(gate.path, "slow-progress")
    with pytest.raises(WaitTimeout, match="1 of 1 runs still going"):
        progress([slow], timeout=0.05, file=io.StringIO())
    slow.stop()


def test_upstream_failed_error_pickles_without_its_run() -> None:
    import pickle

    error = UpstreamFailed("x", run=add(1, 1))
    again = pickle.loads(pickle.dumps(error))
    assert (type(again), str(again), again.run) == (UpstreamFailed, "x", None)


def test_the_issue_example_in_a_script_without_a_main_guard(tmp_path: Path) -> None:
    script = tmp_path / "compose.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio
            from woflo import task, wait, as_completed, unmapped

            @task
            def load(i):
                return i * 10

            @task
            def combine(a, b):
                return a + b

            @task
            def scale(x, factor):
                return x * factor

            @task
            def total(xs):
                return sum(xs)

            @task
            async def fetch(url):
                await asyncio.sleep(0)
                return url.upper()

            a, b = load(1), load(2)
            c = combine(a, b)
            group = scale.map(range(100), unmapped(10))
            t = total(group)
            print("total", t.get_result())
            done, not_done = wait([a, b, c], timeout=30)
            print("wait", len(done), len(not_done), c.get_result())
            print("completed", sorted(r.get_result() for r in as_completed(group, timeout=60))[-1])

            async def main():
                return await asyncio.gather(fetch("u1"), fetch("u2"))

            print("async", asyncio.run(main()))
            left = combine(load(5), 1)  # the program ends while it waits: the exit waits for it
            left.add_done_callback(lambda run: print("at exit", run.get_result(), flush=True))
            """
        )
    )
    result = run_script(script, env={"PYTHONUNBUFFERED": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "total 49500",
        "wait 3 0 30",
        "completed 990",
        "async ['U1', 'U2']",
        "at exit 51",
    ]


def test_the_public_names_are_exported() -> None:
    for name in ("wait", "as_completed", "unmapped", "allow_failure", "RunGroup", "progress"):
        assert name in woflo.__all__
