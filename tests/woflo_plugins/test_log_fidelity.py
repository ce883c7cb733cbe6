"""A worker's structlog event reads as it would in-process, rendered by the caller's structlog
configuration; nothing is lost; print() lines stay whole (issue: log fidelity)."""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from tests._helpers import TIMEOUT, Keep, wait_for
from tests.woflo_plugins import _log_tasks as tasks
from tests.woflo_plugins.multiprocess._support import add, run_script
from woflo import RunState, task

LINE = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \[(?P<level>\w+)\s*\] (?P<event>\S+)\s+(?P<kv>.*)$"
)


def _console(line: str) -> dict[str, str]:
    """One line of structlog's default ConsoleRenderer (no colours), as fields."""
    match = LINE.match(line)
    assert match, line
    fields = dict(pair.split("=", 1) for pair in match["kv"].split())
    return {"timestamp": match["time"], "level": match["level"], "event": match["event"], **fields}


def test_on_structlog_defaults_a_worker_line_reads_as_the_in_process_one(tmp_path: Path) -> None:
    """Nothing configured: structlog's own defaults render both, in the caller; the worker's
    line has every field of the in-process one (the user's context too), plus its pid."""
    script = tmp_path / "defaults.py"
    script.write_text(
        textwrap.dedent(
            """
            import os
            import structlog
            from woflo import task
            from woflo.runners import SequentialTaskRun

            def rows():
                structlog.contextvars.bind_contextvars(user="ann")
                structlog.get_logger().warning("rows-counted", n=5, table="users")
                structlog.contextvars.unbind_contextvars("user")

            there = task(name="rows")(rows)()
            there.wait(30)
            here = task(name="rows", runner=SequentialTaskRun)(rows)()
            print("runs", there.run_id, here.run_id, os.getpid())
            """
        )
    )
    result = run_script(script, env={"PYTHONUNBUFFERED": "1"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    there_id, here_id, caller = lines[-1].split()[1:]
    events = [_console(line) for line in lines if "rows-counted" in line]
    worker, local = sorted(events, key=lambda e: e["run_id"] != there_id)
    assert (worker["run_id"], local["run_id"]) == (there_id, here_id)
    assert int(worker.pop("pid")) not in (int(caller), 0)
    del worker["run_id"], local["run_id"], worker["timestamp"], local["timestamp"]
    assert (
        worker
        == local
        == {
            "level": "warning",
            "event": "rows-counted",
            "attempt": "1",
            "n": "5",
            "table": "users",
            "task": "rows",
            "user": "ann",
        }
    )


def test_on_a_json_config_a_worker_event_has_the_in_process_fields_and_the_worker_time(
    tmp_path: Path,
) -> None:
    """The application's processors render it, in the caller: field by field as the same event
    in-process (a value that does not pickle as its ``repr``, as JSONRenderer writes it), at the
    time the worker logged it, though the caller renders it later (its first event is slow)."""
    script = tmp_path / "json_config.py"
    script.write_text(
        textwrap.dedent(
            """
            import time
            import structlog
            from woflo import task
            from woflo.runners import SequentialTaskRun

            def slow_first(logger, name, event_dict):
                if event_dict["event"] == "first":
                    time.sleep(0.3)  # user code in the caller, slow on the first event
                event_dict["rendered_at"] = time.time()
                return event_dict

            structlog.configure(
                processors=[
                    structlog.contextvars.merge_contextvars,
                    structlog.processors.add_log_level,
                    slow_first,
                    structlog.processors.TimeStamper(fmt="iso"),
                    structlog.processors.JSONRenderer(),
                ]
            )

            class Handle:
                def __reduce__(self):
                    raise TypeError("a handle does not pickle")
                def __repr__(self):
                    return "<Handle 7>"

            def events():
                log = structlog.get_logger()
                log.info("first")
                logged_at = time.time()
                log.info("second", n=5, nested={"x": [1, 2]}, handle=Handle())
                return logged_at

            there = task(name="events")(events)()
            print("logged_at", there.get_result(timeout=30))
            task(name="events", runner=SequentialTaskRun)(events)()
            """
        )
    )
    result = run_script(script, env={"WOFLO_LOG_LEVEL": "error"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    [logged_at] = [float(line.split()[1]) for line in lines if line.startswith("logged_at")]
    seconds = [json.loads(line) for line in lines if '"second"' in line]
    worker, local = sorted(seconds, key=lambda e: "pid" not in e)
    stamped = datetime.datetime.fromisoformat(worker["timestamp"]).timestamp()
    assert abs(stamped - logged_at) < 0.05  # the worker's time
    assert worker["rendered_at"] - stamped >= 0.25  # rendered later, behind the slow first
    assert isinstance(worker.pop("pid"), int)
    for event in (worker, local):
        del event["run_id"], event["timestamp"], event["rendered_at"]
    assert worker == local
    assert worker == {
        "n": 5,
        "nested": {"x": [1, 2]},
        "handle": "<Handle 7>",
        "event": "second",
        "task": "events",
        "attempt": 1,
        "level": "info",
    }


class _Collect:
    """A structlog processor that keeps every event dict (and drops it)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, logger: Any, name: str, event_dict: dict[str, Any]) -> Any:
        import structlog

        with self.lock:
            self.events.append(dict(event_dict))
        raise structlog.DropEvent


@pytest.fixture
def collected(structlog_reset: None) -> _Collect:
    import structlog

    collect = _Collect()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            collect,
        ]
    )
    return collect


@pytest.mark.slow
def test_20_workers_x_1000_events_arrive_exactly_once_in_order_fields_intact(
    configure: Any, collected: _Collect
) -> None:
    configure(max_workers=20)
    runs = [task(name="flood")(tasks.structlog_flood)(1000, f"r{n}") for n in range(20)]
    tags = {run.run_id: f"r{n}" for n, run in enumerate(runs)}
    pids = {run.run_id: run.get_result(timeout=120) for run in runs}
    ticks = [e for e in collected.events if e["event"] == "tick"]
    assert len(ticks) == 20_000
    assert len({e["uid"] for e in ticks}) == 20_000
    by_run: dict[str, list[int]] = {}
    for event in ticks:
        assert event["uid"] == f"{tags[event['run_id']]}-{event['seq']}"
        assert event["payload"] == {"i": event["seq"], "s": "x" * 20}
        assert (event["task"], event["attempt"], event["level"]) == ("flood", 1, "info")
        assert event["pid"] == pids[event["run_id"]]
        by_run.setdefault(event["run_id"], []).append(event["seq"])
    assert by_run == {run.run_id: list(range(1000)) for run in runs}


def test_events_logged_just_before_a_crash_or_a_stop_arrive(
    collected: _Collect, tmp_path: Path
) -> None:
    crashed = task(name="exits")(tasks.structlog_then_exit)()
    assert crashed.wait(TIMEOUT)
    assert crashed.state is RunState.CRASHED
    started = tmp_path / "started"
    held = task(name="held")(tasks.structlog_then_hold)(str(started))
    wait_for(started.exists, what="the task to log and hold")
    assert held.stop()
    assert held.wait(TIMEOUT)
    events = {e["event"]: e for e in collected.events}
    assert (events["last-words"]["run_id"], events["last-words"]["n"]) == (crashed.run_id, 1)
    assert (events["before-stop"]["run_id"], events["before-stop"]["n"]) == (held.run_id, 2)


def test_a_worker_flooding_events_does_not_hold_up_other_runs(
    collected: _Collect, tmp_path: Path, runs: list[Any]
) -> None:
    """Back-pressure is per worker: the flooding worker blocks in its own log calls once its
    socket is full, while the caller reads one message per ready worker per turn."""
    started = tmp_path / "started"
    flood = task(name="spam")(tasks.structlog_forever)(str(started))
    runs.append(flood)
    wait_for(lambda: any(e["event"] == "spam" for e in collected.events), what="the flood")
    assert [add(i, i).get_result(timeout=10) for i in range(20)] == [2 * i for i in range(20)]
    assert flood.is_running()
    assert flood.stop()


def test_structlog_routed_to_the_stdlib_arrives_on_the_logger_it_was_logged_on(
    structlog_reset: None,
) -> None:
    import structlog

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.render_to_log_kwargs,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    keep = Keep()
    logger = logging.getLogger("acme.structlog")
    logger.addHandler(keep)
    logger.setLevel(logging.DEBUG)
    try:
        run = task(name="loader")(tasks.structlog_event)("acme.structlog")
        result = run.get_result(timeout=TIMEOUT)
    finally:
        logger.removeHandler(keep)
        logger.setLevel(logging.NOTSET)
    [record] = [r for r in keep.records if r.name == "acme.structlog"]
    assert record.getMessage() == "rows.loaded"
    assert record.levelno == logging.WARNING
    assert record.rows == 5  # type: ignore[attr-defined]
    assert record.pid == result["pid"] != os.getpid()  # type: ignore[attr-defined]
    assert (record.task, record.run_id, record.attempt) == ("loader", run.run_id, 1)  # type: ignore[attr-defined]
    assert result["context"] == {"task": "loader", "run_id": run.run_id, "attempt": 1}


def test_stdlib_records_keep_their_extra_fields_and_traceback_text() -> None:
    keep = Keep()
    logger = logging.getLogger("acme.stdlib")
    logger.addHandler(keep)
    logger.setLevel(logging.DEBUG)
    try:
        run = task(name="stdlib")(tasks.stdlib_record_with_extra_and_traceback)("acme.stdlib")
        pid = run.get_result(timeout=TIMEOUT)
    finally:
        logger.removeHandler(keep)
        logger.setLevel(logging.NOTSET)
    loaded, failed = keep.records
    assert (loaded.getMessage(), loaded.levelno, loaded.table, loaded.rows) == (  # type: ignore[attr-defined]
        "loaded 7 rows",
        logging.WARNING,
        "users",
        7,
    )
    assert (loaded.process, loaded.run_id, loaded.task) == (pid, run.run_id, "stdlib")  # type: ignore[attr-defined]
    assert failed.levelno == logging.ERROR
    assert failed.exc_text is not None
    assert "KeyError: 'missing'" in failed.exc_text
    assert "lookup failed" in logging.Formatter().format(failed)
    assert "Traceback (most recent call last)" in logging.Formatter().format(failed)


def test_without_the_logging_plugin_workers_leave_structlog_alone(tmp_path: Path) -> None:
    """How workers log structlog events is the logging plugin's: the runner only carries."""
    script = tmp_path / "no_plugin.py"
    script.write_text(
        textwrap.dedent(
            """
            import structlog
            from woflo import task

            def configured():
                return structlog.is_configured()

            print("configured in the worker:", task(configured)().get_result(timeout=30))
            """
        )
    )
    on = run_script(script)
    off = run_script(script, env={"WOFLO_DISABLE_PLUGINS": "logging"})
    assert on.returncode == off.returncode == 0, (on.stderr, off.stderr)
    assert "configured in the worker: True" in on.stdout
    assert "configured in the worker: False" in off.stdout


@pytest.mark.parametrize("unbuffered", ["0", "1"])
def test_print_lines_from_workers_arrive_whole_and_in_order(
    tmp_path: Path, unbuffered: str
) -> None:
    """8 workers printing at once: every line whole, each worker's in order, under either
    buffering; a partial line (no newline) goes out when its attempt ends."""
    script = tmp_path / "chatter.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            from woflo import task
            import woflo_plugins.multiprocess as mp

            mp.configure(max_workers=8)

            @task
            def chatter(w):
                for i in range(300):
                    print("worker", w, "line", i, "x" * 60, "end")
                    print("err", w, i, file=sys.stderr)
                sys.stdout.write(f"partial {w}")

            for run in [chatter(w) for w in range(8)]:
                run.wait(60)
            print()
            """
        )
    )
    result = run_script(script, env={"PYTHONUNBUFFERED": unbuffered, "WOFLO_LOG_LEVEL": "error"})
    assert result.returncode == 0, result.stderr
    whole = re.compile(r"(?:partial \d)*(worker (\d) line (\d+) x{60} end)?")
    seen: dict[str, list[int]] = {str(w): [] for w in range(8)}
    partials = 0
    for line in result.stdout.splitlines():
        match = whole.fullmatch(line)
        assert match, line
        partials += line.count("partial ")
        if match[1]:
            seen[match[2]].append(int(match[3]))
    assert seen == {str(w): list(range(300)) for w in range(8)}
    assert partials == 8
    errs = [line.split() for line in result.stderr.splitlines()]
    assert all(len(e) == 3 and e[0] == "err" for e in errs), result.stderr[:2000]
    for w in range(8):
        assert [int(e[2]) for e in errs if e[1] == str(w)] == list(range(300))
