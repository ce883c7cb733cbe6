"""The built-in history plugin: every run of the program, recorded in :mod:`woflo.history`.

Through the public lifecycle hooks only (in the calling process, for every runner): each run,
with every attempt (its start, duration, outcome, error and formatted traceback, the pid of
the process that executed it), plus the program (argv, pid, host, directory, start time), so
that the runs of one invocation group together.

A run's call path does as little as it can: its creation keeps the run in a dict of the runs
going on, its end takes it out and queues its fields (plain values, in one flat list), and a
failed attempt that is retried queues its own. One background writer thread drains that in
batches (one transaction each), so recording never slows or breaks a run: when the database
cannot be written (an unwritable or full disk, a corrupt file, a lock held too long), woflo
warns once on stderr and the runs go on. A run that ends within :data:`HOLD` seconds (nearly
all do) is written once, as one row, with its attempt as another; one going on longer is read
by the writer from the run itself and shown as it is (pending, running, awaiting a retry), and
again whenever that changes. At exit the queue is flushed, for at most :data:`FLUSH_AT_EXIT`
seconds. While the program keeps calling tasks, a batch gathers until a pause in its events
or for :data:`MAX_DELAY` seconds, so that writes do not compete with the runs for the process;
after a SIGKILL the batch being gathered is lost, and the runs created within :data:`HOLD`
seconds that had not ended. Old runs are pruned in the background: beyond
``WOFLO_HISTORY_DAYS`` days (default 30) or the newest ``WOFLO_HISTORY_MAX_RUNS`` (default
1,000,000).

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
"""Seconds a run goes on before the writer shows it as it is (pending, running, awaiting a
retry): most runs end sooner, and are then written once, as one row, instead of inserted and
then updated."""
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
    """The queues of events, the runs still going, and the writer thread that stores them
    (started on first use)."""

    def __init__(self) -> None:
        # the attempts that failed, a tuple each; the runs that ended, their fields one after
        # another (store.ENDED_FIELDS a run: no container per run for the garbage collector
        # to count, and to look at, until written); see store.event_rows
        self.failed: collections.deque[tuple[Any, ...]] = collections.deque()
        self.ended: list[Any] = []
        self.live: dict[str, BaseTaskRun[Any]] = {}  # the runs created, not ended yet
        self.shown: dict[str, tuple[RunState, int]] = {}  # what the database says of them
        self.wake = threading.Event()
        self.idle = threading.Event()
        self.hurry = threading.Event()  # (a flush asked: the batch gathering is written now)
        self.idle.set()
        self.awake = False  # ``wake`` is set (a plain flag: cheaper to read on the call path)
        self.lock = threading.Lock()
        self.asked = threading.Condition()
        self.flushes = self.flushed = 0  # flush() calls so far, and those answered
        self.thread: threading.Thread | None = None
        self.enabled: bool | None = None  # read at the first run (a worker never records)
        self.warned = False
        self.program: tuple[Any, ...] | None = None
        self.written = 0
        self.retry: dict[int, list[tuple[Any, ...]]] | None = None
        self.failures = 0

    def rouse(self) -> None:
        """After an event with the writer gathering none: wake it (started at the program's
        first event; when recording is off, every later event is dropped at once)."""
        if self.thread is None and not self._first():
            _bind(None)
            self.failed.clear()
            self.ended.clear()
            self.live.clear()
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

            # as of the first run; made the store's row (JSON, the host) by the writer: off
            # the first call's path
            self.program = (
                os.urandom(8).hex(),
                list(sys.argv),
                os.getpid(),
                None,
                os.getcwd(),
                time.time(),
            )
            thread = background_thread(self._write_forever, "woflo-history")
            self.thread = thread
            atexit.register(self.flush, FLUSH_AT_EXIT)
            thread.start()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event so far is written (or dropped), and the runs still going are
        shown as they are now: ``True`` if so."""
        if self.thread is None or (self.idle.is_set() and not self.live):
            return True
        with self.asked:
            self.flushes += 1
            ticket = self.flushes
            self.awake = True
            self.wake.set()
            self.hurry.set()
            return self.asked.wait_for(lambda: self.flushed >= ticket, timeout)

    def _write_forever(self) -> None:
        import json
        import socket

        from woflo import history
        from woflo_plugins.history import _store as store  # (sqlite3: here, not at loading)

        connection = None
        assert self.program is not None  # (set before the thread starts)
        key, argv, pid, _host, cwd, started = self.program
        program = (key, json.dumps(argv), pid, socket.gethostname(), cwd, started)
        while True:
            self.wake.wait(HOLD if self.live else None)
            self._gathering(store.ENDED_FIELDS)
            self.wake.clear()  # then the flag: a run that sees it down wakes the next batch
            self.awake = False
            with self.asked:
                ticket = self.flushes  # (the flushes asked up to now: this pass answers them)
            batch = self._gather(store, draining=ticket > self.flushed)
            try:
                if connection is None:
                    connection = history.connect()
                    connection.execute(
                        "INSERT OR IGNORE INTO programs VALUES (?, ?, ?, ?, ?, ?)", program
                    )
                if any(batch.values()):
                    store.write(connection, batch)
                ended = len(batch[store.RUN_ENDED])
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
                else:  # (dropped: the runs going on are shown again at the next pass)
                    self.failures = 0
                    self.shown.clear()
                if connection is not None and not store.still_usable(connection):
                    connection.close()
                    connection = None
            else:
                self.failures = 0
            del batch  # (not kept while the writer waits: its rows hold what the runs left)
            if self.retry is None:
                with self.asked:
                    self.flushed = ticket
                    self.asked.notify_all()
                if not self.failed and not self.ended:
                    self.idle.set()

    def _gathering(self, fields: int) -> None:
        """Let a batch gather: while events keep coming, for up to :data:`MAX_DELAY` seconds,
        so that a busy program's runs do not share their process with writes (on a clock: the
        runs' events never wake the writer here; a :meth:`flush` does, at exit say)."""
        failed, ended, live = self.failed, self.ended, self.live
        until = time.monotonic() + MAX_DELAY
        seen = -1
        self.hurry.clear()  # (then the count: a flush asked since is seen either way)
        while self.flushed >= self.flushes:
            if self.hurry.wait(BATCH_WINDOW):
                return
            ended_runs = len(ended) // fields
            if ended_runs + len(failed) >= MAX_EVENTS or time.monotonic() >= until:
                return
            count = len(live) + len(ended) + len(failed)  # (grows with every event)
            if count == seen:
                return
            seen = count

    def _gather(self, store: Any, draining: bool) -> dict[int, list[tuple[Any, ...]]]:
        """The next batch, as the store's rows: what the queues hold (the runs and failed
        attempts that ended), and the runs going on for :data:`HOLD` seconds or more as they
        are now (all of them when draining), each written again only when it changed. A run
        that ends within that time is written once, as one row, and its attempt likewise."""
        if self.retry is not None:
            batch, self.retry = self.retry, None
            return batch
        program_id = self.program[0]  # type: ignore[index]  # (set before the thread starts)
        # what is there now (the runs' threads go on putting meanwhile)
        failed = [self.failed.popleft() for _ in range(len(self.failed))]
        buffer = self.ended
        count = len(buffer) // store.ENDED_FIELDS * store.ENDED_FIELDS
        ended = buffer[:count]
        del buffer[:count]
        shown = self.shown
        for run_id in ended[:: store.ENDED_FIELDS]:
            shown.pop(run_id, None)
        due = float("inf") if draining else time.time() - HOLD
        going: list[tuple[BaseTaskRun[Any], RunState, int]] = []
        for run in list(self.live.values()):  # (oldest first: a dict keeps insertion order)
            if run.created_at > due:
                break
            state, attempts = run.state, run.attempts
            if not state.is_final and shown.get(run.run_id) != (state, attempts):
                shown[run.run_id] = (state, attempts)
                going.append((run, state, attempts))
        rows: dict[int, list[tuple[Any, ...]]] = store.event_rows(program_id, failed, ended, going)
        return rows

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


class _Nowhere(dict):  # type: ignore[type-arg]
    """What the hooks keep the runs going in when recording is off: nothing."""

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


_Put = Callable[[tuple[Any, ...]], None]
_put_failed: _Put = _discard
_put_ended: _Put = _discard
_live: dict[str, BaseTaskRun[Any]] = _Nowhere()


def _bind(recorder: _Recorder | None) -> None:
    """Point the hooks at ``recorder``'s queues (``None``: at nothing, recording is off)."""
    global _put_failed, _put_ended, _live
    if recorder is None:
        _put_failed = _put_ended = _discard
        _live = _Nowhere()
    else:
        _put_failed, _put_ended = recorder.failed.append, recorder.ended.extend
        _live = recorder.live


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


# The hooks queue tuples of plain values only (a run kept in a queue would keep its result, and
# be one more object for the garbage collector to look at, until written); a run still going is
# kept in the recorder's ``live`` until it ends (the writer reads it there if it goes on).


@hookimpl
def woflo_run_created(run: BaseTaskRun[Any]) -> None:
    _live[run.run_id] = run
    if not _recorder.awake:
        _recorder.rouse()


@hookimpl
def woflo_retry_scheduled(run: BaseTaskRun[Any], attempt: int, outcome: Outcome) -> None:
    # an attempt that failed and is retried (the last attempt is written with its run)
    _put_failed(
        (
            run.run_id,
            attempt,
            run.attempt_started_at,
            run.attempt_pid,
            outcome.duration,
            outcome.error,
        )
    )
    if not _recorder.awake:
        _recorder.rouse()


@hookimpl
def woflo_run_finished(run: BaseTaskRun[Any]) -> None:
    run_id = run.run_id
    _live.pop(run_id, None)
    state = run.state
    upstream = run.upstream
    outcome = run.outcome
    assert outcome is not None  # (known before the run_finished hooks fire)
    shown: Any = state if state is not _COMPLETED or not run.cached else "cached"
    _put_ended(
        (
            run_id,
            run.task.name,
            run.name,
            shown,
            run.attempts,
            run.created_at,
            run.duration,
            outcome.error,
            _ids(upstream) if upstream else (),
            run.attempt_started_at,
            run.attempt_pid,
            outcome.duration,
        )
    )
    if not _recorder.awake:
        _recorder.rouse()
