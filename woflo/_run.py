"""``BaseTaskRun``: a task run's state machine and the attempt loop, shared by every runner.

Responsibilities are split three ways::

    core (this module)          concern plugins (hooks)         runner (a subclass)
    ------------------          -----------------------         -------------------
    states, attempts, waiting   whether / when to retry         where an attempt executes
    the attempt loop        --> woflo_retry_delay               _start_attempt(call)
    lifecycle notifications --> woflo_run_created, ...          _kill_attempt(call)
    stop(), interpreter exit                                    calls back _attempt_started /
                                                                _attempt_finished

The loop is event driven: a runner reports the end of an attempt from any thread, the core asks
the plugins whether to retry and schedules the next attempt (a timer for non-blocking runners, a
sleep in the caller for blocking ones). No thread is spent per run.
"""

from __future__ import annotations

import atexit
import itertools
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from woflo._scheduler import TimerHandle, scheduler
from woflo._types import Outcome, RunState, TaskCall
from woflo.errors import TaskCrashed, TaskStopped, TaskTimeout, WaitTimeout, WofloError

if TYPE_CHECKING:
    from woflo._task import Task

R = TypeVar("R")

_FINAL_STATE_FOR_ERROR: tuple[tuple[type[BaseException], RunState], ...] = (
    (TaskStopped, RunState.STOPPED),
    (TaskTimeout, RunState.TIMED_OUT),
    (TaskCrashed, RunState.CRASHED),
)


def _final_state(outcome: Outcome) -> RunState:
    if outcome.error is None:
        return RunState.COMPLETED
    for kind, state in _FINAL_STATE_FOR_ERROR:
        if isinstance(outcome.error, kind):
            return state
    return RunState.FAILED


class BaseTaskRun(Generic[R]):
    """One run of a task: created by calling the task, ended in exactly one final state.

    **Using a run.** ``get_result()``, ``wait()``, ``stop()``, ``is_running()``, ``exception()``
    and the ``state``, ``attempts``, ``errors``, ``run_id``, ``task`` attributes work the same on
    every runner.

    **Writing a runner.** Subclass, set ``name`` (the registered name), and implement:

    * ``_start_attempt(call)``: begin executing ``call`` (a :class:`woflo.TaskCall`). In this
      process, ``self._execute(call)`` runs it through the ``woflo_execute_attempt`` hook and
      returns its :class:`woflo.Outcome`; elsewhere, load the plugins there and do the same.
      When it really begins, call ``self._attempt_started(call)``; when it ends, call
      ``self._attempt_finished(call, outcome)``, from any thread.
    * ``_kill_attempt(call)`` (optional): stop ``call`` if it is executing, and afterwards report
      it through ``_attempt_finished`` as usual. The default does nothing (work that cannot be
      killed runs to its end; its result is discarded).
    * ``_prepare()`` (optional): runs in the caller before the run starts; raise to fail the
      call itself (e.g. an argument that cannot be sent to a worker).
    * ``_check_available()`` (optional classmethod): raise if the runner cannot work here (a
      missing package); checked when a task is decorated.

    Set ``blocking = True`` for a runner that executes in the calling thread: the core then
    performs retry sleeps in the caller and the call returns a finished run.
    """

    name: ClassVar[str] = ""
    """The name a task selects this runner by, ``@task(runner="name")``."""
    blocking: ClassVar[bool] = False
    """Whether calling the task returns only when the run is final."""

    def __init__(self, task: Task[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.task = task
        self.args = args
        self.kwargs = kwargs
        self.run_id: str = _new_run_id()
        self.hook_errors: list[BaseException] = []
        if not self.blocking:  # before the runner prepares anything (a pool, its threads)
            _live_runs.check_open(task.name)
        self._hooks = task._plugins.hooks
        self._state = RunState.PENDING
        self._attempts = 0
        self._errors: list[BaseException] = []
        self._outcome: Outcome | None = None
        self._call: TaskCall | None = None
        self._call_started = False
        self._timer: TimerHandle | None = None
        self._deadline: TimerHandle | None = None
        self._timed_out: TaskTimeout | None = None
        self._limited = False
        self._retry_delay: float | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._created = time.monotonic()
        self._ended: float | None = None

    # ---- the public interface --------------------------------------------------------------

    @property
    def state(self) -> RunState:
        """The run's current :class:`~woflo.RunState`."""
        return self._state

    @property
    def attempts(self) -> int:
        """How many attempts have started so far."""
        return self._attempts

    @property
    def errors(self) -> tuple[BaseException, ...]:
        """The error of every failed attempt so far, oldest first (the last is the final one)."""
        return tuple(self._errors)

    @property
    def duration(self) -> float:
        """Seconds from the call to the final state (or to now, while the run goes on)."""
        end = self._ended if self._ended is not None else time.monotonic()
        return end - self._created

    def is_running(self) -> bool:
        """``True`` from the call until the run is final (and its ``run_finished`` hooks ran)."""
        return not self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run is final, or ``timeout`` seconds pass.

        :return: ``True`` if the run is final, ``False`` if the timeout expired first.
        """
        return self._done.wait(timeout)

    def get_result(self, timeout: float | None = None) -> R:
        """Wait for the run and return the task's value, or raise its error.

        The task's own exception is re-raised as it is (with the worker's traceback as
        ``__cause__`` when it ran elsewhere); a crash, timeout or stop raises
        :class:`~woflo.errors.TaskCrashed`, :class:`~woflo.errors.TaskTimeout` or
        :class:`~woflo.errors.TaskStopped`.

        :raises woflo.errors.WaitTimeout: if ``timeout`` expires first; the run goes on.
        """
        outcome = self._wait_outcome(timeout)
        if outcome.error is not None:
            raise outcome.error
        return outcome.value  # type: ignore[no-any-return]

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Wait for the run and return its error, or ``None`` if it completed.

        :raises woflo.errors.WaitTimeout: if ``timeout`` expires first; the run goes on.
        """
        return self._wait_outcome(timeout).error

    def stop(self) -> bool:
        """Stop the run: kill the attempt executing, cancel a pending retry.

        Idempotent; the run is final (``stopped``) when this returns.

        :return: ``True`` if this call stopped the run, ``False`` if it had already ended.
        """
        with self._lock:
            if self._state.is_final:
                return False
            call, started, timer = self._call, self._call_started, self._timer
            if self._deadline is not None:
                self._deadline.cancel()
            self._call = None
            self._state = RunState.STOPPED  # claimed: no other transition can win from here
        if timer is not None:
            timer.cancel()
        error = TaskStopped(f"run {self.run_id} of task {self.task.name!r} was stopped")
        if call is not None:
            try:
                self._kill_attempt(call)
            except Exception as exc:
                self._report_hook_error(f"{type(self).__name__}._kill_attempt", exc)
            if started:
                self._hooks.attempt_finished(self, call.attempt, Outcome(error=error))
        self._end(RunState.STOPPED, Outcome(error=error), claimed=True)
        return True

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} task={self.task.name!r} run_id={self.run_id} "
            f"state={self._state.value} attempts={self._attempts}>"
        )

    # ---- what a runner implements ----------------------------------------------------------

    @classmethod
    def _check_available(cls) -> None:
        """Raise :class:`~woflo.errors.WofloError` if this runner cannot work here (optional).

        Called when a task using the runner is decorated, and by ``woflo plugins``; say what is
        missing and how to get it (for example an extra to install).
        """

    def _prepare(self) -> None:
        """Check and prepare the call in the caller, before the run starts (optional)."""

    def _start_attempt(self, call: TaskCall) -> None:
        """Begin executing ``call``; report through ``_attempt_started``/``_attempt_finished``."""
        raise NotImplementedError(f"{type(self).__name__} must implement _start_attempt()")

    def _kill_attempt(self, call: TaskCall) -> None:
        """Stop ``call`` if it is executing (optional; the default cannot kill anything)."""

    # ---- what a runner calls ---------------------------------------------------------------

    def _execute(self, call: TaskCall) -> Outcome:
        """Execute ``call`` in this thread through the ``woflo_execute_attempt`` wrappers."""
        return self._hooks.execute_attempt(call)

    def _attempt_started(self, call: TaskCall) -> None:
        """Report that ``call`` began executing. Call before it can possibly finish."""
        with self._lock:
            if self._call is not call or self._call_started:
                return
            self._call_started = True
            self._attempts = call.attempt
            self._state = RunState.RUNNING
            limited = self._limited
        if limited:  # ask again now that it runs: time spent pending counts against a budget
            limit = self._hooks.attempt_deadline(self, call.attempt)
            if limit is not None:
                deadline = scheduler.call_later(limit, lambda: self._deadline_passed(call, limit))
                with self._lock:
                    if self._call is call:
                        self._deadline = deadline
                    else:
                        deadline.cancel()
        self._hooks.attempt_started(self, call.attempt)

    def _attempt_finished(
        self, call: TaskCall, outcome: Outcome, *, may_retry: bool = True
    ) -> None:
        """Report how ``call`` ended, from any thread. Reports for a superseded call are ignored.

        :param may_retry: ``False`` ends the run whatever the retry policy says (for example a
            ``KeyboardInterrupt`` raised in the caller's own thread).
        """
        self._attempt_started(call)  # a runner that never reported the start: it did start
        with self._lock:
            if self._call is not call:
                return
            self._call = None
            deadline, self._deadline = self._deadline, None
            timed_out, self._timed_out = self._timed_out, None
            if timed_out is not None:  # killed for its deadline: whatever it reported, it timed out
                outcome = Outcome(error=timed_out, duration=outcome.duration)
            if outcome.error is not None:
                self._errors.append(outcome.error)
        if deadline is not None:
            deadline.cancel()
        self._hooks.attempt_finished(self, call.attempt, outcome)
        if outcome.error is None or not may_retry:
            self._end(_final_state(outcome), outcome)
            return
        delay = self._hooks.retry_delay(self, call.attempt, outcome)
        if delay is None or delay is False:
            self._end(_final_state(outcome), outcome)
            return
        with self._lock:
            if self._state.is_final:
                return
            self._state = RunState.AWAITING_RETRY
        self._hooks.retry_scheduled(self, call.attempt, outcome, delay)
        if self.blocking:
            self._retry_delay = delay
        else:
            with self._lock:
                if not self._state.is_final:
                    self._timer = scheduler.call_later(delay, self._begin_attempt)

    # ---- the core's own machinery ----------------------------------------------------------

    def _launch(self) -> None:
        """Start the run (called once by the task, after ``_prepare``)."""
        if not self.blocking:
            _live_runs.admit(self)
        self._hooks.run_created(self)
        if not self.blocking:
            self._begin_attempt()
            return
        self._begin_attempt()
        while (delay := self._retry_delay) is not None:
            self._retry_delay = None
            if self._done.wait(min(delay, threading.TIMEOUT_MAX)):  # stop() ends the sleep
                return
            self._begin_attempt()

    def _begin_attempt(self) -> None:
        limit = self._hooks.attempt_deadline(self, self._attempts + 1)
        if limit is not None and limit <= 0:
            error = TaskTimeout(
                f"run {self.run_id} of task {self.task.name!r} spent its time budget before "
                f"attempt {self._attempts + 1} could start"
            )
            with self._lock:
                self._errors.append(error)
            self._end(RunState.TIMED_OUT, Outcome(error=error))
            return
        with self._lock:
            if self._state.is_final:
                return
            self._timer = None
            self._limited = limit is not None
            self._state = RunState.PENDING
            call = TaskCall(
                self.task.name,
                self.run_id,
                self._attempts + 1,
                self.task.fn,
                self.args,
                self.kwargs,
            )
            self._call, self._call_started = call, False
        try:
            self._start_attempt(call)
        except Exception as exc:  # a runner that cannot start the attempt ends it with the error
            self._attempt_finished(call, Outcome(error=exc))

    def _deadline_passed(self, call: TaskCall, limit: float) -> None:
        with self._lock:
            if self._call is not call:
                return
            self._timed_out = TaskTimeout(
                f"attempt {call.attempt} of task {self.task.name!r} (run {self.run_id}) ran "
                f"past its {limit:g} s limit"
            )
        try:
            self._kill_attempt(call)
        except Exception as exc:
            self._report_hook_error(f"{type(self).__name__}._kill_attempt", exc)

    def _wait_outcome(self, timeout: float | None) -> Outcome:
        if self._outcome is None and not self._done.wait(timeout):
            raise WaitTimeout(
                f"run {self.run_id} of task {self.task.name!r} is still {self._state.value} "
                f"after {timeout} s; it goes on (call get_result() again, or stop() it)"
            )
        assert self._outcome is not None
        return self._outcome

    def _end(self, state: RunState, outcome: Outcome, *, claimed: bool = False) -> None:
        with self._lock:
            if self._outcome is not None or (self._state.is_final and not claimed):
                return
            self._state = state
            self._outcome = outcome
            self._ended = time.monotonic()
        self._hooks.run_finished(self)
        self._done.set()
        if not self.blocking:
            _live_runs.release(self)

    def _report_hook_error(self, where: str, error: BaseException) -> None:
        self.hook_errors.append(error)
        import logging

        logging.getLogger("woflo.plugins").error(
            "%s raised during run %s of task %r; the run goes on",
            where,
            self.run_id,
            self.task.name,
            exc_info=error,
        )


_run_ids = itertools.count(1)
_run_id_prefix = os.urandom(5).hex()


def _new_run_id() -> str:
    """A run id unique across processes, without a system call per run."""
    return f"{_run_id_prefix}{next(_run_ids):06x}"


def _reseed_run_ids() -> None:
    global _run_id_prefix, _run_ids
    _run_id_prefix, _run_ids = os.urandom(5).hex(), itertools.count(1)


os.register_at_fork(after_in_child=_reseed_run_ids)


class _LiveRuns:
    """Non-blocking runs not yet final, so the interpreter can wait for them at exit."""

    def __init__(self) -> None:
        self._runs: set[BaseTaskRun[Any]] = set()
        self._lock = threading.Lock()
        self._exiting = False
        self._registered = False

    def check_open(self, task_name: str) -> None:
        """Raise :class:`WofloError` if a run can no longer start: the interpreter is exiting.

        That is once the wait at exit began, and also in the main thread after the program
        ended (an atexit handler or a finalizer): the wait at exit may have run already, or
        not be registered yet (registering it then is too late), so such a run would be lost.
        """
        if self._exiting or _after_main_thread():
            raise WofloError(
                f"cannot start a run of task {task_name!r}: the interpreter is exiting "
                "(call tasks before exit, not from atexit handlers or finalizers)"
            )

    def admit(self, run: BaseTaskRun[Any]) -> None:
        with self._lock:
            self.check_open(run.task.name)
            if not self._registered:
                atexit.register(self._at_exit)
                self._registered = True
            self._runs.add(run)

    def release(self, run: BaseTaskRun[Any]) -> None:
        with self._lock:
            self._runs.discard(run)

    def snapshot(self) -> list[BaseTaskRun[Any]]:
        with self._lock:
            return list(self._runs)

    def stop_all(self) -> int:
        """Stop every run still going; return how many were stopped."""
        return sum(run.stop() for run in self.snapshot())

    def _at_exit(self) -> None:
        with self._lock:
            self._exiting = True
        if isinstance(getattr(sys, "last_value", None), KeyboardInterrupt):
            self.stop_all()  # the program died of Ctrl-C: do not wait for its runs
            _die_of_sigint()
        try:
            while runs := self.snapshot():
                for run in runs:
                    run.wait()
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


_live_runs = _LiveRuns()
