"""The logging plugin: lifecycle events through structlog, visible by default on failure."""

from __future__ import annotations

import json
from typing import Any

import pytest

from woflo import task
from woflo.runners import SequentialTaskRun


class Unlucky(Exception):
    pass


def _fails_once() -> Any:
    calls: list[int] = []

    def load_data() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise Unlucky("disk on fire")
        return "ok"

    return load_data


def _always_fails() -> None:
    raise Unlucky("disk on fire")


def _lines_with(lines: list[str], event: str) -> list[str]:
    return [line for line in lines if event in line]


def test_failures_and_retries_are_visible_by_default(capfd: pytest.CaptureFixture[str]) -> None:
    run = task(runner=SequentialTaskRun, retries=1, name="load_data")(_always_fails)()
    out, err = capfd.readouterr()
    assert out == ""
    lines = err.splitlines()
    [retrying] = _lines_with(lines, "task.retrying")
    assert "load_data" in retrying
    assert "Unlucky('disk on fire')" in retrying
    assert run.run_id in retrying
    assert "attempt=1" in retrying
    assert "delay=0.0" in retrying
    [failed] = _lines_with(lines, "task.failed")
    assert "load_data" in failed
    assert "disk on fire" in failed
    assert "attempt=2" in failed
    assert "Traceback" in err  # the final error comes with its traceback
    assert not _lines_with(lines, "task.started")  # per-run info lines are hidden by default
    assert not _lines_with(lines, "task.completed")


def test_a_success_is_quiet_by_default(capfd: pytest.CaptureFixture[str]) -> None:
    task(runner=SequentialTaskRun)(lambda: 1)()
    assert capfd.readouterr() == ("", "")


def test_info_level_shows_every_run(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WOFLO_LOG_LEVEL", "INFO")
    run = task(runner=SequentialTaskRun, name="greet")(lambda: "hi")()
    lines = capfd.readouterr().err.splitlines()
    [started] = _lines_with(lines, "task.started")
    [completed] = _lines_with(lines, "task.completed")
    assert "greet" in started
    assert "runner=sequential" in started
    assert "greet" in completed
    assert run.run_id in completed
    assert "duration=" in completed


def test_error_level_hides_retries(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WOFLO_LOG_LEVEL", "error")
    task(runner=SequentialTaskRun, retries=1)(_always_fails)()
    err = capfd.readouterr().err
    assert "task.retrying" not in err
    assert "task.failed" in err


def test_a_bad_level_warns_and_falls_back_to_warning(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WOFLO_LOG_LEVEL", "chatty")
    task(runner=SequentialTaskRun, retries=1)(_fails_once())()
    err = capfd.readouterr().err
    assert "WOFLO_LOG_LEVEL='chatty' is not a level" in err
    assert "task.retrying" in err


def test_a_bad_format_warns_and_falls_back_to_console(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WOFLO_LOG_FORMAT", "xml")
    task(runner=SequentialTaskRun, retries=1)(_fails_once())()
    err = capfd.readouterr().err
    assert "WOFLO_LOG_FORMAT='xml' is not a format (console, json); using console" in err
    assert "[warning  ] task.retrying" in err  # the console format


def test_json_lines(capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WOFLO_LOG_FORMAT", "json")
    monkeypatch.setenv("WOFLO_LOG_LEVEL", "info")
    ok = task(runner=SequentialTaskRun, name="ok")(lambda: 1)()
    bad = task(runner=SequentialTaskRun, name="bad", retries=1)(_always_fails)()
    events = [json.loads(line) for line in capfd.readouterr().err.splitlines()]
    assert [(e["event"], e["task"]) for e in events] == [
        ("task.started", "ok"),
        ("task.completed", "ok"),
        ("task.started", "bad"),
        ("task.attempt_failed", "bad"),
        ("task.retrying", "bad"),
        ("task.attempt_failed", "bad"),
        ("task.failed", "bad"),
    ]
    for event in events:
        assert event["run_id"] in (ok.run_id, bad.run_id)
        assert isinstance(event["attempt"], int)
        assert "timestamp" in event
    completed, retrying, failed = events[1], events[4], events[6]
    assert completed["level"] == "info"
    assert completed["attempt"] == 1
    assert isinstance(completed["duration"], float)
    assert retrying["level"] == "warning"
    assert retrying["attempt"] == 1
    assert retrying["error"] == "Unlucky('disk on fire')"
    assert retrying["delay"] == 0.0
    assert isinstance(retrying["duration"], float)
    assert failed["level"] == "error"
    assert failed["attempt"] == 2
    assert failed["duration"] >= 0
    assert "Unlucky: disk on fire" in failed["exception"]


def test_events_flow_through_the_applications_structlog(
    structlog_reset: None, capfd: pytest.CaptureFixture[str]
) -> None:
    import structlog

    structlog.configure(processors=[structlog.processors.KeyValueRenderer()])
    with structlog.testing.capture_logs() as events:
        run = task(runner=SequentialTaskRun, name="job", retries=1)(_fails_once())()
    assert [e["event"] for e in events] == [
        "task.started",
        "task.attempt_failed",
        "task.retrying",
        "task.completed",
    ]
    for event in events:
        assert event["task"] == "job"
        assert event["run_id"] == run.run_id
    assert [e["log_level"] for e in events] == ["info", "info", "warning", "info"]
    assert events[2]["attempt"] == 1
    assert events[3]["attempt"] == 2
    assert "duration" in events[2]
    assert "task." not in capfd.readouterr().err  # woflo's own printer stayed out of it


def test_structlog_contextvars_inside_a_task(structlog_reset: None) -> None:
    import structlog

    @task(runner=SequentialTaskRun, name="ctx", retries=1)
    def context() -> dict[str, Any]:
        ctx = structlog.contextvars.get_contextvars()
        if ctx["attempt"] == 1:
            raise Unlucky("again")
        return ctx

    run = context()
    assert run.get_result() == {"task": "ctx", "run_id": run.run_id, "attempt": 2}
    assert structlog.contextvars.get_contextvars() == {}  # unbound after the attempt


def test_the_tasks_own_log_lines_carry_the_run(structlog_reset: None) -> None:
    import structlog

    @task(runner=SequentialTaskRun, name="user_code")
    def logs() -> None:
        structlog.get_logger().info("loading", rows=3)

    structlog.configure(processors=[structlog.contextvars.merge_contextvars])
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as ev:
        run = logs()
    [mine] = [e for e in ev if e["event"] == "loading"]
    assert mine["task"] == "user_code"
    assert mine["run_id"] == run.run_id
    assert mine["attempt"] == 1
    assert mine["rows"] == 3
