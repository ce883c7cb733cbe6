"""Holding back a plain ``fork()`` elsewhere in the program while the pool starts its zygote.

Imported with the plugin itself (:mod:`woflo_plugins.multiprocess`), in the thread that loads
the plugins: the fork hooks are in place before the decoration of a task starts the pool in
the background. They were registered in that background thread, and a fork of the program's
main thread could then be under way already: ``os.fork()`` runs the "before" hooks (none
yet), then waits for the interpreter's import lock, giving the GIL up, which the starting
threads used to start the zygote; the fork then copied ``subprocess``'s pipe, and the start
waited for ever (the test script of 60 forks after a decoration: 2 runs in 40 under load).
"""

from __future__ import annotations

import os
import threading

__all__ = ["ForkGuard", "fork_guard"]


class ForkGuard:
    """Holds back ``os.fork()`` in the program's other threads while a zygote is started.

    ``subprocess`` learns that its child has executed by reading a pipe until its end: a plain
    ``fork()`` in another thread meanwhile (``multiprocessing``'s ``fork`` start method, a
    library forking its workers right after a task was decorated) copies the pipe's write end
    into a child that never executes, and the zygote's start, so every run, waits forever. So
    does the zygote's end of the control socket. A fork waits here for the start (a few
    milliseconds) instead; forks that execute (``subprocess`` itself) are not held."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._held = threading.local()
        os.register_at_fork(
            before=self._before, after_in_parent=self._after, after_in_child=self._in_child
        )

    def _before(self) -> None:
        self._held.it = self.lock.acquire(timeout=30)  # (never a fork refused: at worst late)

    def _after(self) -> None:
        if getattr(self._held, "it", False):
            self._held.it = False
            self.lock.release()

    def _in_child(self) -> None:
        self.lock = threading.Lock()  # (the child's copy is held by the fork; nothing starts)
        self._held = threading.local()


fork_guard = ForkGuard()
"""The one guard of the process (registered with ``os.register_at_fork`` on import)."""
