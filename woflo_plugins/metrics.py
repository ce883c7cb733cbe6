"""Metrics: counts and durations per task and final state, readable from Python.

Built only on public hooks, so it is also the reference for writing a hook plugin::

    from woflo_plugins import metrics

    metrics.snapshot()["tasks"]["fetch"]
    # {"runs": {"completed": 9, "failed": 1}, "attempts": 12, "retries": 2,
    #  "duration": {"count": 10, "sum": 4.2, "min": 0.1, "max": 1.3}}
    print(metrics.render_prometheus())   # Prometheus text exposition format

``duration`` is the run's, from the call to its final state, in seconds. Everything is counted
in the calling process (lifecycle hooks fire there), whichever runner executed the attempts.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from woflo import BaseTaskRun, Outcome, RunState, hookimpl

__all__ = ["render_prometheus", "reset", "snapshot"]

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
"""Upper bounds (seconds) of the run-duration histogram in the Prometheus output."""


@dataclass
class _TaskStats:
    runs: Counter[RunState] = field(default_factory=Counter)
    attempts: int = 0
    retries: int = 0
    count: int = 0
    total: float = 0.0
    low: float = math.inf
    high: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))


_lock = threading.Lock()
_tasks: dict[str, _TaskStats] = {}


def _stats(task: str) -> _TaskStats:
    stats = _tasks.get(task)
    if stats is None:
        stats = _tasks.setdefault(task, _TaskStats())
    return stats


@hookimpl
def woflo_attempt_started(run: BaseTaskRun[Any], attempt: int) -> None:
    name = run.task.name
    with _lock:
        (_tasks.get(name) or _stats(name)).attempts += 1


@hookimpl
def woflo_retry_scheduled(
    run: BaseTaskRun[Any], attempt: int, outcome: Outcome, delay: float
) -> None:
    with _lock:
        _stats(run.task.name).retries += 1


@hookimpl
def woflo_run_finished(run: BaseTaskRun[Any]) -> None:
    duration = run.duration
    state = run.state
    bucket = bisect.bisect_left(BUCKETS, duration)  # (the first bound >= duration)
    name = run.task.name
    with _lock:
        stats = _tasks.get(name) or _stats(name)
        stats.runs[state] += 1
        stats.count += 1
        stats.total += duration
        if duration < stats.low:
            stats.low = duration
        if duration > stats.high:
            stats.high = duration
        if bucket < len(BUCKETS):
            stats.buckets[bucket] += 1


def snapshot() -> dict[str, Any]:
    """A copy of the counters: ``{"tasks": {name: {runs, attempts, retries, duration}}}``."""
    with _lock:
        return {
            "tasks": {
                name: {
                    "runs": {state.value: count for state, count in stats.runs.items()},
                    "attempts": stats.attempts,
                    "retries": stats.retries,
                    "duration": {
                        "count": stats.count,
                        "sum": stats.total,
                        "min": stats.low if stats.count else None,
                        "max": stats.high if stats.count else None,
                    },
                }
                for name, stats in _tasks.items()
            }
        }


def reset() -> None:
    """Forget every count (for tests, or between reporting periods)."""
    with _lock:
        _tasks.clear()


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_prometheus() -> str:
    """The counters in the Prometheus text exposition format (version 0.0.4)."""
    lines = [
        "# HELP woflo_runs_total Runs that reached a final state, by task and state.",
        "# TYPE woflo_runs_total counter",
    ]
    with _lock:
        items = sorted(_tasks.items())
        for name, stats in items:
            for state, count in sorted((s.value, n) for s, n in stats.runs.items()):
                lines.append(f'woflo_runs_total{{task="{_label(name)}",state="{state}"}} {count}')
        lines += [
            "# HELP woflo_attempts_total Attempts started, by task.",
            "# TYPE woflo_attempts_total counter",
        ]
        lines += [f'woflo_attempts_total{{task="{_label(n)}"}} {s.attempts}' for n, s in items]
        lines += [
            "# HELP woflo_retries_total Retries scheduled, by task.",
            "# TYPE woflo_retries_total counter",
        ]
        lines += [f'woflo_retries_total{{task="{_label(n)}"}} {s.retries}' for n, s in items]
        lines += [
            "# HELP woflo_run_duration_seconds Run duration, from the call to the final state.",
            "# TYPE woflo_run_duration_seconds histogram",
        ]
        for name, stats in items:
            task = _label(name)
            cumulative = 0
            for bound, count in zip(BUCKETS, stats.buckets, strict=True):
                cumulative += count
                lines.append(
                    f'woflo_run_duration_seconds_bucket{{task="{task}",le="{bound}"}} {cumulative}'
                )
            lines.append(
                f'woflo_run_duration_seconds_bucket{{task="{task}",le="+Inf"}} {stats.count}'
            )
            lines.append(f'woflo_run_duration_seconds_sum{{task="{task}"}} {stats.total}')
            lines.append(f'woflo_run_duration_seconds_count{{task="{task}"}} {stats.count}')
    return "\n".join(lines) + "\n"
