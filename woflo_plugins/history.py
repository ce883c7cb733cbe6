"""The built-in history plugin: every run of the program, recorded in :mod:`woflo.history`.

Through the public lifecycle hooks only (in the calling process, for every runner): a run when
it is created, each attempt when it starts and ends (its outcome, error and formatted traceback,
the pid of the process that executed it), the run when it ends; plus the program (argv, pid,
host, directory, start time), so that the runs of one invocation group together.

A run's call path only appends to a queue. One background writer thread drains it in batches
(one transaction each, the batch's events for one run merged into one row), so recording never
slows or breaks a run: when the database cannot be written (an unwritable or full disk, a
corrupt file, a lock held too long), woflo warns once on stderr and the runs go on. At exit the
queue is flushed, for at most :data:`FLUSH_AT_EXIT` seconds; after a SIGKILL at most the batch
being gathered is lost. Old runs are pruned in the background: beyond ``WOFLO_HISTORY_DAYS``
days (default 30) or the newest ``WOFLO_HISTORY_MAX_RUNS`` (default 1,000,000).

``WOFLO_HISTORY=off`` (or ``WOFLO_DISABLE_PLUGINS=history``) records nothing.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import time
from typing import Any

from woflo import BaseTaskRun, Outcome, hookimpl
from woflo.options import from_env, number, whole_number
from woflo.plugins import background_thread

__all__ = ["DAYS_ENV", "ENV", "FLUSH_AT_EXIT", "MAX_RUNS_ENV", "flush", "reset"]

ENV = "WOFLO_HISTORY"
DAYS_ENV = "WOFLO_HISTORY_DAYS"
MAX_RUNS_ENV = "WOFLO_HISTORY_MAX_RUNS"
FLUSH_AT_EXIT = 5.0
"""Seconds the exit waits, at most, for the queue to be written."""
BATCH_WINDOW = 0.02
"""Seconds the writer gathers events after the first one of a batch."""
PRUNE_EVERY = 10_000
"""Runs written between two prunings."""

_SWITCH = {"on": True, "1": True, "true": True, "yes": True, "": True}
_SWITCH |= {"off": False, "0": False, "false": False, "no": False}


def _enabled() -> bool:
    value = os.environ.get(ENV, "").strip().lower()
    if value in _SWITCH:
        return _SWITCH[value]
    print(f"woflo: {ENV}={value!r} is neither on nor off; recording runs (on)", file=sys.stderr)
    return True


class _Recorder:
    """The queue of events, and the writer thread that stores them (started on first use)."""

    def __init__(self) -> None:
        # one queue per kind of event, each row as its statement takes it (see _write)
        self.queues: tuple[collections.deque[tuple[Any, ...]], ...] = tuple(
            collections.deque() for _ in _STATEMENTS
        )
        self.wake = threading.Event()
        self.idle = threading.Event()
        self.idle.set()
        self.awake = False  # ``wake`` is set (a plain flag: cheaper to read on the call path)
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.enabled: bool | None = None  # read at the first run (a worker never records)
        self.stopping = False
        self.warned = False
        self.program: tuple[Any, ...] | None = None
        self.written = 0
        self.retry: list[list[tuple[Any, ...]]] = []
        self.failures = 0

    def put(self, kind: int, row: tuple[Any, ...]) -> None:
        if self.thread is None and not self._first():
            return
        self.queues[kind].append(row)
        if not self.awake:
            self.awake = True
            self.idle.clear()
            self.wake.set()

    def _first(self) -> bool:
        """Whether to record at all (read at the first run: a worker never records); the
        writer started if so."""
        if self.enabled is None:
            self.enabled = _enabled()
        if self.enabled:
            self._start()
        return self.enabled

    def _start(self) -> None:
        with self.lock:
            if self.thread is not None:
                return
            import atexit
            import json
            import socket

            self.program = (
                os.urandom(8).hex(),
                json.dumps(sys.argv),
                os.getpid(),
                socket.gethostname(),
                os.getcwd(),
                time.time(),
            )
            thread = background_thread(self._write_forever, "woflo-history")
            self.thread = thread
            atexit.register(self.flush, FLUSH_AT_EXIT)
            thread.start()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event queued so far is written (or dropped): ``True`` if so."""
        if self.thread is None:
            return True
        self.awake = True
        self.wake.set()
        return self.idle.wait(timeout)

    def _write_forever(self) -> None:
        from woflo import history

        connection = None
        program = self.program
        assert program is not None  # (set before the thread starts)
        while True:
            self.wake.wait()
            time.sleep(BATCH_WINDOW)  # gather a batch (not a wait for anything)
            self.wake.clear()  # then the flag: a run that sees it down wakes the next batch
            self.awake = False
            batch = self.retry or [[] for _ in self.queues]
            self.retry = []
            for queue, rows in zip(self.queues, batch, strict=True):
                for _ in range(len(queue)):  # (what is there now: producers go on meanwhile)
                    rows.append(queue.popleft())
            try:
                if connection is None:
                    connection = history.connect()
                    connection.execute(
                        "INSERT OR IGNORE INTO programs VALUES (?, ?, ?, ?, ?, ?)", program
                    )
                _write(connection, program[0], batch)
                ended = len(batch[-1])
                self.written += ended
                if self.written >= PRUNE_EVERY or self.written == ended:
                    self._prune()
                    self.written %= PRUNE_EVERY
            except Exception as exc:  # never the runs' problem: said once, then quiet
                self._warn(exc)
                self.failures += 1
                if self.failures < 3:  # (a lock held too long, say): once more, later
                    self.retry = batch
                    self.awake = True
                    self.wake.set()
                else:
                    self.failures = 0
                if connection is not None and not _still_usable(connection):
                    connection.close()
                    connection = None
            else:
                self.failures = 0
            if not any(self.queues):
                self.idle.set()

    def _prune(self) -> None:
        from woflo import history

        days = _setting(DAYS_ENV, number(minimum=0, infinite=True), 30)
        keep = _setting(MAX_RUNS_ENV, whole_number(minimum=1, infinite=True), 1_000_000)
        history.prune(
            older_than=None if days == float("inf") else days * 86400.0,
            keep=None if keep == float("inf") else keep,
        )

    def _warn(self, error: BaseException) -> None:
        if self.warned:
            return
        self.warned = True
        from woflo import history

        print(
            f"woflo: cannot record runs in {history.database_path()}: {error}; the runs go on "
            f"(set {ENV}=off to stop recording)",
            file=sys.stderr,
        )


def _setting(variable: str, validator: Any, default: Any) -> Any:
    try:
        return from_env(variable, validator, default)
    except Exception as exc:
        if variable not in _said:
            _said.add(variable)
            print(f"woflo: {exc}; keeping runs by the default ({default})", file=sys.stderr)
        return default


_said: set[str] = set()


def _still_usable(connection: Any) -> bool:
    try:
        connection.execute("SELECT 1")
    except Exception:
        return False
    return True


CREATED, STARTED, FINISHED, ENDED = range(4)
_STATEMENTS = (
    # CREATED (run_id, task, runner, created_at): an ENDED row of the same run may be there
    "INSERT OR IGNORE INTO runs (run_id, program_id, task, runner, state, attempts, "
    "created_at) VALUES (?, :program, ?, ?, 'pending', 0, ?)",
    # STARTED (run_id, attempt, started_at, pid)
    "INSERT INTO attempts (run_id, attempt, started_at, pid) VALUES (?, ?, ?, ?) ON CONFLICT "
    "(run_id, attempt) DO UPDATE SET started_at = excluded.started_at, "
    "pid = coalesce(pid, excluded.pid)",
    # FINISHED (run_id, attempt, duration, outcome, error_type, error_message, traceback, pid)
    "INSERT INTO attempts (run_id, attempt, duration, outcome, error_type, error_message, "
    "traceback, pid) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, attempt) DO UPDATE "
    "SET duration = excluded.duration, outcome = excluded.outcome, error_type = "
    "excluded.error_type, error_message = excluded.error_message, traceback = "
    "excluded.traceback, pid = coalesce(excluded.pid, pid)",
    # ENDED (run_id, task, runner, state, attempts, created_at, ended_at, duration,
    # error_type, error_message)
    "INSERT INTO runs (run_id, program_id, task, runner, state, attempts, created_at, "
    "ended_at, duration, error_type, error_message) VALUES (?, :program, ?, ?, ?, ?, ?, ?, ?, "
    "?, ?) ON CONFLICT (run_id) DO UPDATE SET state = excluded.state, attempts = "
    "excluded.attempts, ended_at = excluded.ended_at, duration = excluded.duration, "
    "error_type = excluded.error_type, error_message = excluded.error_message",
)


def _write(connection: Any, program_id: str, batch: list[list[tuple[Any, ...]]]) -> None:
    """One transaction for the batch, one ``executemany`` per kind of event (the rows are
    as the hooks made them; only a failure's error is turned into text here)."""
    created, started, finished, ended = batch
    finished = [row if row[4] is None else _failure(row) for row in finished]
    ended = [row if row[8] is None else _ended_in_error(row) for row in ended]
    statements = [s.replace(":program", f"'{program_id}'") for s in _STATEMENTS]
    connection.execute("BEGIN IMMEDIATE")
    try:
        for statement, rows in zip(statements, (created, started, finished, ended), strict=True):
            if rows:
                connection.executemany(statement, rows)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def _failure(row: tuple[Any, ...]) -> tuple[Any, ...]:
    run_id, attempt, duration, _outcome, error, _message, _traceback, pid = row
    pid = pid if pid is not None else getattr(error, "pid", None)  # (a crash says its pid)
    kind, message = _error_fields(error)
    return (
        run_id,
        attempt,
        duration,
        _outcome_of(error),
        kind,
        message,
        _traceback_text(error),
        pid,
    )


def _ended_in_error(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return (*row[:8], *_error_fields(row[8]))


def _error_fields(error: BaseException | None) -> tuple[str | None, str | None]:
    if error is None:
        return None, None
    return type(error).__qualname__, str(error)[:4000]


def _traceback_text(error: BaseException | None) -> str | None:
    if error is None:
        return None
    import traceback

    return "".join(traceback.format_exception(error))[-20000:]


_recorder = _Recorder()


def flush(timeout: float | None = None) -> bool:
    """Wait (at most ``timeout`` seconds) until every run event so far is in the database."""
    return _recorder.flush(timeout)


def reset() -> None:
    """Flush, then start afresh: ``WOFLO_HOME`` and ``WOFLO_HISTORY`` are read again (for a
    program, or a test, that changes them)."""
    global _recorder
    _recorder.flush(FLUSH_AT_EXIT)
    _recorder.enabled = False
    _recorder = _Recorder()


def _forget_in_child() -> None:  # a fork of the caller is another program: its own writer
    global _recorder
    _recorder = _Recorder()


os.register_at_fork(after_in_child=_forget_in_child)


@hookimpl
def woflo_run_created(run: BaseTaskRun[Any]) -> None:
    _recorder.put(CREATED, (run.run_id, run.task.name, run.name, time.time()))


@hookimpl
def woflo_attempt_started(run: BaseTaskRun[Any], attempt: int) -> None:
    _recorder.put(STARTED, (run.run_id, attempt, time.time(), run.attempt_pid))


@hookimpl
def woflo_attempt_finished(run: BaseTaskRun[Any], attempt: int, outcome: Outcome) -> None:
    # (a failure's error rides in the error_type place, turned into text by the writer)
    row = (run.run_id, attempt, outcome.duration, "completed", outcome.error, None, None, None)
    _recorder.put(FINISHED, row)


@hookimpl
def woflo_run_finished(run: BaseTaskRun[Any]) -> None:
    ended, duration = time.time(), run.duration
    row = (run.run_id, run.task.name, run.name, run.state.value, run.attempts, ended - duration)
    _recorder.put(ENDED, (*row, ended, duration, run.exception(), None))


def _outcome_of(error: BaseException) -> str:
    from woflo.errors import TaskCrashed, TaskStopped, TaskTimeout

    for kind, name in ((TaskStopped, "stopped"), (TaskTimeout, "timed_out")):
        if isinstance(error, kind):
            return name
    return "crashed" if isinstance(error, TaskCrashed) else "failed"
