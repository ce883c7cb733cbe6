"""The watch, passed on: the pool's I/O on one thread at a time, the caller's code off its path.

The pool's watcher does two kinds of work: I/O (read every worker's socket, hand out jobs), in
*turns*, and delivery of what the turns found to the runs: ``report_started``,
``report_finished``, a worker's log record. Delivery runs the caller's code: lifecycle hooks, a
``retry_if`` predicate, logging handlers. That code may be slow, or wait for another run, whose
result only the watcher can read.

So the work is queued as *pieces*, each with the key of its run, and delivered in order after
each turn, on the same thread: no thread hop while every piece is quick. A *standby* thread
looks in every :data:`TAKE_OVER_AFTER` seconds while pieces are delivered; when it sees the
same piece still running, it takes over the watch (the I/O, and the pieces queued behind the
held one), and a fresh standby replaces it. The held thread finishes its piece, then any piece
of the same run that came meanwhile (a run's pieces never overtake each other), and then it
stands by itself, or ends when a standby is there already.

The first thread never ends before the watch does: a process it started may be tied to it
(Linux sends the parent-death signal, ``PR_SET_PDEATHSIG``, when the *thread* that forked the
child ends, not its process), so once relieved it is the standby, and an other one ends.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Any

from woflo.plugins import background_thread

__all__ = ["TAKE_OVER_AFTER", "Relay"]

TAKE_OVER_AFTER = 0.05
"""Seconds a piece may hold the watcher's thread before a standby takes over the watch."""

Piece = tuple[Any, Callable[..., Any], tuple[Any, ...]]


class Relay:
    """Runs ``turn`` (one round of I/O; ``False`` when the watch is over) on one thread at a
    time, and the pieces the turns :meth:`add`, in order per key, between turns."""

    def __init__(self, turn: Callable[[], bool], name: str) -> None:
        self._turn = turn
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._queue: collections.deque[Piece] = collections.deque()
        self._busy: dict[Any, collections.deque[Piece] | None] = {}  # key -> pieces that wait
        self._owner: threading.Thread | None = None  # the thread with the watch
        self._first: threading.Thread | None = None  # ends last (see above)
        self._standby: threading.Thread | None = None
        self._threads: set[threading.Thread] = set()
        self._delivering = False  # the owner runs a piece
        self._progress = 0  # pieces the owner started, so far
        self._asleep = False  # the standby waits for a delivery to start
        self._over = False  # the last turn is done
        self.finished = threading.Event()
        """Set once the watch is over and every piece was handed to a thread."""

    def start(self) -> None:
        """Start the watch, and its standby."""
        with self._cond:
            self._owner = self._first = self._thread()
            self._standby = self._thread()
        self._owner.start()
        self._standby.start()

    def add(self, key: Any, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)`` (called by the thread with the watch, during its turn)."""
        self._queue.append((key, fn, args))

    def join(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) for the watch to be over and its threads gone."""
        deadline = time.monotonic() + timeout
        if self.finished.wait(timeout):
            with self._cond:
                threads = list(self._threads)
            for thread in threads:
                if thread.ident is not None:
                    thread.join(max(0.0, deadline - time.monotonic()))

    def is_ours(self) -> bool:
        """Whether the current thread is one of the relay's (the watch, a standby, a held one)."""
        return threading.current_thread() in self._threads

    # ---- the threads ----------------------------------------------------------------------

    def _thread(self) -> threading.Thread:
        thread = background_thread(self._main, self._name)
        self._threads.add(thread)
        return thread

    def _main(self) -> None:
        me = threading.current_thread()
        try:
            while True:
                with self._cond:
                    mine = self._owner is me
                if mine:
                    if self._own(me):
                        return
                    with self._cond:  # held, and relieved: stand by, unless one does
                        if self._over or (self._standby is not None and me is not self._first):
                            return
                        self._standby = me  # (the first one in any case: the other ends)
                        self._cond.notify_all()
                if not self._stand_by(me):
                    return
        finally:
            with self._cond:
                self._threads.discard(me)

    def _own(self, me: threading.Thread) -> bool:
        """Turns and deliveries while ``me`` has the watch: ``True`` when the watch is over,
        ``False`` when another thread took it over."""
        while True:
            if not self._deliver(me):
                return False
            if self._over:
                self.finished.set()
                with self._cond:
                    self._cond.notify_all()  # the standby ends
                return True
            if not self._turn():
                self._over = True

    def _stand_by(self, me: threading.Thread) -> bool:
        """Wait while ``me`` is the standby; ``True`` once it has taken over the watch."""
        quiet = False  # nothing was delivered during the last look
        with self._cond:
            while True:
                if self._over or self._standby is not me:
                    return False
                if quiet and not self._delivering:  # sleep until a delivery starts
                    self._asleep = True
                    self._cond.wait()
                    self._asleep = False
                    quiet = False
                    continue
                seen = self._progress
                deadline = time.monotonic() + TAKE_OVER_AFTER
                while not self._over and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
                if self._standby is not me or self._progress != seen:
                    continue  # (relieved of standing by, or the owner moved on)
                if not self._delivering:
                    quiet = True
                    continue
                # Still in the piece it was in a look ago (a piece starts with a new count):
                # take over.
                self._owner = me
                self._standby = replacement = self._thread()
                break
        replacement.start()
        return True

    # ---- delivery ---------------------------------------------------------------------------

    def _deliver(self, me: threading.Thread) -> bool:
        """Run the queued pieces; ``False`` if the watch was taken over meanwhile."""
        queue, busy = self._queue, self._busy
        while True:
            with self._cond:
                if self._owner is not me:
                    return False
                while True:
                    if not queue:
                        self._delivering = False
                        return True
                    piece = queue.popleft()
                    key = piece[0]
                    if key not in busy:
                        break
                    waiting = busy[key]  # another thread runs a piece of this run: after it
                    if waiting is None:
                        busy[key] = waiting = collections.deque()
                    waiting.append(piece)
                busy[key] = None
                self._progress += 1
                self._delivering = True
                if self._asleep:
                    self._cond.notify_all()
            _run(piece)
            self._after(key)

    def _after(self, key: Any) -> None:
        """Run the pieces of ``key`` queued while its last one ran, then free the key."""
        while True:
            with self._cond:
                waiting = self._busy[key]
                if not waiting:
                    del self._busy[key]
                    return
                piece = waiting.popleft()
                if self._owner is threading.current_thread():
                    self._progress += 1
            _run(piece)


def _run(piece: Piece) -> None:
    _key, fn, args = piece
    try:
        fn(*args)
    except BaseException as exc:  # the pieces report their own errors; this is a last resort
        import logging

        logging.getLogger("woflo.multiprocess").error(
            "delivering to a run failed; other runs go on", exc_info=exc
        )
