"""How the history plugin's events become rows of :mod:`woflo.history`'s tables: the
statements, the merging of a batch's events, one transaction per batch."""

from __future__ import annotations

from typing import Any

from woflo import Outcome

__all__ = [
    "CREATED",
    "ENDED",
    "FINISHED",
    "LINKS",
    "STARTED",
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


CREATED, STARTED, FINISHED, ENDED = range(4)
LINKS = 4  # (not a queue: rows made from CREATED's)
"""The kinds of event, each with its queue; the hooks put these rows (plain values, and a
failure's error, turned into text by the writer):

- CREATED (run_id, task, runner, created_at[, upstream run ids]); LINKS (run_id, upstream
  run ids), made by the writer from CREATED rows
- STARTED (run_id, attempt, started_at, pid)
- FINISHED (run_id, attempt, duration, error)
- ENDED (run_id, task, runner, state (a RunState, or "cached"), attempts, ended_at,
  duration, error)
"""
STATEMENTS = {  # table, columns, what a row of a run or attempt already there does
    LINKS: ("links", ("run_id", "upstream_id"), "DO NOTHING"),
    CREATED: (
        "runs",
        ("run_id", "program_id", "task", "runner", "state", "attempts", "created_at"),
        "DO NOTHING",  # (its ENDED row may have come first)
    ),
    STARTED: (
        "attempts",
        ("run_id", "attempt", "started_at", "pid"),
        "DO UPDATE SET started_at = excluded.started_at, pid = coalesce(pid, excluded.pid)",
    ),
    FINISHED: (  # with its start when the batch holds both (the common case)
        "attempts",
        (
            "run_id",
            "attempt",
            "started_at",
            "duration",
            "outcome",
            "error_type",
            "error_message",
            "traceback",
            "pid",
        ),
        "DO UPDATE SET started_at = coalesce(excluded.started_at, started_at), duration = "
        "excluded.duration, outcome = excluded.outcome, error_type = excluded.error_type, "
        "error_message = excluded.error_message, traceback = excluded.traceback, "
        "pid = coalesce(excluded.pid, pid)",
    ),
    ENDED: (
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


def statement(kind: int) -> str:
    """The statement for one kind of event (``executemany`` takes the batch's rows)."""
    table, columns, conflict = STATEMENTS[kind]
    key = {"runs": "run_id", "attempts": "run_id, attempt"}.get(table, "run_id, upstream_id")
    marks = ", ".join("?" for _ in columns)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) "
        f"ON CONFLICT ({key}) {conflict}"
    )


def event_rows(program_id: str, batch: list[list[tuple[Any, ...]]]) -> dict[int, list[Any]]:
    """The batch's events as the statements' rows: a run created and ended within the batch
    is one row, an attempt started and finished within it one row too."""
    created, started, finished, ended, links = batch
    ended_ids = {row[0] for row in ended}
    starts = {(row[0], row[1]): row for row in started}
    attempts: list[tuple[Any, ...]] = []
    for run_id, attempt, duration, error in finished:
        start = starts.pop((run_id, attempt), None)
        started_at, pid = (start[2], start[3]) if start is not None else (None, None)
        if error is None:
            attempts.append(
                (run_id, attempt, started_at, duration, "completed", None, None, None, pid)
            )
        else:
            if pid is None:
                pid = getattr(error, "pid", None)  # (a crash says its pid)
            kind, message = error_fields(error)
            attempts.append(
                (
                    run_id,
                    attempt,
                    started_at,
                    duration,
                    Outcome(error=error).state.value,
                    kind,
                    message,
                    traceback_text(error),
                    pid,
                )
            )
    runs = []
    for run_id, task, runner, state, count, ended_at, duration, error in ended:
        runs.append(
            (
                run_id,
                program_id,
                task,
                runner,
                state if isinstance(state, str) else state.value,
                count,
                ended_at - duration,
                ended_at,
                duration,
                *error_fields(error),
            )
        )
    return {
        CREATED: [
            (run_id, program_id, task, runner, "pending", 0, created_at)
            for run_id, task, runner, created_at, *_ in created
            if run_id not in ended_ids
        ],
        LINKS: [(run_id, upstream) for run_id, ids in links for upstream in ids],
        STARTED: list(starts.values()),
        FINISHED: attempts,
        ENDED: runs,
    }


def write(connection: Any, program_id: str, batch: list[list[tuple[Any, ...]]]) -> None:
    """One transaction for the batch: one ``executemany`` per kind of event."""
    rows = event_rows(program_id, batch)
    connection.execute("BEGIN IMMEDIATE")
    try:
        for kind, kind_rows in rows.items():
            if kind_rows:
                connection.executemany(SQL[kind], kind_rows)
        if rows[STARTED]:  # attempts still going on: their run is running (its row is there)
            connection.executemany(
                "UPDATE runs SET state = 'running', attempts = max(attempts, ?) "
                "WHERE run_id = ? AND ended_at IS NULL",
                [(row[1], row[0]) for row in rows[STARTED]],
            )
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


SQL = {kind: statement(kind) for kind in STATEMENTS}


def error_fields(error: BaseException | None) -> tuple[str | None, str | None]:
    if error is None:
        return None, None
    return type(error).__qualname__, str(error)[:4000]


def traceback_text(error: BaseException | None) -> str | None:
    if error is None:
        return None
    import traceback

    return "".join(traceback.format_exception(error))[-20000:]
