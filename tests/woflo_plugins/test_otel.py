"""The OpenTelemetry plugin: one trace across the caller and its workers, tested with the
SDK's in-memory exporter in real programs (each its own process: a tracer provider is set once
per process)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.woflo_plugins.multiprocess._support import run_script

TIMEOUT = 120.0

SETUP = """
import json, os, sys, tempfile, time
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
sys.path.insert(0, {here!r})
from woflo import task

def report():
    spans = exporter.get_finished_spans()
    by_id = {{s.context.span_id: s for s in spans}}
    print(json.dumps([
        {{
            "name": s.name,
            "parent": by_id[s.parent.span_id].name if s.parent and s.parent.span_id in by_id
            else None,
            "trace": s.context.trace_id,
            "attributes": dict(s.attributes),
            "status": s.status.status_code.name,
            "events": [e.name for e in s.events],
            "links": [by_id[l.context.span_id].attributes.get("woflo.run.id")
                      for l in s.links if l.context.span_id in by_id],
            "start": s.start_time,
            "end": s.end_time,
        }}
        for s in sorted(spans, key=lambda s: s.start_time)
    ]))
"""

TASKS = """
import os
from opentelemetry import trace
from woflo import task

@task(retries=1, retry_sleep_time=0)
def flaky(marker):
    with trace.get_tracer("user").start_as_current_span("user.work") as span:
        span.set_attribute("user.inside", True)
        if not os.path.exists(marker):
            open(marker, "w").close()
            raise ValueError("the first time")
    return "ok"

@task
def load(i):
    return i

@task
def combine(a, b):
    return a + b

@task(timeout=0.5)
def hangs():
    import time
    time.sleep(30)

@task(timeout=0.2, runner="sequential")
def overruns():
    import time
    time.sleep(1)
"""


def _spans(tmp_path: Path, body: str, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    (tmp_path / "otel_tasks.py").write_text(TASKS)
    script = tmp_path / "program.py"
    script.write_text(textwrap.dedent(SETUP.format(here=str(tmp_path))) + textwrap.dedent(body))
    result = run_script(script, env=env, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _tree(spans: list[dict[str, Any]]) -> list[tuple[str | None, str]]:
    return [(s["parent"], s["name"]) for s in spans]


@pytest.mark.parametrize("runner", ["multiprocess", "sequential", "dask"])
def test_a_retried_run_is_one_trace_with_the_tasks_own_spans_nested(
    tmp_path: Path, runner: str
) -> None:
    spans = _spans(
        tmp_path,
        f"""
        import otel_tasks
        flaky = otel_tasks.flaky.with_options(runner={runner!r})
        with trace.get_tracer("app").start_as_current_span("request"):
            assert flaky(os.path.join({str(tmp_path)!r}, "marker")).get_result() == "ok"
        report()
        """,
    )
    assert _tree(spans) == [
        (None, "request"),
        ("request", "woflo.run flaky"),
        ("woflo.run flaky", "woflo.attempt flaky"),
        ("woflo.attempt flaky", "user.work"),
        ("woflo.run flaky", "woflo.attempt flaky"),
        ("woflo.attempt flaky", "user.work"),
    ]
    assert len({s["trace"] for s in spans}) == 1
    run, first, first_work, second = spans[1], spans[2], spans[3], spans[4]
    assert run["attributes"]["woflo.run.state"] == "completed"
    assert run["attributes"]["woflo.runner"] == runner
    assert run["attributes"]["woflo.run.attempts"] == 2
    assert run["events"] == ["woflo.retry"]
    assert run["status"] == "UNSET"
    assert first["attributes"]["woflo.attempt.number"] == 1
    assert first["attributes"]["woflo.attempt.outcome"] == "failed"
    assert (first["status"], first["events"]) == ("ERROR", ["exception"])
    assert isinstance(first["attributes"]["woflo.worker.pid"], int)
    assert first_work["attributes"] == {"user.inside": True}
    assert second["attributes"]["woflo.attempt.outcome"] == "completed"
    for child, parent in ((first_work, first), (first, run), (run, spans[0])):
        assert parent["start"] <= child["start"] <= child["end"] <= parent["end"]


def test_upstream_runs_are_links_and_a_killed_attempt_still_has_its_span(tmp_path: Path) -> None:
    spans = _spans(
        tmp_path,
        """
        import otel_tasks
        total = otel_tasks.combine(otel_tasks.load(1), otel_tasks.load(2))
        assert total.get_result() == 3
        assert isinstance(otel_tasks.hangs().exception(), TimeoutError)
        assert isinstance(otel_tasks.overruns().exception(), TimeoutError)
        report()
        """,
    )
    runs = {s["attributes"]["woflo.run.id"]: s for s in spans if s["name"].startswith("woflo.run")}
    [combined] = [s for s in runs.values() if s["name"] == "woflo.run combine"]
    loads = {rid for rid, s in runs.items() if s["name"] == "woflo.run load"}
    assert set(combined["links"]) == loads
    assert len(loads) == 2
    [hung] = [s for s in spans if s["name"] == "woflo.attempt hangs"]
    assert hung["parent"] == "woflo.run hangs"
    assert (hung["status"], hung["attributes"]["woflo.attempt.outcome"]) == ("ERROR", "timed_out")
    [overran] = [s for s in spans if s["name"] == "woflo.attempt overruns"]  # (in-process)
    assert (overran["status"], overran["attributes"]["woflo.attempt.outcome"]) == (
        "ERROR",
        "timed_out",
    )
    [hung_run] = [s for s in spans if s["name"] == "woflo.run hangs"]
    assert hung_run["status"] == "ERROR"
    assert hung_run["attributes"]["woflo.run.state"] == "timed_out"


def test_the_off_switch_leaves_no_span_at_all(tmp_path: Path) -> None:
    spans = _spans(
        tmp_path,
        """
        import otel_tasks
        with trace.get_tracer("app").start_as_current_span("request"):
            assert otel_tasks.flaky(os.path.join(tempfile.mkdtemp(), "m")).get_result() == "ok"
        report()
        """,
        env={"WOFLO_DISABLE_PLUGINS": "otel"},
    )
    assert _tree(spans) == [(None, "request")]  # the task's own spans were not recorded


def test_a_failing_span_processor_never_fails_a_run(tmp_path: Path) -> None:
    spans = _spans(
        tmp_path,
        """
        from opentelemetry.sdk.trace import SpanProcessor

        class Broken(SpanProcessor):  # (an exporter's errors its processor catches: not this)
            def on_end(self, span):
                raise ConnectionError("the collector is down")

        provider.add_span_processor(Broken())  # (after the test's own: it still sees them)
        import otel_tasks
        for runner in ("multiprocess", "sequential"):
            assert otel_tasks.load.with_options(runner=runner)(7).get_result() == 7
        report()
        """,
    )
    assert [s["name"] for s in spans].count("woflo.run load") == 2


def test_without_a_tracer_provider_nothing_is_imported(tmp_path: Path) -> None:
    script = tmp_path / "plain.py"
    script.write_text(
        "import sys\n"
        "from woflo import task\n"
        "assert task(lambda: 1)().get_result() == 1\n"
        "assert task(lambda: 2, runner='sequential')().get_result() == 2\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    result = run_script(script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
