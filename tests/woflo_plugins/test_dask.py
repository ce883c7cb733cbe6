"""DaskTaskRun against a real LocalCluster (worker processes)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._helpers import wait_for, wait_gone
from woflo import RunState, task
from woflo.errors import WofloError
from woflo.testing import fail_times, runner_conformance

distributed = pytest.importorskip("distributed")

from woflo_plugins import dask as woflo_dask  # noqa: E402
from woflo_plugins.dask import DaskTaskRun  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def cluster() -> Iterator[Any]:
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=40,
        ) as local,
        distributed.Client(local, set_as_default=False) as client,
    ):
        woflo_dask.configure(client=client)
        yield client
    woflo_dask.reset()


TestDaskConformance = runner_conformance(DaskTaskRun)


def test_retries_are_woflos_own(tmp_path: Path, woflo_recorder: Any) -> None:
    counter = tmp_path / "count"
    run = task(runner="dask", retries=2, retry_sleep_time=0.01)(fail_times)(str(counter), 2)
    assert run.get_result(timeout=60) == 3
    assert run.attempts == 3
    assert woflo_recorder.hooks.count("retry_scheduled") == 2
    assert [type(error) for error in run.errors] == [ConnectionError, ConnectionError]


def test_many_runs_in_parallel() -> None:
    double = task(runner=DaskTaskRun)(lambda x: 2 * x)
    runs = [double(i) for i in range(50)]
    assert [run.get_result(timeout=60) for run in runs] == [2 * i for i in range(50)]
    assert {run.state for run in runs} == {RunState.COMPLETED}


def _log_from_worker(name: str) -> int:
    import os

    logging.getLogger(name).warning("hello from %s", "the worker")
    return os.getpid()


def test_worker_logs_reach_the_client() -> None:
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    logger = logging.getLogger("acme.dask")
    handler = Keep()
    logger.addHandler(handler)
    try:
        pid = task(runner="dask")(_log_from_worker)("acme.dask").get_result(timeout=60)
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)  # forwarded asynchronously by the client's event loop
    finally:
        logger.removeHandler(handler)
    [record] = [r for r in seen if r.getMessage() == "hello from the worker"]
    assert record.levelno == logging.WARNING
    assert record.process == pid


def test_tasks_see_their_context_in_structlog_contextvars() -> None:
    from woflo.testing import add  # noqa: F401  (an importable module for the worker)

    run = task(runner="dask")(_context)()
    assert run.get_result(timeout=60) == {"task": "_context", "run_id": run.run_id, "attempt": 1}


def _context() -> dict[str, object]:
    import structlog

    return dict(structlog.contextvars.get_contextvars())


def test_a_workers_structlog_event_reaches_the_caller_with_its_fields_and_context(
    structlog_reset: None,
) -> None:
    import os

    import structlog

    seen: list[dict[str, Any]] = []

    def keep(logger: Any, name: str, event_dict: Any) -> Any:
        seen.append(dict(event_dict))
        raise structlog.DropEvent

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            keep,
        ]
    )
    run = task(runner="dask")(_structlog_event)()
    pid = run.get_result(timeout=60)
    [event] = [e for e in seen if e["event"] == "rows-counted"]
    assert event == {
        "event": "rows-counted",
        "n": 5,
        "user": "ann",
        "task": "_structlog_event",
        "run_id": run.run_id,
        "attempt": 1,
        "pid": pid,
        "level": "warning",
    }
    assert pid != os.getpid()


def _structlog_event() -> int:
    import os

    import structlog

    with structlog.contextvars.bound_contextvars(user="ann"):
        structlog.get_logger().warning("rows-counted", n=5)
    return os.getpid()


def test_stop_can_restart_the_worker(tmp_path: Path) -> None:
    from woflo.testing import block

    started = tmp_path / "started"
    woflo_dask.configure(restart_workers=True)
    try:
        run = task(runner="dask")(_pid_then_block)(str(started), str(tmp_path / "never"))
        wait_for(lambda: started.exists() and started.read_text(), 60, "the task to start")
        pid = int(started.read_text())
        assert run.stop()
        assert run.state is RunState.STOPPED
        wait_gone([pid], timeout=60)  # the worker running it was restarted, so it is gone
    finally:
        woflo_dask.configure(restart_workers=False)
    assert block  # imported: the gate helper exists for runners that cannot kill


def _pid_then_block(started: str, release: str) -> None:
    import os

    Path(started).write_text(str(os.getpid()))
    deadline = time.monotonic() + 60
    while not Path(release).exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_without_distributed_the_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    with pytest.raises(WofloError, match=r'pip install "woflo\[dask\]"'):
        task(runner="dask")(print)
    from woflo._cli import main  # what `woflo plugins --json` prints

    main(["plugins", "--json"])
    rows = json.loads(capsys.readouterr().out)["plugins"]
    [row] = [row for row in rows if row["name"] == "dask"]
    assert "distributed" in row["unavailable"]["dask"]
    # everything else works as before
    assert task(runner="sequential")(lambda: 1)().get_result() == 1


def test_a_local_cluster_is_started_on_first_use_and_closed_at_exit(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import json
        from woflo import task
        from woflo.runners import DaskTaskRun

        @task(runner=DaskTaskRun, retries=1)
        def square(x):
            return x * x

        print(json.dumps([square(i).get_result(timeout=60) for i in range(4)]), flush=True)
        """
    )
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [0, 1, 4, 9]
    assert time.monotonic() - start < 60
