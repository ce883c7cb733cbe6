"""The history plugin and ``woflo runs``: every run remembered, safely, without slowing runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import woflo_plugins.history as recording
from tests.woflo_plugins.multiprocess._support import (
    Gate,
    add,
    fail,
    held,
    run_script,
    script_env,
)
from woflo import history, hookimpl, task
from woflo.runners import SequentialTaskRun

TIMEOUT = 30.0


def _woflo(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "woflo", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=script_env(env),
    )


def test_every_run_is_recorded_with_its_attempts(history_home: Path) -> None:
    flaky = task(name="flaky", retries=1, retry_sleep_time=0)(fail.fn)
    failed = flaky("the API hung up")
    done = add(1, 2)
    here = task(runner=SequentialTaskRun, name="here")(add.fn)(3, 4)
    assert failed.wait(TIMEOUT)
    assert done.get_result(timeout=TIMEOUT) == 3
    assert recording.flush(TIMEOUT)
    rows = {row["run_id"]: row for row in history.runs()}
    assert set(rows) == {failed.run_id, done.run_id, here.run_id}
    row = rows[failed.run_id]
    assert (row["task"], row["runner"], row["state"], row["attempts"]) == (
        "flaky",
        "multiprocess",
        "failed",
        2,
    )
    assert row["error"] == "ValueError('the API hung up')"
    assert row["duration"] > 0
    assert row["created_at"] < row["ended_at"]
    assert row["program"]["pid"] == os.getpid()
    assert rows[here.run_id]["runner"] == "sequential"
    detail = history.run(failed.run_id)
    assert detail is not None
    attempts = detail["attempts_detail"]
    assert [a["attempt"] for a in attempts] == [1, 2]
    assert {a["outcome"] for a in attempts} == {"failed"}
    assert all(a["pid"] not in (None, os.getpid()) for a in attempts)  # the worker's
    assert "Traceback" in attempts[0]["traceback"]
    assert "the API hung up" in attempts[0]["traceback"]
    assert history.run(here.run_id)["attempts_detail"][0]["pid"] == os.getpid()  # type: ignore[index]
    assert history.run("nope") is None


def test_a_run_that_goes_on_is_shown_running_and_then_once_as_it_ended(
    history_home: Path,
) -> None:
    """The writer keeps a run's creation and start back for a moment, hoping to write the run
    once when it ends; a run that goes on longer is shown running all the same."""
    release = threading.Event()
    blocked = task(runner=SequentialTaskRun, name="blocked")(lambda: release.wait(TIMEOUT))
    thread = threading.Thread(target=blocked)
    thread.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        rows: list[dict[str, object]] = []
        while time.monotonic() < deadline:  # (another program's view: it can only look)
            rows = history.runs(task="blocked")
            if rows and rows[0]["state"] == "running":
                break
            time.sleep(0.05)
        assert [(r["state"], r["attempts"], r["ended_at"]) for r in rows] == [("running", 1, None)]
    finally:
        release.set()
        thread.join(TIMEOUT)
    assert recording.flush(TIMEOUT)
    [row] = history.runs(task="blocked")
    assert (row["state"], row["attempts"]) == ("completed", 1)
    [attempt] = history.run(str(row["run_id"]))["attempts_detail"]  # type: ignore[index]
    assert (attempt["outcome"], attempt["pid"]) == ("completed", os.getpid())
    assert attempt["started_at"] is not None
    assert attempt["duration"] > 0


class _RetryScheduled:
    """A plugin of the test's own: says when a retry is scheduled (in the caller; the worker
    gets a copy with an event of its own)."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.event = threading.Event()

    @hookimpl
    def woflo_retry_scheduled(self) -> None:
        self.event.set()


def _shown(task_name: str, state: str) -> dict[str, Any]:
    """The run of ``task_name`` once the history says it is ``state`` (another program's
    view: it can only look)."""
    deadline = time.monotonic() + TIMEOUT
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = history.runs(task=task_name)
        if rows and rows[0]["state"] == state:
            return rows[0]
        time.sleep(0.05)
    raise AssertionError(f"{task_name} never shown {state}: {rows}")


def test_each_attempt_keeps_its_outcome_when_the_run_ends_another_way(
    history_home: Path, gate: Gate
) -> None:
    """A failed attempt waiting for its retry is shown so; a stop then ends the run, not the
    attempt. A stop of an attempt running ends both."""
    scheduled = _RetryScheduled()
    waiting = task(name="waiting", retries=1, retry_sleep_time=600, plugins=[scheduled])(fail.fn)
    run = waiting("the API hung up")
    assert scheduled.event.wait(TIMEOUT)
    assert _shown("waiting", "awaiting_retry")["attempts"] == 1
    assert run.stop()
    running = held(gate.path, "running")
    gate.pid("running")
    assert _shown("hold", "running")["attempts"] == 1
    assert running.stop()
    assert recording.flush(TIMEOUT)
    detail = history.run(run.run_id)
    assert detail is not None
    assert (detail["state"], detail["attempts"]) == ("stopped", 1)
    [attempt] = detail["attempts_detail"]
    assert (attempt["outcome"], attempt["error"]) == ("failed", "ValueError('the API hung up')")
    assert "the API hung up" in attempt["traceback"]
    assert attempt["pid"] not in (None, os.getpid())
    detail = history.run(running.run_id)
    assert detail is not None
    assert detail["state"] == "stopped"
    [attempt] = detail["attempts_detail"]
    assert (attempt["outcome"], attempt["pid"]) == ("stopped", gate.pid("running"))


def test_the_filters(history_home: Path) -> None:
    [add(i, i).wait(TIMEOUT) for i in range(3)]
    fail("x").wait(TIMEOUT)
    assert recording.flush(TIMEOUT)
    assert len(history.runs()) == 4
    assert [r["state"] for r in history.runs(state="failed")] == ["failed"]
    assert len(history.runs(task="add")) == 3
    assert len(history.runs(limit=2)) == 2
    assert len(history.runs(since=3600)) == 4
    assert history.runs(since=0.0) == []
    assert len(history.runs(state=["failed", "completed"])) == 4


@pytest.mark.parametrize("setting", ["WOFLO_HISTORY=off", "WOFLO_DISABLE_PLUGINS=history"])
def test_recording_can_be_turned_off(tmp_path: Path, setting: str) -> None:
    name, value = setting.split("=")
    script = tmp_path / "off.py"
    script.write_text("from woflo import task\nprint(task(lambda: 5)().get_result())\n")
    home = tmp_path / "home"
    result = run_script(script, env={"WOFLO_HOME": str(home), name: value})
    assert (result.returncode, result.stdout.strip()) == (0, "5"), result.stderr
    assert not (home / "history.sqlite3").exists()


def _program(tmp_path: Path, body: str, name: str = "program.py") -> Path:
    script = tmp_path / name
    script.write_text(textwrap.dedent(body))
    return script


def test_a_history_another_program_is_creating_reads_as_nothing_recorded_yet(
    history_home: Path,
) -> None:
    # Between the file's creation and its first migration (another program opening a fresh
    # home), a reader finds an empty database: no runs yet, not "schema version 0".
    history_home.mkdir(parents=True)
    (history_home / "history.sqlite3").touch()
    assert history.runs() == []


def test_an_unusable_store_never_breaks_a_run_and_woflo_runs_says_why(tmp_path: Path) -> None:
    script = _program(
        tmp_path,
        """
        from woflo import task
        runs = [task(lambda i: i)(i) for i in range(20)]
        print(sum(r.get_result() for r in runs))
        """,
    )
    unwritable = tmp_path / "a-file"  # (a directory under a file: no one can create it)
    unwritable.write_text("")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "history.sqlite3").write_bytes(b"this is not a database" * 100)
    for home in (unwritable / "woflo", corrupt):
        result = run_script(script, env={"WOFLO_HOME": str(home)})
        assert (result.returncode, result.stdout.strip()) == (0, "190"), result.stderr
        warnings = [line for line in result.stderr.splitlines() if "cannot record runs" in line]
        assert len(warnings) == 1, result.stderr  # once
        assert "WOFLO_HISTORY=off" in warnings[0]
    listing = _woflo("runs", env={"WOFLO_HOME": str(corrupt)})
    assert listing.returncode == 1
    assert "cannot" in listing.stderr
    assert "history.sqlite3" in listing.stderr


@pytest.mark.slow
def test_a_batch_of_many_runs_keeps_each_runs_own_row(
    history_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # more runs than one statement takes (a batch's rows go many to a statement), each with
    # its own state, attempts and error, in one batch (gathered until the flush)
    monkeypatch.setattr(recording, "BATCH_WINDOW", 3600.0)

    def sometimes(i: int) -> int:
        if i % 50 == 7:
            raise ValueError(f"no {i}")
        return i

    flaky = task(runner=SequentialTaskRun, name="sometimes", retries=1, retry_sleep_time=0)(
        sometimes
    )
    runs = [flaky(i) for i in range(458)]
    assert recording.flush(TIMEOUT)
    rows = {row["run_id"]: row for row in history.runs(limit=None)}
    assert len(rows) == len(runs)
    for i, run in enumerate(runs):
        row = rows[run.run_id]
        if i % 50 == 7:
            assert (row["state"], row["attempts"], row["error"]) == (
                "failed",
                2,
                f"ValueError('no {i}')",
            ), i
        else:
            assert (row["state"], row["attempts"], row["error"]) == ("completed", 1, None), i
    for i in (7, 207, 457, 0, 1, 456):  # first, later and last rows of either kind
        attempts = history.run(runs[i].run_id)["attempts_detail"]  # type: ignore[index]
        outcomes = [a["outcome"] for a in attempts]
        assert outcomes == (["failed", "failed"] if i % 50 == 7 else ["completed"]), i
        if i % 50 == 7:
            assert f"no {i}" in attempts[1]["traceback"]


def test_four_programs_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    script = _program(
        tmp_path,
        """
        from woflo import task
        from woflo.runners import SequentialTaskRun
        fast = task(runner=SequentialTaskRun)(lambda i: i)
        for i in range(500):
            fast(i)
        """,
    )
    home = tmp_path / "shared"
    env = script_env({"WOFLO_HOME": str(home)})
    programs = [
        subprocess.Popen([sys.executable, str(script)], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1] for p in programs]
    assert [p.returncode for p in programs] == [0, 0, 0, 0], errors
    assert not any("locked" in e or "cannot record" in e for e in errors), errors
    rows = history.runs(limit=None, path=home / "history.sqlite3")
    assert len(rows) == 2000
    assert len({r["run_id"] for r in rows}) == 2000
    assert len({r["program"]["id"] for r in rows}) == 4
    assert {r["state"] for r in rows} == {"completed"}


def test_runs_finishing_at_exit_are_flushed(tmp_path: Path) -> None:
    script = _program(
        tmp_path,
        """
        from woflo import task
        for i in range(50):
            task(lambda i: i)(i)   # nobody waits: the program ends while they run
        """,
    )
    home = tmp_path / "home"
    result = run_script(script, env={"WOFLO_HOME": str(home)})
    assert result.returncode == 0, result.stderr
    rows = history.runs(limit=None, path=home / "history.sqlite3")
    assert len(rows) == 50
    assert {r["state"] for r in rows} == {"completed"}


def test_a_flush_does_not_wait_for_the_batch_to_gather(
    history_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the writer lets a batch gather for a while (runs first); a flush (at exit, say) ends
    # that at once: with a window of an hour, the flush still answers
    monkeypatch.setattr(recording, "BATCH_WINDOW", 3600.0)
    here = task(runner=SequentialTaskRun, name="here")(add.fn)
    here(1, 2)
    assert recording.flush(TIMEOUT)
    later = here(3, 4)
    _writer_gathering()
    assert recording.flush(TIMEOUT)
    assert later.run_id in {row["run_id"] for row in history.runs()}


def _writer_gathering() -> None:
    """Return once the history writer waits for its batch to gather (seen in its stack)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:  # (earlier tests' writers, reset, wait for nothing)
        frames = sys._current_frames()
        for writer in threading.enumerate():
            frame = frames.get(writer.ident or 0) if writer.name == "woflo-history" else None
            while frame is not None and frame.f_code.co_name != "_gathering":
                frame = frame.f_back
            if frame is not None:
                return
        time.sleep(0.001)
    raise AssertionError("the history writer never gathered a batch")


def test_a_killed_program_loses_at_most_the_batch_being_gathered(tmp_path: Path) -> None:
    """SIGKILL right after a burst of runs: what was written stays (WAL, committed batches),
    and the database opens and reads fine afterwards."""
    script = _program(
        tmp_path,
        """
        import os, signal, sys
        from woflo import task
        from woflo.runners import SequentialTaskRun
        import woflo_plugins.history
        t = task(runner=SequentialTaskRun)(lambda i: i)
        for i in range(200):
            t(i)
        woflo_plugins.history.flush(10)   # these are committed ...
        for i in range(5):
            t(i)                           # ... these may be lost with the kill
        os.kill(os.getpid(), signal.SIGKILL)
        """,
    )
    home = tmp_path / "home"
    result = run_script(script, env={"WOFLO_HOME": str(home)})
    assert result.returncode == -9, result.stderr
    rows = history.runs(limit=None, path=home / "history.sqlite3")
    assert 200 <= len(rows) <= 205
    assert {r["state"] for r in rows[-200:]} == {"completed"}


def test_retention_prunes_in_the_background_and_by_hand(tmp_path: Path) -> None:
    home = tmp_path / "home"
    many = _program(
        tmp_path,
        """
        from woflo import task
        from woflo.runners import SequentialTaskRun
        for i in range(30):
            task(runner=SequentialTaskRun)(lambda i: i)(i)
        """,
        "many.py",
    )
    one = _program(
        tmp_path,
        """
        import time
        from woflo import task
        from woflo.runners import SequentialTaskRun
        task(runner=SequentialTaskRun)(lambda: 1)()
        """,
        "one.py",
    )
    db = home / "history.sqlite3"
    assert run_script(many, env={"WOFLO_HOME": str(home)}).returncode == 0
    assert len(history.runs(limit=None, path=db)) == 30
    result = run_script(one, env={"WOFLO_HOME": str(home), "WOFLO_HISTORY_MAX_RUNS": "5"})
    assert result.returncode == 0, result.stderr
    assert len(history.runs(limit=None, path=db)) == 5  # pruned as the program started writing
    pruned = _woflo("runs", "prune", "--keep", "2", env={"WOFLO_HOME": str(home)})
    assert (pruned.returncode, pruned.stdout.strip()) == (0, "pruned 3 runs")
    assert history.prune(older_than=0, path=db) == 2
    assert history.runs(path=db) == []


def test_bad_settings_are_named(tmp_path: Path) -> None:
    script = _program(tmp_path, "from woflo import task\nprint(task(lambda: 1)().get_result())\n")
    home = tmp_path / "home"
    result = run_script(
        script, env={"WOFLO_HOME": str(home), "WOFLO_HISTORY": "maybe", "WOFLO_HISTORY_DAYS": "-1"}
    )
    assert (result.returncode, result.stdout.strip()) == (0, "1"), result.stderr
    assert "WOFLO_HISTORY='maybe' is neither on nor off" in result.stderr
    assert "WOFLO_HISTORY_DAYS" in result.stderr
    assert len(history.runs(path=home / "history.sqlite3")) == 1  # still recorded
    for bad in (["runs", "--since", "1y"], ["runs", "--limit", "0"], ["runs", "show"]):
        answer = _woflo(*bad, env={"WOFLO_HOME": str(home)})
        assert answer.returncode == 2, bad
        assert answer.stderr.strip(), bad


def test_woflo_runs_on_the_command_line(tmp_path: Path) -> None:
    script = _program(
        tmp_path,
        """
        from woflo import task
        @task(retries=2, retry_sleep_time=0)
        def fetch_data():
            raise ConnectionError("the API hung up")
        @task
        def ok():
            return 1
        fetch_data().wait()
        ok().wait()
        """,
    )
    home = tmp_path / "home"
    env = {"WOFLO_HOME": str(home)}
    assert run_script(script, env=env).returncode == 0
    table = _woflo("runs", env=env)
    assert table.returncode == 0, table.stderr
    header, *lines = table.stdout.splitlines()
    assert header.split() == [
        "RUN",
        "ID",
        "TASK",
        "STATE",
        "ATTEMPTS",
        "DURATION",
        "STARTED",
        "ERROR",
    ]
    assert lines[0].split()[1:4] == ["ok", "completed", "1"]  # newest first
    assert "fetch_data" in lines[1]
    assert "failed" in lines[1]
    assert "ConnectionError('the API hung up')" in lines[1]
    listed = json.loads(_woflo("runs", "--state", "failed", "--json", env=env).stdout)
    [failed] = listed
    assert {"run_id", "task", "state", "attempts", "runner", "created_at", "ended_at",
            "duration", "error", "program"} <= failed.keys()  # fmt: skip
    assert (failed["task"], failed["attempts"]) == ("fetch_data", 3)
    shown = _woflo("runs", "show", failed["run_id"], env=env)
    assert shown.returncode == 0
    assert shown.stdout.count("attempt ") >= 3
    assert "ConnectionError: the API hung up" in shown.stdout
    assert "program.py" in shown.stdout
    detail = json.loads(_woflo("runs", "show", failed["run_id"], "--json", env=env).stdout)
    assert len(detail["attempts_detail"]) == 3
    missing = _woflo("runs", "show", "0000", env=env)
    assert missing.returncode == 1
    assert "no run '0000'" in missing.stderr
    empty = _woflo("runs", env={"WOFLO_HOME": str(tmp_path / "nothing")})
    assert (empty.returncode, empty.stdout.strip()) == (0, "no runs recorded (yet)")


def test_the_history_plugin_uses_public_hooks_only() -> None:
    """A third party can replace it: it implements lifecycle hooks and nothing else."""
    from woflo.hookspecs import NOTIFICATIONS

    hooks = {name for name in dir(recording) if name.startswith("woflo_")}
    assert hooks
    assert hooks <= set(NOTIFICATIONS)
