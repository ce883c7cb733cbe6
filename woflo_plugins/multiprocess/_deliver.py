"""Deliveries: the user code the pool's results set off, run off the watcher thread.

Reporting an attempt's start and end calls the plugins' hooks, the retry policy (a
``retry_if`` predicate) and the caller's logging handlers: user code, which may be slow, block
(wait for another run), or raise. None of it runs on the watcher thread, which serves every
worker: the watcher hands each piece to :class:`Deliveries`, which runs the pieces of one key (a
run) in order, one at a time, on one delivery thread normally. When every delivery thread has
been busy with one piece for ``SLOW`` seconds while others wait (a predicate waiting for
another run's result, a slow handler), the watcher starts another (:meth:`Deliveries.check`),
so a blocked piece never holds up the rest; threads beyond the first retire when idle.
"""

from __future__ import annotations

import collections
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable, Hashable
from typing import Any

from woflo import remote

SLOW = 0.05
"""Seconds every delivery thread may be busy while pieces wait, before another one starts."""
IDLE_RETIRE = 5.0
"""Seconds an idle delivery thread beyond the first waits for work before it ends."""


class Deliveries:
    """Runs callables in order per key, on one thread, more when that one is held up."""

    def __init__(self, on_backlog: Callable[[], object], name: str = "woflo-deliveries") -> None:
        self._on_backlog = on_backlog  # the watcher: pieces wait behind busy threads
        self._name = name
        self._lock = threading.Lock()
        self._pending: dict[Hashable, collections.deque[Callable[[], object]]] = {}
        self._ready: queue.SimpleQueue[Hashable] = queue.SimpleQueue()
        self._threads = 0
        self._busy: dict[int, float] = {}  # thread ident -> when it took its current key
        self._closed = False
        self._running: list[threading.Thread] = []

    def submit(self, key: Hashable, piece: Callable[[], object]) -> None:
        """Run ``piece`` after every piece submitted before it with the same ``key``."""
        if self._closed:  # the pool is gone: whatever comes late runs here
            _run(piece)
            return
        with self._lock:
            waiting = self._pending.get(key)
            if waiting is not None:  # a thread is on this key, or will be: it runs this too
                waiting.append(piece)
                return
            self._pending[key] = collections.deque([piece])
            start = self._threads == 0
            backlog = not start and len(self._busy) == self._threads
            if start:
                self._threads += 1
        self._ready.put(key)
        if start and not self._start_thread():
            self._drain_here()
        elif backlog:
            self._on_backlog()

    def close(self, timeout: float | None = None) -> None:
        """Let the threads end once they ran what was submitted before; with ``timeout``,
        wait for that (not for the calling thread itself, if it is one of them)."""
        with self._lock:
            self._closed = True
            threads = self._threads
            running = list(self._running)
        for _ in range(threads):
            self._ready.put(_STOP)
        if timeout is not None:
            for thread in running:
                if thread is not threading.current_thread():
                    thread.join(timeout)

    def check(self, now: float) -> float | None:
        """Start another thread if every one is held up while pieces wait; return the seconds
        until this should be asked again (``None``: not unless :meth:`submit` says so)."""
        with self._lock:
            if self._ready.empty() or len(self._busy) < self._threads or not self._busy:
                return None
            since = min(self._busy.values())
            if now - since < SLOW:
                return since + SLOW - now
            self._threads += 1
        if not self._start_thread():
            self._drain_here()
        return SLOW

    def _start_thread(self) -> bool:
        thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no thread can start (interpreter exit on CPython 3.12.0/1)
            with self._lock:
                self._threads -= 1
            return False
        with self._lock:
            self._running = [t for t in self._running if t.is_alive()]
            self._running.append(thread)
        return True

    def _drain_here(self) -> None:
        """Run what is ready in this thread (when no delivery thread could be started)."""
        while True:
            try:
                key = self._ready.get_nowait()
            except queue.Empty:
                return
            self._run_key(key)

    def _serve(self) -> None:
        me = threading.get_ident()
        while True:
            try:
                key = self._ready.get(timeout=IDLE_RETIRE)
            except queue.Empty:
                with self._lock:
                    if self._threads > 1:
                        self._threads -= 1
                        return
                continue
            if key is _STOP:
                with self._lock:
                    self._threads -= 1
                return
            with self._lock:
                self._busy[me] = time.monotonic()
            try:
                self._run_key(key)
            finally:
                with self._lock:
                    del self._busy[me]

    def _run_key(self, key: Hashable) -> None:
        while True:
            with self._lock:
                waiting = self._pending[key]
                if not waiting:
                    del self._pending[key]
                    return
                piece = waiting.popleft()
            _run(piece)


def _run(piece: Callable[[], object]) -> None:
    try:
        piece()
    except BaseException:  # user code raised past every guard: say so, go on
        traceback.print_exc()


_STOP: Hashable = object()


def emit_log(record: dict[str, Any]) -> None:
    """Hand a worker's log record to the caller's logging; a handler that raises is the
    caller's problem, said on stderr, never the worker's (nothing is killed for it)."""
    try:
        remote.emit_record(record)
    except Exception:
        import traceback

        sys.stderr.write(
            f"woflo: a logging handler raised on a record of run {record.get('run_id')}:\n"
        )
        traceback.print_exc()
