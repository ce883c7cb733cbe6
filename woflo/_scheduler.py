"""One daemon thread that runs callbacks after a delay (retry sleeps, deadlines).

Non-blocking runners share it, so a run waiting to retry costs a heap entry, not a thread.
Where no thread can be started (CPython 3.12.0/3.12.1 during interpreter exit), the timers
stay in the heap and the main thread serves them while it waits for runs at exit
(:meth:`Scheduler.serve_until`).
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
from collections.abc import Callable

from woflo._threads import background_thread


class TimerHandle:
    """A scheduled callback; :meth:`cancel` keeps it from running."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], object]):
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Keep the callback from running, if it has not started yet."""
        self.cancelled = True


class Scheduler:
    """A heap of timers served by one lazily started daemon thread."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        """Run ``callback`` in the scheduler thread after ``delay`` seconds (``inf``: never)."""
        if not delay < threading.TIMEOUT_MAX:  # inf and nan too: no wait that long can end
            delay = threading.TIMEOUT_MAX
        handle = TimerHandle(time.monotonic() + max(0.0, delay), callback)
        with self._cond:
            heapq.heappush(self._heap, (handle.when, next(self._counter), handle))
            if self._thread is None or not self._thread.is_alive():
                thread = background_thread(self._loop, "woflo-scheduler")
                try:
                    thread.start()
                except RuntimeError:  # interpreter exit: serve_until() serves the heap
                    self._thread = None
                else:
                    self._thread = thread
            self._cond.notify()
        return handle

    def wake(self) -> None:
        """Wake whoever waits in :meth:`serve_until` to look at its condition again."""
        with self._cond:
            self._cond.notify_all()

    def serve_until(self, done: Callable[[], bool]) -> None:
        """Serve timers in this thread until ``done()`` is true.

        ``done`` is checked at every timer and at every :meth:`wake`; whoever makes it true
        must call :meth:`wake` afterwards.
        """
        while True:
            handle = self._next_due(done)
            if handle is None:
                return
            self._run(handle)

    def _next_due(self, done: Callable[[], bool] | None) -> TimerHandle | None:
        """Wait for the next due timer and take it; ``None`` once ``done()`` is true."""
        with self._cond:
            while True:
                if done is not None and done():
                    return None
                if not self._heap:
                    self._cond.wait()
                    continue
                delay = self._heap[0][0] - time.monotonic()
                if delay <= 0:
                    return heapq.heappop(self._heap)[2]
                self._cond.wait(min(delay, threading.TIMEOUT_MAX))

    def _loop(self) -> None:
        while True:
            handle = self._next_due(None)
            if handle is not None:
                self._run(handle)

    def forget_all(self) -> None:
        """Drop every timer and the thread (in a forked child: they are its parent's)."""
        self._heap = []
        self._cond = threading.Condition(threading.Lock())
        self._thread = None

    @staticmethod
    def _run(handle: TimerHandle) -> None:
        if handle.cancelled:
            return
        try:
            handle.callback()
        except BaseException:  # a callback must not kill the thread serving every timer
            import traceback

            traceback.print_exc()


scheduler = Scheduler()
os.register_at_fork(after_in_child=scheduler.forget_all)
