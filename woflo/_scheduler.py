"""One daemon thread that runs callbacks after a delay (retry sleeps, deadlines).

Non-blocking runners share it, so a run waiting to retry costs a heap entry, not a thread.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable


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
        """Run ``callback`` in the scheduler thread after ``delay`` seconds."""
        delay = min(max(0.0, delay), threading.TIMEOUT_MAX)  # "never", for a wait
        handle = TimerHandle(time.monotonic() + delay, callback)
        with self._cond:
            heapq.heappush(self._heap, (handle.when, next(self._counter), handle))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="woflo-scheduler", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        return handle

    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if not self._heap:
                        self._cond.wait()
                        continue
                    delay = self._heap[0][0] - time.monotonic()
                    if delay <= 0:
                        handle = heapq.heappop(self._heap)[2]
                        break
                    self._cond.wait(min(delay, threading.TIMEOUT_MAX))
            if not handle.cancelled:
                try:
                    handle.callback()
                except BaseException:  # a callback must not kill the shared thread
                    import traceback

                    traceback.print_exc()


scheduler = Scheduler()
