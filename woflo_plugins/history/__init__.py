"""The built-in history plugin: every run of the program, recorded in :mod:`woflo.history`.

Through the public lifecycle hooks only (in the calling process, for every runner): a run when
it is created, each attempt when it starts and ends (its outcome, error and formatted traceback,
the pid of the process that executed it), the run when it ends; plus the program (argv, pid,
host, directory, start time), so that the runs of one invocation group together.

A run's call path only appends to a queue. One background writer thread drains it in batches
(one transaction each), so recording never slows or breaks a run: when the database cannot be
written (an unwritable or full disk, a corrupt file, a lock held too long), woflo warns once on
stderr and the runs go on. The writer keeps a run's creation and an attempt's start back for
up to :data:`HOLD` seconds: a run that ends meanwhile (nearly all do) is then one insert of
one row, and its attempt another, instead of inserts and updates of each index. At exit the
queue is flushed, for at most :data:`FLUSH_AT_EXIT` seconds. While the program keeps calling
tasks, a batch gathers until a pause in its events or for :data:`MAX_DELAY` seconds, so that
writes do not compete with the runs for the process; after a SIGKILL the batch being
gathered is lost, and the runs created within :data:`HOLD` seconds that had not ended. Old
runs are pruned in the background: beyond ``WOFLO_HISTORY_DAYS`` days (default 30) or the
newest ``WOFLO_HISTORY_MAX_RUNS`` (default 1,000,000).

``WOFLO_HISTORY=off`` (or ``WOFLO_DISABLE_PLUGINS=history``) records nothing.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from woflo import BaseTaskRun, Outcome, RunState, hookimpl
from woflo.options import from_env, number, whole_number
from woflo.plugins import background_thread
from woflo_plugins.history import _store as store
from woflo_plugins.history._store import CREATED, ENDED, FINISHED, LINKS, STARTED

__all__ = ["DAYS_ENV", "ENV", "FLUSH_AT_EXIT", "MAX_RUNS_ENV", "flush", "reset"]

ENV = "WOFLO_HISTORY"
DAYS_ENV = "WOFLO_HISTORY_DAYS"
MAX_RUNS_ENV = "WOFLO_HISTORY_MAX_RUNS"
FLUSH_AT_EXIT = 5.0
"""Seconds the exit waits, at most, for the queue to be written."""
BATCH_WINDOW = 0.02
"""Seconds the writer gathers events after the first one of a batch; it goes on gathering
while more keep coming (the runs go first), until a pause this long, :data:`MAX_DELAY`
seconds or :data:`MAX_EVENTS` events."""
MAX_DELAY = 1.0
"""Seconds an event waits, at most, before its batch is written (while the program keeps
calling tasks: the runs are not slowed by writes meanwhile)."""
MAX_EVENTS = 100_000
"""Events gathered, at most, before their batch is written (bounds the memory they take)."""
HOLD = 1.0
"""Seconds the writer keeps a run's creation (an attempt's start) back, waiting for its end:
most runs are then written once, as one row, instead of inserted and then updated."""
PRUNE_EVERY = 10_000
"""Runs written between two prunings."""

_COMPLETED = RunState.COMPLETED
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
        # one queue per kind of event, each row as its statement takes it (see store.write)
        self.queues: tuple[collections.deque[tuple[Any, ...]], ...] = tuple(
            collections.deque() for _ in (CREATED, STARTED, FINISHED, ENDED)
        )
        self.wake = threading.Event()
        self.idle = threading.Event()
        self.idle.set()
        self.awake = False  # ``wake`` is set (a plain flag: cheaper to read on the call path)
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.enabled: bool | None = None  # read at the first run (a worker never records)
        self.warned = False
        self.program: tuple[Any, ...] | None = None
        self.written = 0
        self.retry: list[list[tuple[Any, ...]]] = []
        self.failures = 0
        self.draining = False  # flush() waits: write what is held too
        self.held_created: dict[str, tuple[float, tuple[Any, ...]]] = {}
        self.held_started: dict[tuple[str, int], tuple[float, tuple[Any, ...]]] = {}

    def rouse(self) -> None:
        """After an event was queued with the writer gathering none: wake it (started at the
        program's first event; when recording is off, every later event is dropped at once)."""
        if self.thread is None and not self._first():
            _bind(None)
            for queue in self.queues:
                queue.clear()
            self.awake = True  # (never asked again)
            return
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
        if self.thread is None or self.idle.is_set():  # (a put clears it: nothing pending)
            return True
        self.draining = True
        self.awake = True
        self.wake.set()
        return self.idle.wait(timeout)

    def _write_forever(self) -> None:
        from woflo import history

        connection = None
        program = self.program
        assert program is not None  # (set before the thread starts)
        while True:
            self.wake.wait(HOLD if self.held() else None)
            self._gathering()
            self.wake.clear()  # then the flag: a run that sees it down wakes the next batch
            self.awake = False
            draining, self.draining = self.draining, False  # (a flush asked up to now)
            batch = self._gather(draining)
            try:
                if connection is None:
                    connection = history.connect()
                    connection.execute(
                        "INSERT OR IGNORE INTO programs VALUES (?, ?, ?, ?, ?, ?)", program
                    )
                if any(batch):
                    store.write(connection, program[0], batch)
                ended = len(batch[ENDED])
                self.written += ended
                if self.written >= PRUNE_EVERY or (ended and self.written == ended):
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
                if connection is not None and not store.still_usable(connection):
                    connection.close()
                    connection = None
            else:
                self.failures = 0
            if not self.retry and not any(self.queues) and not self.held():
                self.idle.set()

    def _gathering(self) -> None:
        """Let a batch gather: while events keep coming, for up to :data:`MAX_DELAY` seconds,
        so that a busy program's runs do not share their process with writes (sleeps on a
        clock: the writer waits for no one's signal here)."""
        queues = self.queues
        until = time.monotonic() + MAX_DELAY
        seen = -1
        while not self.draining:
            time.sleep(BATCH_WINDOW)
            count = sum(map(len, queues))
            if count == seen or count >= MAX_EVENTS or time.monotonic() >= until:
                return
            seen = count

    def held(self) -> bool:
        """Whether events wait in the writer for their run's (attempt's) end."""
        return bool(self.held_created or self.held_started)

    def _gather(self, draining: bool) -> list[list[tuple[Any, ...]]]:
        """The next batch: what the queues hold, less the creations and starts that wait
        for their end (up to :data:`HOLD` seconds; none when draining). A run created and
        ended within that time is written once, as one row, and an attempt likewise."""
        batch = self.retry or [[] for _ in range(5)]  # the 4 kinds, and LINKS
        self.retry = []
        created, started, finished, ended = self.queues
        now = time.monotonic()
        held_created, held_started = self.held_created, self.held_started
        for _ in range(len(created)):  # (what is there now: producers go on meanwhile)
            row = created.popleft()
            held_created[row[0]] = (now, row)
            if len(row) > 4:  # (which runs fed it: written now, held creation or not)
                batch[LINKS].append((row[0], row[4]))
        for _ in range(len(started)):
            row = started.popleft()
            held_started[row[0], row[1]] = (now, row)
        for _ in range(len(finished)):
            row = finished.popleft()
            start = held_started.pop((row[0], row[1]), None)
            if start is not None:
                batch[STARTED].append(start[1])
            batch[FINISHED].append(row)
        for _ in range(len(ended)):
            row = ended.popleft()
            held_created.pop(row[0], None)
            batch[ENDED].append(row)
        due = float("inf") if draining else now - HOLD
        holds: tuple[tuple[dict[Any, tuple[float, tuple[Any, ...]]], int], ...] = (
            (held_created, CREATED),
            (held_started, STARTED),
        )
        for held, kind in holds:
            while held:  # (oldest first: a dict keeps the order of insertion)
                key = next(iter(held))
                since, row = held[key]
                if since > due:
                    break
                del held[key]
                batch[kind].append(row)
        return batch

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


def _ids(runs: tuple[BaseTaskRun[Any], ...]) -> tuple[str, ...]:
    return tuple(run.run_id for run in runs)


def _discard(row: tuple[Any, ...]) -> None:
    """What the hooks put to when recording is off."""


_Put = Callable[[tuple[Any, ...]], None]
_put_created: _Put = _discard
_put_started: _Put = _discard
_put_finished: _Put = _discard
_put_ended: _Put = _discard


def _bind(recorder: _Recorder | None) -> None:
    """Point the hooks at ``recorder``'s queues (``None``: at nothing, recording is off)."""
    global _put_created, _put_started, _put_finished, _put_ended
    if recorder is None:
        _put_created = _put_started = _put_finished = _put_ended = _discard
    else:
        _put_created, _put_started, _put_finished, _put_ended = (
            queue.append for queue in recorder.queues
        )


_recorder = _Recorder()
_bind(_recorder)


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
    _bind(_recorder)


def _forget_in_child() -> None:  # a fork of the caller is another program: its own writer
    global _recorder
    _recorder = _Recorder()
    _bind(_recorder)


os.register_at_fork(after_in_child=_forget_in_child)


# The hooks only queue tuples of plain values (a run kept in a queue would keep its result,
# and be one more object for the garbage collector to look at, until written).


@hookimpl
def woflo_run_created(run: BaseTaskRun[Any]) -> None:
    upstream = run.upstream
    if upstream:
        _put_created((run.run_id, run.task.name, run.name, time.time(), _ids(upstream)))
    else:
        _put_created((run.run_id, run.task.name, run.name, time.time()))
    if not _recorder.awake:
        _recorder.rouse()


@hookimpl
def woflo_attempt_started(run: BaseTaskRun[Any], attempt: int) -> None:
    _put_started((run.run_id, attempt, time.time(), run.attempt_pid))
    if not _recorder.awake:
        _recorder.rouse()


@hookimpl
def woflo_attempt_finished(run: BaseTaskRun[Any], attempt: int, outcome: Outcome) -> None:
    _put_finished((run.run_id, attempt, outcome.duration, outcome.error))
    if not _recorder.awake:
        _recorder.rouse()


@hookimpl
def woflo_run_finished(run: BaseTaskRun[Any]) -> None:
    state = run.state
    error = None if state is _COMPLETED else run.exception()
    shown = state if not run.cached else "cached"  # (completed with a cached value)
    _put_ended(
        (run.run_id, run.task.name, run.name, shown, run.attempts, time.time(), run.duration, error)
    )
    if not _recorder.awake:
        _recorder.rouse()
