"""The logging pipeline end to end: lifecycle events, worker records and structlog events."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._helpers import Keep
from tests.woflo_plugins import _log_tasks as tasks
from woflo import RunState, task
from woflo.runners import SequentialTaskRun

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # workers import the task module by name
    sys.path.insert(0, str(ROOT))


@pytest.fixture
def keep() -> Iterator[Keep]:
    handler = Keep()
    logger = logging.getLogger("acme")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _events(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def test_one_event_per_lifecycle_step_with_levels(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WOFLO_LOG_LEVEL", "debug")
    monkeypatch.setenv("WOFLO_LOG_FORMAT", "json")
    flaky = task(name="flaky", retries=1, retry_sleep_time=0.01)(tasks.fail)
    assert flaky("boom").wait(30)
    ok = task(name="ok")(tasks.nap)
    assert ok(0).get_result(timeout=30) == 0
    slow = task(name="slow", timeout=0.2)(tasks.nap)
    assert slow(30).wait(30)
    stopped = task(name="stopped")(tasks.nap)(30)
    stopped.stop()
    events = _events(capfd.readouterr().err)
    by_task: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for event in events:
        assert {"task", "run_id", "attempt", "timestamp", "level"} <= event.keys()
        by_task[event["task"]].append((event["event"], event["level"]))
    assert by_task["flaky"] == [
        ("task.started", "info"),
        ("task.attempt_failed", "info"),
        ("task.retrying", "warning"),
        ("task.attempt_failed", "info"),
        ("task.failed", "error"),
    ]
    assert by_task["ok"] == [("task.started", "info"), ("task.completed", "info")]
    assert by_task["slow"][-1] == ("task.timed_out", "error")
    assert by_task["stopped"][-1] == ("task.stopped", "warning")
    [retrying] = [e for e in events if e["event"] == "task.retrying"]
    assert (retrying["attempt"], retrying["delay"]) == (1, 0.01)
    assert "boom" in retrying["error"]
    [failed] = [e for e in events if e["event"] == "task.failed"]
    assert failed["attempt"] == 2
    assert failed["duration"] > 0
    assert "ValueError: boom" in failed["exception"]  # the traceback, as text


def test_the_default_level_shows_failures_not_successes(
    capfd: pytest.CaptureFixture[str],
) -> None:
    task(runner=SequentialTaskRun, name="fine")(tasks.nap)(0)
    task(runner=SequentialTaskRun, name="broken")(tasks.fail)("nope")
    err = capfd.readouterr().err
    assert "task.failed" in err
    assert "broken" in err
    assert "fine" not in err


@pytest.mark.parametrize("runner", ["sequential", "multiprocess"])
def test_tasks_see_their_context_in_structlog_contextvars(runner: str) -> None:
    import structlog  # noqa: F401  (in use in this process)

    run = task(runner=runner)(tasks.context)()
    context = run.get_result(timeout=30)
    assert context == {"task": "context", "run_id": run.run_id, "attempt": 1}


def test_every_worker_line_arrives_exactly_once_in_order(keep: Keep) -> None:
    flood = task(name="flood")(tasks.flood)
    runs = [flood("acme.flood", 500) for _ in range(20)]
    assert all(run.wait(60) for run in runs)
    assert {run.state for run in runs} == {RunState.COMPLETED}
    lines: dict[str, list[int]] = defaultdict(list)
    for record in keep.records:
        assert record.name == "acme.flood"
        lines[record.run_id].append(int(record.getMessage().split()[1]))  # type: ignore[attr-defined]
    assert set(lines) == {run.run_id for run in runs}
    for run in runs:
        assert lines[run.run_id] == list(range(500))  # every line once, in order
    record = keep.records[0]
    assert record.levelno == logging.WARNING
    assert record.task == "flood"  # type: ignore[attr-defined]
    assert record.attempt == 1  # type: ignore[attr-defined]
    assert record.process != os.getpid()  # the worker's pid
    assert record.created <= time.time()


def test_a_worker_killed_while_logging_breaks_nothing(keep: Keep, tmp_path: Path) -> None:
    started = tmp_path / "started"
    spammer = task(name="spammer")(tasks.log_forever)("acme.spam", str(started))
    deadline = time.monotonic() + 30
    while not started.exists():
        assert time.monotonic() < deadline
        time.sleep(0.005)
    while not keep.records:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert spammer.stop()
    assert spammer.state is RunState.STOPPED
    # the channel is intact: the next runs log and finish normally
    keep.records.clear()
    runs = [task(name="after")(tasks.flood)("acme.after", 50) for _ in range(3)]
    assert all(run.wait(30) for run in runs)
    assert len([r for r in keep.records if r.name == "acme.after"]) == 150
    for record in keep.records:
        if record.name == "acme.spam":  # a line cut mid-frame never arrives half-made
            assert record.getMessage().startswith("spam ")
