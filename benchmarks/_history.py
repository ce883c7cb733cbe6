"""Workloads of the run history (imported by ``run.py``): what recording costs per run, the
store's size per run, and ``woflo runs`` on a 1,000,000-run database."""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _tasks import noop

import woflo

System = Callable[[], float]


def recording_cost(n_pool: int, n_sequential: int) -> dict[str, System]:
    """Per call (seconds), history on and off: multiprocess runs submitted then collected
    (the median of 5 batches a measure: one batch moves by ±20 % on these machines, more than
    what is measured), sequential runs one after another (each measure flushes what it
    recorded)."""
    from _woflo import noop_task, one_after_another, submitted_then_collected

    import woflo_plugins.history as recording

    def flush() -> None:
        recording.flush(30)

    def batch(t: Any, n: int) -> System:
        one = submitted_then_collected(t, n, after=flush)
        return lambda: statistics.median(one() for _ in range(5))

    return {
        "multiprocess, history on": batch(noop_task("multiprocess", []), n_pool),
        "multiprocess, history off": batch(noop_task("multiprocess", ["history"]), n_pool),
        "sequential, history on": one_after_another(
            noop_task("sequential", []), n_sequential, flush
        ),
        "sequential, history off": one_after_another(
            noop_task("sequential", ["history"]), n_sequential, flush
        ),
    }


def store_size(n: int) -> dict[str, System]:
    """Bytes of database (with its WAL) per recorded run, for ``n`` completed runs."""
    from _woflo import woflo_home

    import woflo_plugins.history as recording

    def measure() -> float:
        with tempfile.TemporaryDirectory() as home, woflo_home(home):
            recording.reset()
            try:
                t = woflo.task(runner="sequential")(noop)
                for i in range(n):
                    t(i)
                recording.flush(60)
                size = sum(p.stat().st_size for p in Path(home).glob("history.sqlite3*"))
            finally:
                recording.reset()
        return size / n

    return {"woflo history: bytes per run": measure}


_BIG: Path | None = None


def _big_database(rows: int) -> Path:
    """A history database of ``rows`` runs (10 tasks, 5% failed), built once."""
    global _BIG
    if _BIG is not None:
        return _BIG
    from woflo import history

    path = Path(tempfile.mkdtemp(prefix="woflo-bench-history-")) / "history.sqlite3"
    connection = history.connect(path)
    now = time.time()
    rng = random.Random(1)
    connection.execute("BEGIN")
    connection.execute("INSERT INTO programs VALUES ('p', '[]', 1, 'host', '/', ?)", [now])
    for start in range(0, rows, 100_000):
        connection.executemany(
            "INSERT INTO runs VALUES (?, 'p', ?, 'multiprocess', ?, 1, ?, ?, 0.01, ?, ?)",
            [
                (
                    f"{i:016x}",
                    f"task_{i % 10}",
                    "failed" if rng.random() < 0.05 else "completed",
                    now - (rows - i) * 2.0,
                    now - (rows - i) * 2.0 + 0.01,
                    None,
                    None,
                )
                for i in range(start, min(rows, start + 100_000))
            ],
        )
    connection.execute("COMMIT")
    connection.close()
    _BIG = path
    return path


def query_time(rows: int) -> dict[str, System]:
    """Seconds ``woflo.history.runs`` takes on a ``rows``-run database (what ``woflo runs``
    does), for the common questions."""
    from woflo import history

    path = _big_database(rows)

    def timed(**filters: Any) -> System:
        def measure() -> float:
            start = time.perf_counter()
            history.runs(path=path, **filters)
            return time.perf_counter() - start

        return measure

    return {
        "newest 50": timed(),
        "one task's failed runs, 20": timed(task="task_3", state="failed", limit=20),
        "the last hour, 50": timed(since=3600),
        "a task's runs of the last day, all": timed(task="task_1", since=86400, limit=None),
    }
