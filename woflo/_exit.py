"""Waiting for runs at interpreter exit, and Ctrl-C then.

A program that ends with runs still going waits for them, as it waits for non-blocking
threads. The wait is registered with ``threading``'s own exit hooks, which run before
``concurrent.futures`` shuts its executors down and before any ``atexit`` handler, so a runner
built on an executor can still start a retry that falls due during the wait. While waiting, the
main thread also serves the core's timers (:mod:`woflo._scheduler`), so retries fall due even
where the interpreter cannot start a thread any more (CPython 3.12.0 and 3.12.1 at exit).

Ctrl-C during the wait, or a program that died of Ctrl-C, stops every run and ends the process
as killed by SIGINT, with no retry started.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

from woflo._scheduler import scheduler
from woflo.errors import InterpreterExiting

if TYPE_CHECKING:
    from woflo._run import BaseTaskRun


class LiveRuns:
    """Non-blocking runs not yet final, so the interpreter can wait for them at exit."""

    def __init__(self) -> None:
        self._runs: set[BaseTaskRun[Any]] = set()
        self._lock = threading.Lock()
        self._exiting = False
        self._waiting = False
        self._hook: Any = None

    def check_open(self, task_name: str) -> None:
        """Raise :class:`~woflo.errors.InterpreterExiting` if a run can no longer start.

        That is once the wait at exit began, and also in the main thread after the program
        ended (an atexit handler or a finalizer): the wait at exit may have run already, or
        not be registered yet (registering it then is too late), so such a run would be lost.
        """
        if self._exiting or _after_main_thread():
            raise InterpreterExiting(
                f"cannot start a run of task {task_name!r}: the interpreter is exiting "
                "(call tasks before exit, not from atexit handlers or finalizers)"
            )

    def admit(self, run: BaseTaskRun[Any]) -> None:
        """Count ``run`` among the runs to wait for at exit (made by this thread just now,
        after :meth:`check_open`: the main thread cannot have ended meanwhile; the wait at
        exit may have begun)."""
        with self._lock:
            if self._exiting:
                self.check_open(run.task.name)
            self._register()
            self._runs.add(run)

    def release(self, run: BaseTaskRun[Any]) -> None:
        """``run`` is final: no longer wait for it."""
        with self._lock:
            self._runs.discard(run)
            last = not self._runs
        if last and self._waiting:
            scheduler.wake()  # the main thread may be waiting in serve_until()

    def snapshot(self) -> list[BaseTaskRun[Any]]:
        """The runs not yet final."""
        with self._lock:
            return list(self._runs)

    def stop_all(self) -> int:
        """Stop every run still going; return how many were stopped."""
        return sum(run.stop() for run in self.snapshot())

    def forget_all(self) -> None:
        """Forget every run (in a forked child: its parent's runs are not its own)."""
        self._runs = set()
        self._lock = threading.Lock()
        self._exiting = False
        self._waiting = False
        self._hook = None

    # ---- the wait ----------------------------------------------------------------------------

    def _register(self) -> None:
        """Register the wait with threading's exit hooks, as the last one (they run in reverse
        order), so it runs before an executor that registered after the first run shuts down.
        Called under the lock at every admission: a check of one list item when nothing
        changed."""
        hooks: list[Any] | None = getattr(threading, "_threading_atexits", None)
        register = getattr(threading, "_register_atexit", None)
        if self._hook is not None:
            if hooks is None or (hooks and hooks[-1] is self._hook):
                return
            try:
                hooks.remove(self._hook)
                hooks.append(self._hook)
            except ValueError:  # threading shut down already; the atexit fallback remains
                pass
            return
        if hooks is not None and register is not None:
            try:
                register(self._wait_at_exit, final=False)
                self._hook = hooks[-1]
            except RuntimeError:  # threading is shutting down: only atexit remains
                self._hook = False
        else:  # another Python: atexit alone
            self._hook = False
        atexit.register(self._wait_at_exit)  # a fallback; a no-op once the wait ran

    def _wait_at_exit(self, *, final: bool = True) -> None:
        """Wait for every run, serving timers meanwhile.

        First from threading's exit hook (``final=False``: other threads may still call tasks,
        and those runs are waited for too), then from ``atexit`` (``final=True``), after the
        non-daemon threads ended: runs they started are waited for, and no run starts after.
        """
        with self._lock:
            if self._exiting:
                return
            self._exiting = final
            self._waiting = True
        if isinstance(getattr(sys, "last_value", None), KeyboardInterrupt):
            self.stop_all()  # the program died of Ctrl-C: do not wait for its runs
            _die_of_sigint()
        try:
            scheduler.serve_until(lambda: not self._runs)
        except KeyboardInterrupt:
            stopped = self.stop_all()
            sys.stderr.write(f"woflo: interrupted at exit; stopped {stopped} run(s)\n")
            _die_of_sigint()


def _after_main_thread() -> bool:
    """Whether this is the main thread after the program ended: ``threading`` has shut down
    and the interpreter runs its atexit handlers and finalizers (other threads may still run
    then, non-daemon ones legitimately: only the main thread is asked about)."""
    main = threading.main_thread()
    return threading.current_thread() is main and not main.is_alive()


def _die_of_sigint() -> None:
    """End the process as Python ends one interrupted by Ctrl-C: killed by SIGINT.

    Python would do so itself after an unhandled KeyboardInterrupt, but any ``eval`` during
    finalization (an import at exit, say) makes it forget and exit 1; and an interrupt during
    the wait at exit would otherwise exit 0. Either way the shell must see an interruption.
    """
    import signal

    if "logging" in sys.modules:
        sys.modules["logging"].shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)
    os._exit(130)  # where the signal does not end the process


live_runs = LiveRuns()
os.register_at_fork(after_in_child=live_runs.forget_all)
