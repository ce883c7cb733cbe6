"""How the history plugin's events become rows of :mod:`woflo.history`'s tables: the
statements, the merging of a batch's events, one transaction per batch."""

from __future__ import annotations

import functools
import itertools
import sqlite3
from typing import Any

from woflo import Outcome, RunState

__all__ = [
    "ENDED_FIELDS",
    "event_rows",
    "still_usable",
    "write",
]


def still_usable(connection: Any) -> bool:
    """Whether ``connection`` still answers (after a failed batch: else it is reopened)."""
    try:
        connection.execute("SELECT 1")
    except Exception:
        return False
    return True


ENDED_FIELDS = 12
"""What the hooks queue (plain values, and a failure's error, turned into text by the writer):

- an attempt that failed and is retried: (run_id, attempt, started_at, pid, duration, error)
- a run that ended, as :data:`ENDED_FIELDS` values one after another in a flat list: run_id,
  task, runner, state (a RunState, or "cached"), attempts, created_at, duration, error,
  upstream run ids; and its last attempt's started_at, pid, duration (how the run ended is
  how that attempt did, unless the attempt was written already: it failed and a retry was
  scheduled, and the run then ended another way, stopped or out of time)

A run still going is read by the writer from the run itself (see :func:`event_rows`).
"""
RUN_GOING, ATTEMPT_GOING, LINKS, ATTEMPT_ENDED, LAST_ATTEMPT, RUN_ENDED = range(6)
"""The statements, in the order a batch runs them (a run's or attempt's end last: it wins)."""
_ATTEMPT_COLUMNS = (
    "run_id",
    "attempt",
    "started_at",
    "duration",
    "outcome",
    "error_type",
    "error_message",
    "traceback",
    "pid",
)
_ATTEMPT_ENDED = (
    "DO UPDATE SET started_at = coalesce(excluded.started_at, started_at), duration = "
    "excluded.duration, outcome = excluded.outcome, error_type = excluded.error_type, "
    "error_message = excluded.error_message, traceback = excluded.traceback, "
    "pid = coalesce(excluded.pid, pid)"
)
STATEMENTS = {  # table, columns, what a row of a run or attempt already there does
    RUN_GOING: (
        "runs",
        ("run_id", "program_id", "task", "runner", "state", "attempts", "created_at"),
        "DO UPDATE SET state = excluded.state, attempts = excluded.attempts "
        "WHERE ended_at IS NULL",  # (its end may have been written already)
    ),
    ATTEMPT_GOING: (
        "attempts",
        ("run_id", "attempt", "started_at", "pid"),
        "DO UPDATE SET started_at = coalesce(started_at, excluded.started_at), "
        "pid = coalesce(pid, excluded.pid)",
    ),
    LINKS: ("links", ("run_id", "upstream_id"), "DO NOTHING"),
    ATTEMPT_ENDED: ("attempts", _ATTEMPT_COLUMNS, _ATTEMPT_ENDED),
    LAST_ATTEMPT: (  # (unless written already: a failed attempt retried, then the run stopped)
        "attempts",
        _ATTEMPT_COLUMNS,
        f"{_ATTEMPT_ENDED} WHERE outcome IS NULL",
    ),
    RUN_ENDED: (
        "runs",
        (
            "run_id",
            "program_id",
            "task",
            "runner",
            "state",
            "attempts",
            "created_at",
            "ended_at",
            "duration",
            "error_type",
            "error_message",
        ),
        "DO UPDATE SET state = excluded.state, attempts = excluded.attempts, ended_at = "
        "excluded.ended_at, duration = excluded.duration, error_type = excluded.error_type, "
        "error_message = excluded.error_message",
    ),
}


MOST_ROWS = 512
"""Rows in one statement at most (fewer where SQLite's limit on a statement's parameters is
lower: 999 before SQLite 3.32)."""


@functools.cache
def statement(kind: int, rows: int = 1) -> str:
    """The statement for ``rows`` rows of one kind (``VALUES (...), (...)``, the rows in order:
    a later row of the same run wins over an earlier one, as in separate statements)."""
    table, columns, conflict = STATEMENTS[kind]
    key = {"runs": "run_id", "attempts": "run_id, attempt"}.get(table, "run_id, upstream_id")
    marks = "(" + ", ".join("?" for _ in columns) + ")"
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([marks] * rows)} "
        f"ON CONFLICT ({key}) {conflict}"
    )


def event_rows(
    program_id: str,
    failed: list[tuple[Any, ...]],
    ended: list[Any],
    going: list[tuple[Any, RunState, int]],
) -> dict[int, list[tuple[Any, ...]]]:
    """A batch as the statements' rows: the attempts that failed and were retried, the runs
    that ended (flat, :data:`ENDED_FIELDS` values a run; with their last attempt), and the
    runs ``going`` on (a run, its state and attempts, read by the writer: the run as it is
    now, and the attempt it is running)."""
    rows: dict[int, list[tuple[Any, ...]]] = {kind: [] for kind in STATEMENTS}
    for run, state, attempts in going:
        run_id = run.run_id
        rows[RUN_GOING].append(
            (run_id, program_id, run.task.name, run.name, state.value, attempts, run.created_at)
        )
        if state is RunState.RUNNING:
            rows[ATTEMPT_GOING].append((run_id, attempts, run.attempt_started_at, run.attempt_pid))
        rows[LINKS].extend((run_id, upstream.run_id) for upstream in run.upstream)
    attempt_rows = rows[ATTEMPT_ENDED]
    for run_id, attempt, started_at, pid, duration, error in failed:
        attempt_rows.append(_attempt_row(run_id, attempt, started_at, pid, duration, error))
    run_rows, last_rows, links = rows[RUN_ENDED], rows[LAST_ATTEMPT], rows[LINKS]
    fields = [iter(ended)] * ENDED_FIELDS
    for row in zip(*fields, strict=True):
        run_id, task, runner, state, count, created_at, duration, error, upstream = row[:9]
        name = state if isinstance(state, str) else state.value
        run_rows.append(
            (
                run_id,
                program_id,
                task,
                runner,
                name,
                count,
                created_at,
                created_at + duration,
                duration,
                *error_fields(error),
            )
        )
        if count:
            started_at, pid, spent = row[9:]
            if error is None:
                last_rows.append(
                    (run_id, count, started_at, spent, "completed", None, None, None, pid)
                )
            else:
                last_rows.append(_attempt_row(run_id, count, started_at, pid, spent, error))
        links.extend((run_id, up) for up in upstream)
    return rows


def _attempt_row(
    run_id: str,
    attempt: int,
    started_at: float | None,
    pid: int | None,
    duration: float,
    error: BaseException,
) -> tuple[Any, ...]:
    """An attempt that failed, as its row (its error as text, its traceback formatted)."""
    if pid is None:
        pid = getattr(error, "pid", None)  # (a crash says its pid)
    return (
        run_id,
        attempt,
        started_at,
        duration,
        Outcome(error=error).state.value,
        *error_fields(error),
        traceback_text(error),
        pid,
    )


def write(connection: Any, rows: dict[int, list[tuple[Any, ...]]]) -> None:
    """One transaction for the batch, its rows many to a statement.

    Few statements, not one a row: the writer's thread gives the GIL up while SQLite works on
    a statement and then waits for it (up to the switch interval, 5 ms, while the program's
    threads run Python), so one statement a row wrote ~500-2,500 rows a second beside a busy
    program (``benchmarks/history_writes.py``), the batch piling up meanwhile. A batch's
    statements take :data:`MOST_ROWS` rows, then powers of two for the rest (a few statement
    shapes, each prepared once per connection)."""
    parameters = connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    connection.execute("BEGIN IMMEDIATE")
    try:
        cursor = connection.cursor()
        for kind, kind_rows in rows.items():
            fit = min(MOST_ROWS, parameters // len(STATEMENTS[kind][1]))
            most = 1 << (fit.bit_length() - 1)
            start, count = 0, len(kind_rows)
            while start < count:
                left = count - start
                take = most if left >= most else 1 << (left.bit_length() - 1)
                values = list(itertools.chain.from_iterable(kind_rows[start : start + take]))
                cursor.execute(statement(kind, take), values)
                start += take
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def error_fields(error: BaseException | None) -> tuple[str | None, str | None]:
    if error is None:
        return None, None
    return type(error).__qualname__, str(error)[:4000]


def traceback_text(error: BaseException | None) -> str | None:
    if error is None:
        return None
    import traceback

    return "".join(traceback.format_exception(error))[-20000:]
