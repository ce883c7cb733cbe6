"""Run history: every run remembered in one SQLite database under ``WOFLO_HOME``.

The built-in ``history`` plugin (:mod:`woflo_plugins.history`) records runs through the public
lifecycle hooks; this module is the store both it and ``woflo runs`` use, and the Python API to
read it::

    from woflo import history

    for run in history.runs(task="fetch_data", state="failed", since=3600, limit=20):
        print(run["run_id"], run["attempts"], run["error"])
    history.run("8317c8687700000b")["attempts_detail"]   # every attempt

The database is ``WOFLO_HOME/history.sqlite3`` (``WOFLO_HOME`` defaults to the per-user state
directory: ``$XDG_STATE_HOME/woflo`` or ``~/.local/state/woflo`` on Linux,
``~/Library/Application Support/woflo`` on macOS, ``%LOCALAPPDATA%\\woflo`` on Windows), in WAL
mode, its schema versioned (``PRAGMA user_version``) and migrated forward on open. Many
programs may write it at once: each writes from one thread, in short transactions, waiting
for the others' locks (``busy_timeout``) instead of failing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from woflo._schema import BUSY_TIMEOUT_MS, migrate, prepare

__all__ = [
    "HOME_ENV",
    "SCHEMA_VERSION",
    "HistoryError",
    "connect",
    "database_path",
    "home",
    "iso_time",
    "programs",
    "prune",
    "run",
    "runs",
    "tasks",
    "timeline",
]

HOME_ENV = "WOFLO_HOME"
SCHEMA_VERSION = 3


class HistoryError(Exception):
    """The history database cannot be opened or read (the message says why and where)."""


def home() -> Path:
    """Where woflo keeps its files: ``WOFLO_HOME``, else the per-user state directory."""
    configured = os.environ.get(HOME_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "woflo"
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "woflo"
    state = os.environ.get("XDG_STATE_HOME", "").strip()
    return (Path(state) if state else Path.home() / ".local" / "state") / "woflo"


def database_path() -> Path:
    """The history database's path."""
    return home() / "history.sqlite3"


def connect(path: Path | None = None, *, create: bool = True) -> sqlite3.Connection:
    """A connection to the history database (created and migrated when ``create``).

    :raises HistoryError: when it cannot be opened, created or migrated, saying why.
    """
    path = database_path() if path is None else path
    try:
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.exists():
            raise HistoryError(f"no run history yet at {path}")
        connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise HistoryError(f"cannot open the run history at {path}: {exc}") from exc
    try:
        prepare(connection)
        migrate(connection, SCHEMA_VERSION)
    except sqlite3.Error as exc:
        connection.close()
        raise HistoryError(f"cannot use the run history at {path}: {exc}") from exc
    return connection


# ---- reading -----------------------------------------------------------------------------------

_COLUMNS = (
    "r.run_id, r.task, r.runner, r.state, r.attempts, r.created_at, r.ended_at, r.duration, "
    "r.error_type, r.error_message, r.program_id, p.argv, p.pid, p.host"
)


def runs(
    *,
    task: str | None = None,
    state: str | Sequence[str] | None = None,
    since: float | None = None,
    limit: int | None = 50,
    offset: int = 0,
    program: str | None = None,
    path: Path | None = None,
) -> list[dict[str, Any]]:
    """Recorded runs, newest first.

    :param task: only this task's runs.
    :param program: only the runs of this program invocation (its ``program_id``).
    :param offset: skip this many of the newest (a page: ``limit=50, offset=100``).
    :param state: only runs in this state (or these states), e.g. ``"failed"``.
    :param since: only runs created in the last ``since`` seconds.
    :param limit: at most this many (``None``: all).
    :raises HistoryError: when the database cannot be read.
    """
    where: list[str] = []
    params: list[Any] = []
    if task is not None:
        where.append("r.task = ?")
        params.append(task)
    if state is not None:
        states = [state] if isinstance(state, str) else list(state)
        where.append(f"r.state IN ({', '.join('?' for _ in states)})")
        params.extend(states)
        if "completed" not in states:  # (as the partial index says it: then SQLite uses it)
            where.append("r.state != 'completed'")
    if since is not None:
        where.append("r.created_at >= ?")
        params.append(time.time() - since)
    if program is not None:
        where.append("r.program_id = ?")
        params.append(program)
    sql = f"SELECT {_COLUMNS} FROM runs r LEFT JOIN programs p USING (program_id)"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY r.created_at DESC"
    if limit is not None or offset:
        sql += " LIMIT ? OFFSET ?"
        params.extend([-1 if limit is None else int(limit), int(offset)])
    return [_run_row(row) for row in _query(sql, params, path)]


def tasks(*, path: Path | None = None) -> list[str]:
    """The names of the tasks with recorded runs, sorted."""
    return [row[0] for row in _query("SELECT DISTINCT task FROM runs ORDER BY task", [], path)]


def programs(*, limit: int | None = 50, path: Path | None = None) -> list[dict[str, Any]]:
    """Program invocations that recorded runs, newest first, with their runs' counts by state
    (``states``), first creation and last end."""
    sql = (
        "SELECT p.program_id, p.argv, p.pid, p.host, p.cwd, p.started_at, "
        "(SELECT json_group_object(state, n) FROM (SELECT state, count(*) AS n FROM runs "
        "WHERE program_id = p.program_id GROUP BY state)), "
        "(SELECT max(ended_at) FROM runs WHERE program_id = p.program_id) "
        "FROM programs p ORDER BY p.started_at DESC"
    )
    params: list[Any] = []
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    found = []
    for row in _query(sql, params, path):
        states = _json(row[6], {})
        found.append(
            {
                "program_id": row[0],
                "argv": _json(row[1], []),
                "pid": row[2],
                "host": row[3],
                "cwd": row[4],
                "started_at": iso_time(row[5]),
                "states": states,
                "runs": sum(states.values()),
                "ended_at": iso_time(row[7]),
            }
        )
    return found


def timeline(program_id: str, *, path: Path | None = None) -> dict[str, Any] | None:
    """What a program invocation did, for a Gantt chart: every run (created, ended, state)
    and every attempt (start, duration, outcome, pid) as Unix times; ``None`` if unknown."""
    found = _query("SELECT started_at FROM programs WHERE program_id = ?", [program_id], path)
    if not found:
        return None
    runs_rows = _query(
        f"SELECT {', '.join(_TIMELINE_RUN)} FROM runs WHERE program_id = ? ORDER BY created_at",
        [program_id],
        path,
    )
    attempt_rows = _query(
        f"SELECT {', '.join('a.' + name for name in _TIMELINE_ATTEMPT)} FROM attempts a "
        "JOIN runs r USING (run_id) WHERE r.program_id = ? ORDER BY a.started_at",
        [program_id],
        path,
    )
    return {
        "program_id": program_id,
        "started_at": found[0][0],
        "runs": [dict(zip(_TIMELINE_RUN, row, strict=True)) for row in runs_rows],
        "attempts": [dict(zip(_TIMELINE_ATTEMPT, row, strict=True)) for row in attempt_rows],
    }


_TIMELINE_RUN = ("run_id", "task", "state", "attempts", "created_at", "ended_at")
_TIMELINE_ATTEMPT = ("run_id", "attempt", "started_at", "duration", "outcome", "pid")


def run(run_id: str, *, path: Path | None = None) -> dict[str, Any] | None:
    """One recorded run with every attempt (``attempts_detail``), or ``None`` if unknown."""
    sql = f"SELECT {_COLUMNS} FROM runs r LEFT JOIN programs p USING (program_id) WHERE run_id = ?"
    found = _query(sql, [run_id], path)
    if not found:
        return None
    result = _run_row(found[0])
    attempts = _query(
        "SELECT attempt, started_at, duration, outcome, error_type, error_message, traceback, "
        "pid FROM attempts WHERE run_id = ? ORDER BY attempt",
        [run_id],
        path,
    )
    result["upstream"] = [
        row[0] for row in _query("SELECT upstream_id FROM links WHERE run_id = ?", [run_id], path)
    ]
    result["downstream"] = [
        row[0] for row in _query("SELECT run_id FROM links WHERE upstream_id = ?", [run_id], path)
    ]
    result["attempts_detail"] = [
        {
            "attempt": a[0],
            "started_at": iso_time(a[1]),
            "duration": a[2],
            "outcome": a[3],
            "error": _error(a[4], a[5]),
            "traceback": a[6],
            "pid": a[7],
        }
        for a in attempts
    ]
    return result


def prune(
    *, older_than: float | None = None, keep: int | None = None, path: Path | None = None
) -> int:
    """Delete runs created more than ``older_than`` seconds ago, and all but the newest
    ``keep`` runs; how many runs were deleted."""
    connection = connect(path)
    try:
        deleted = 0
        connection.execute("BEGIN IMMEDIATE")
        if older_than is not None:
            deleted += _delete(connection, "created_at < ?", [time.time() - older_than])
        if keep is not None and _may_hold_more_than(connection, keep):
            cutoff = connection.execute(
                "SELECT created_at FROM runs ORDER BY created_at DESC LIMIT 1 OFFSET ?",
                [max(0, int(keep))],
            ).fetchone()
            if cutoff is not None:
                deleted += _delete(connection, "created_at <= ?", [cutoff[0]])
        if deleted:
            connection.execute(
                "DELETE FROM programs WHERE program_id NOT IN "
                "(SELECT DISTINCT program_id FROM runs)"
            )
        connection.execute("COMMIT")
        return deleted
    except sqlite3.Error as exc:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise HistoryError(f"cannot prune the run history: {exc}") from exc
    finally:
        connection.close()


def _may_hold_more_than(connection: sqlite3.Connection, keep: int) -> bool:
    """Whether the table may hold more than ``keep`` runs: the span of its rowids bounds the
    count from above, read from the ends of one B-tree (counting, or skipping ``keep``
    entries of an index, would read all of them, every time the writer prunes)."""
    span = connection.execute("SELECT max(rowid) - min(rowid) + 1 FROM runs").fetchone()[0]
    return span is not None and span > keep


def _delete(connection: sqlite3.Connection, condition: str, params: Iterable[Any]) -> int:
    params = list(params)
    for table in ("attempts", "links"):
        connection.execute(
            f"DELETE FROM {table} WHERE run_id IN (SELECT run_id FROM runs WHERE {condition})",
            params,
        )
    return connection.execute(f"DELETE FROM runs WHERE {condition}", params).rowcount


def _json(text: str | None, default: Any) -> Any:
    """A JSON column's value; ``default`` when empty or not JSON (a hand-edited row)."""
    if not text:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def _reader(path: Path) -> sqlite3.Connection | None:
    """A read-only connection: reading never writes (no migration, no checkpoint of another
    program's log); a database of another schema version is an error saying what to do.
    ``None`` for one that a program is creating now (no table yet): nothing recorded yet."""
    try:
        connection = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000
        )
    except (OSError, sqlite3.Error) as exc:
        raise HistoryError(f"cannot open the run history at {path}: {exc}") from exc
    try:
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        empty = version == 0 and not connection.execute("SELECT 1 FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        connection.close()
        raise HistoryError(f"cannot use the run history at {path}: {exc}") from exc
    if empty:  # (between its creation and its first migration, in another program)
        connection.close()
        return None
    if version != SCHEMA_VERSION:
        connection.close()
        what = (
            "run any program with this woflo to bring it up to date"
            if version < SCHEMA_VERSION
            else "read it with the newer woflo that wrote it"
        )
        raise HistoryError(
            f"the run history at {path} has schema version {version}; this woflo reads "
            f"version {SCHEMA_VERSION}: {what}"
        )
    return connection


def _query(sql: str, params: Sequence[Any], path: Path | None) -> list[tuple[Any, ...]]:
    path = database_path() if path is None else path
    if not path.exists():
        return []  # nothing recorded yet
    connection = _reader(path)
    if connection is None:
        return []  # nothing recorded yet
    try:
        return connection.execute(sql, list(params)).fetchall()
    except sqlite3.Error as exc:
        raise HistoryError(f"cannot read the run history: {exc}") from exc
    finally:
        connection.close()


def _run_row(row: Sequence[Any]) -> dict[str, Any]:
    argv = _json(row[11], [])
    return {
        "run_id": row[0],
        "task": row[1],
        "runner": row[2],
        "state": row[3],
        "attempts": row[4],
        "created_at": iso_time(row[5]),
        "ended_at": iso_time(row[6]),
        "duration": row[7],
        "error": _error(row[8], row[9]),
        "program": {"id": row[10], "argv": argv, "pid": row[12], "host": row[13]},
    }


def _error(kind: str | None, message: str | None) -> str | None:
    if kind is None:
        return None
    return f"{kind}({message!r})" if message else f"{kind}()"


def iso_time(when: float | None) -> str | None:
    """A Unix time as ISO 8601 in UTC (``None`` stays ``None``)."""
    if when is None:
        return None
    import datetime

    try:
        return datetime.datetime.fromtimestamp(when, tz=datetime.UTC).isoformat()
    except (OverflowError, OSError, ValueError):  # (beyond the platform's dates)
        return None
