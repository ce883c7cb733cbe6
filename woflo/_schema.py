"""The run history's schema: its migrations, by version (``PRAGMA user_version``); and the
set-up the history and the cache share."""

from __future__ import annotations

import random
import sqlite3
import time

__all__ = ["BUSY_TIMEOUT_MS", "MIGRATIONS", "migrate", "prepare", "use_wal"]

BUSY_TIMEOUT_MS = 30_000
"""How long a writer or reader waits for another program's lock before giving up."""

MIGRATIONS: dict[int, str] = {
    1: """
        CREATE TABLE programs (
            program_id TEXT PRIMARY KEY,
            argv TEXT NOT NULL,
            pid INTEGER NOT NULL,
            host TEXT NOT NULL,
            cwd TEXT NOT NULL,
            started_at REAL NOT NULL
        );
        CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            program_id TEXT NOT NULL,
            task TEXT NOT NULL,
            runner TEXT NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            ended_at REAL,
            duration REAL,
            error_type TEXT,
            error_message TEXT
        );
        CREATE INDEX runs_by_created ON runs (created_at);
        CREATE INDEX runs_by_task ON runs (task, created_at);
        CREATE INDEX runs_by_state ON runs (state, created_at);
        CREATE INDEX runs_by_program ON runs (program_id);
        CREATE TABLE attempts (
            run_id TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            started_at REAL,
            duration REAL,
            outcome TEXT,
            error_type TEXT,
            error_message TEXT,
            traceback TEXT,
            pid INTEGER,
            PRIMARY KEY (run_id, attempt)
        );
    """,
    # 2: completed runs (nearly all) are no longer in the index by state: one B-tree fewer to
    # update per run. A query for other states names the index's condition (see runs()).
    2: """
        DROP INDEX runs_by_state;
        CREATE INDEX runs_by_state ON runs (state, created_at) WHERE state != 'completed';
        DROP INDEX runs_by_program;
        CREATE INDEX runs_by_program ON runs (program_id, created_at);
    """,
    # 3: which runs fed which (a run's upstream runs, from its arguments)
    3: """
        CREATE TABLE links (
            run_id TEXT NOT NULL,
            upstream_id TEXT NOT NULL,
            PRIMARY KEY (run_id, upstream_id)
        ) WITHOUT ROWID;
        CREATE INDEX links_by_upstream ON links (upstream_id);
    """,
}


def migrate(connection: sqlite3.Connection, latest: int) -> None:
    """Bring ``connection``'s database up to schema ``latest``, one migration per transaction
    (another program may migrate meanwhile: each step checks the version again)."""
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > latest:
        raise sqlite3.DatabaseError(
            f"its schema is version {version}, newer than this woflo's {latest}"
        )
    for target in range(version + 1, latest + 1):
        connection.execute("BEGIN IMMEDIATE")
        try:
            current = connection.execute("PRAGMA user_version").fetchone()[0]
            if current < target:  # (another program may have migrated meanwhile)
                for statement in MIGRATIONS[target].split(";"):  # (not executescript: it
                    if statement.strip():  # commits first, and this must be one transaction)
                        connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {target}")
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise


def use_wal(connection: sqlite3.Connection, timeout: float) -> None:
    """Put ``connection``'s database in WAL mode, waiting at most ``timeout`` seconds for others.

    SQLite refuses a change of journal mode with "database is locked" at once, without its busy
    handler, while another connection opens the same file: programs started together on a
    fresh ``WOFLO_HOME`` would fail to open it. This tries again, with jittered pauses.
    """
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not busy or time.monotonic() >= deadline:
                raise
        time.sleep(pause * random.uniform(0.5, 1.5))
        pause = min(pause * 2, 0.05)


def prepare(connection: sqlite3.Connection) -> None:
    """What every connection that writes woflo's files sets first: wait for other programs'
    locks (:data:`BUSY_TIMEOUT_MS`), WAL mode (:func:`use_wal`), ``synchronous = NORMAL``."""
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    use_wal(connection, BUSY_TIMEOUT_MS / 1000)
    connection.execute("PRAGMA synchronous = NORMAL")
