"""The metrics plugin counts runs, attempts, retries and durations through public hooks."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from woflo import task
from woflo_plugins import metrics
from woflo_plugins.sequential import SequentialTaskRun


@pytest.fixture(autouse=True)
def _fresh_metrics() -> Iterator[None]:
    metrics.reset()
    yield
    metrics.reset()


def _flaky(failures: int) -> object:
    calls = {"n": 0}

    def flaky(value: int) -> int:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise ConnectionError("try again")
        return value

    return flaky


def test_counts_runs_by_state_attempts_and_retries() -> None:
    ok = task(runner=SequentialTaskRun, name="ok")(lambda: 1)
    flaky = task(runner=SequentialTaskRun, name="flaky", retries=2, retry_sleep_time=0)(_flaky(2))
    broken = task(runner=SequentialTaskRun, name="broken", retries=1)(_flaky(10))
    for _ in range(3):
        ok()
    flaky(7)
    broken(1)
    tasks = metrics.snapshot()["tasks"]
    assert tasks["ok"]["runs"] == {"completed": 3}
    assert (tasks["ok"]["attempts"], tasks["ok"]["retries"]) == (3, 0)
    assert tasks["flaky"]["runs"] == {"completed": 1}
    assert (tasks["flaky"]["attempts"], tasks["flaky"]["retries"]) == (3, 2)
    assert tasks["broken"]["runs"] == {"failed": 1}
    assert (tasks["broken"]["attempts"], tasks["broken"]["retries"]) == (2, 1)
    duration = tasks["ok"]["duration"]
    assert duration["count"] == 3
    assert 0 <= duration["min"] <= duration["max"] <= duration["sum"]


def test_counts_multiprocess_runs_in_the_caller() -> None:
    double = task(name="double")(lambda x: 2 * x)
    runs = [double(i) for i in range(5)]
    assert [run.get_result(timeout=30) for run in runs] == [0, 2, 4, 6, 8]
    tasks = metrics.snapshot()["tasks"]
    assert tasks["double"]["runs"] == {"completed": 5}
    assert tasks["double"]["attempts"] == 5


def test_snapshot_is_a_copy() -> None:
    task(runner=SequentialTaskRun, name="once")(lambda: None)()
    snap = metrics.snapshot()
    snap["tasks"]["once"]["runs"]["completed"] = 99
    assert metrics.snapshot()["tasks"]["once"]["runs"] == {"completed": 1}


def test_prometheus_text_exposition() -> None:
    task(runner=SequentialTaskRun, name='we"ird')(lambda: None)()
    text = metrics.render_prometheus()
    assert text.endswith("\n")
    assert "# TYPE woflo_runs_total counter" in text
    assert 'woflo_runs_total{task="we\\"ird",state="completed"} 1' in text
    assert 'woflo_run_duration_seconds_bucket{task="we\\"ird",le="+Inf"} 1' in text
    assert 'woflo_run_duration_seconds_count{task="we\\"ird"} 1' in text
    # every sample line is `name{labels} number`
    for line in text.splitlines():
        if not line.startswith("#"):
            assert re.fullmatch(r"[a-z_]+\{.*\} [0-9.e+-]+", line), line
    buckets = [
        int(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("woflo_run_duration_seconds_bucket")
    ]
    assert buckets == sorted(buckets)  # cumulative


def test_uses_only_public_hooks(plugins: object) -> None:
    from woflo.plugins import PluginSystem

    assert isinstance(plugins, PluginSystem)
    info = plugins.infos["metrics"]
    assert set(info.hooks) == {
        "woflo_attempt_started",
        "woflo_retry_scheduled",
        "woflo_run_finished",
    }
    assert info.builtin
