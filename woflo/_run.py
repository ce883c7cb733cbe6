"""``BaseTaskRun``: a task run's state machine and the attempt loop, shared by every runner.

Responsibilities are split three ways::

    core (this module)          concern plugins (hooks)         runner (a subclass)
    ------------------          -----------------------         -------------------
    states, attempts, waiting   whether / when to retry         where an attempt executes
    the attempt loop        --> woflo_retry_delay               start_attempt(call)
    lifecycle notifications --> woflo_run_created, ...          kill_attempt(call)
    stop(), the core's rules                                    calls back report_started /
                                                                report_finished

The loop is event driven: a runner reports the end of an attempt from any thread, the core asks
the plugins whether to retry and schedules the next attempt (a timer for non-blocking runners, a
sleep in the caller for blocking ones). No thread is spent per run. Waiting for runs at
interpreter exit (and Ctrl-C then) is :mod:`woflo._exit`'s; calling hooks is
:mod:`woflo._hooks`'; timers are :mod:`woflo._scheduler`'s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from woflo._exit import live_runs
from woflo._hooks import report_hook_error
from woflo._interface import RunnerMethods
from woflo._renamed import Renamed
from woflo._rules import never_retried, new_run_id, wait_seconds
from woflo._scheduler import TimerHandle, scheduler
from woflo._shortcut import take
from woflo._types import Outcome, RunState, TaskCall
from woflo._upstream import RunLike, find_upstream, wait_for_upstream
from woflo._view import RunView
from woflo.errors import TaskStopped, TaskTimeout, WaitTimeout

if TYPE_CHECKING:
    from woflo._task import Task

R = TypeVar("R")


class BaseTaskRun(RunView, RunnerMethods, Renamed, RunLike, Generic[R]):
    """One run of a task: created by calling the task, ended in exactly one final state.

    **Using a run.** ``get_result()``, ``wait()``, ``stop()``, ``is_running()``, ``exception()``
    and the ``state``, ``attempts``, ``errors``, ``duration``, ``outcome``, ``created_at``,
    ``attempt_started_at``, ``run_id``, ``task``, ``args``, ``kwargs`` attributes work the same
    on every runner.

    **Writing a runner.** Subclass, set :attr:`name`, and implement :meth:`start_attempt`
    (and, if you can, :meth:`kill_attempt`; optionally :meth:`prepare` and
    :meth:`check_available`). Report each attempt through :meth:`report_started` and
    :meth:`report_finished`; :meth:`execute` runs an attempt in the current thread through the
    plugins' execution wrappers, and :mod:`woflo.remote` does the same in another process.
    The core does everything else: states, waiting, retries and their sleeps, timeouts, stop,
    lifecycle hooks, the wait at interpreter exit, Ctrl-C. Every method not named here is the
    core's own.
    """

    name: ClassVar[str] = ""
    """The name a task selects this runner by, ``@task(runner="name")``."""
    blocking: ClassVar[bool] = False
    """``True`` for a runner that executes in the calling thread: calling the task returns a
    finished run, and the core performs retry sleeps in the caller."""

    def __init__(self, task: Task[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.task = task
        self.args = args
        self.kwargs = kwargs
        self.run_id: str = new_run_id()
        self.hook_errors: list[BaseException] = []  # (raised by hooks in this run, each logged)
        if not self.blocking:  # before the runner prepares anything (a pool, its threads)
            live_runs.check_open(task.name)
        self._hooks = task.hooks
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
        self._final = False  # (its run_finished hooks ran: what is_running() says)
        self._waiter: threading.Event | None = None  # (made for the first wait: most never do)
        self.created_at: float = time.time()
        """When the task was called (seconds since the epoch, as ``time.time()``)."""
        self.attempt_started_at: float | None = None  # (the latest attempt's, as time.time())
        self._created = time.monotonic()
        self._ended: float | None = None
        self._callbacks: list[Callable[[BaseTaskRun[R]], object]] | None = []  # None: fired
        self._pid: int | None = None
        self._cached = False
        self._ender = 0  # (the thread that ended it: its run_finished hooks run there)
        self._upstream: tuple[BaseTaskRun[Any], ...] = ()

    # ---- using a run -------------------------------------------------------------------------

    def is_running(self) -> bool:
        """``True`` from the call until the run is final (and its ``run_finished`` hooks ran)."""
        return not self._final

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run is final, or ``timeout`` seconds pass.

        :return: ``True`` if the run is final, ``False`` if the timeout expired first.
        """
        seconds = wait_seconds(timeout)
        return self._final or self._event().wait(seconds)

    def get_result(self, timeout: float | None = None) -> R:
        """Wait for the run and return the task's value, or raise its error.

        The task's own exception is re-raised as it is (with the worker's traceback as
        ``__cause__`` when it ran elsewhere); a crash, timeout or stop raises
        :class:`~woflo.errors.TaskCrashed`, :class:`~woflo.errors.TaskTimeout` or
        :class:`~woflo.errors.TaskStopped`.

        :raises woflo.errors.WaitTimeout: if ``timeout`` expires first; the run goes on.
        """
        outcome = self._outcome if self._final else self._wait_outcome(timeout)
        assert outcome is not None  # (final: known)
        if outcome.error is not None:
            raise outcome.error
        return outcome.value  # type: ignore[no-any-return]

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Wait for the run and return its error, or ``None`` if it completed.

        :raises woflo.errors.WaitTimeout: if ``timeout`` expires first; the run goes on.
        """
        return self._wait_outcome(timeout).error

    def add_done_callback(self, fn: Callable[[BaseTaskRun[R]], object]) -> None:
        """Call ``fn(run)`` once the run is final (at once, here, if it already is), on the
        thread that ended it, after the ``woflo_run_finished`` hooks and the waiters' wake-up.
        An exception from ``fn`` is reported like a hook's (logged, kept in
        :attr:`hook_errors`) and never affects the run."""
        with self._lock:
            callbacks = self._callbacks
            if callbacks is not None:
                callbacks.append(fn)
                return
        self._call_back(fn)

    def remove_done_callback(self, fn: Callable[[BaseTaskRun[R]], object]) -> bool:
        """Forget ``fn``, added with :meth:`add_done_callback`; whether it was still there."""
        with self._lock:
            if self._callbacks is None or fn not in self._callbacks:
                return False
            self._callbacks.remove(fn)
            return True

    def __await__(self) -> Generator[Any, None, R]:
        """``await run``: its value (or its error raised), without blocking the event loop."""
        from woflo._aio import result_of

        return result_of(self).__await__()

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
            self._kill(call)
            if started:
                self._hooks.attempt_finished(self, call.attempt, Outcome(error=error))
        self._end(RunState.STOPPED, Outcome(error=error), claimed=True)
        return True

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} task={self.task.name!r} run_id={self.run_id} "
            f"state={self._state.value} attempts={self._attempts}>"
        )

    # ---- what a runner calls -----------------------------------------------------------------

    def execute(self, call: TaskCall) -> Outcome:
        """Execute ``call`` in this thread through the ``woflo_execute_attempt`` wrappers.

        Never raises: the task's error (or a wrapper's) is in the outcome, with the duration.
        In another process, use :func:`woflo.remote.run_attempt` instead.
        """
        return self._hooks.execute_attempt(call)

    def report_started(self, call: TaskCall, *, pid: int | None = None) -> None:
        """Report that ``call`` began executing (in process ``pid``, if known: hooks read it
        as :attr:`attempt_pid`), from any thread, before the attempt can possibly finish. A
        report for a call that is not the run's current one is ignored, as is a second one."""
        if pid is not None:
            self._pid = pid
        self._mark_started(call)

    def report_finished(self, call: TaskCall, outcome: Outcome, *, may_retry: bool = True) -> None:
        """Report how ``call`` ended, from any thread, exactly once per attempt.

        A finish without a start report counts as started. A report for a call that is not
        the run's current one (the run was stopped, or the attempt was superseded) is ignored.

        :param outcome: the value or error and the duration (:meth:`execute` measures it).
        :param may_retry: ``False`` ends the run whatever the retry policy says (for example a
            ``KeyboardInterrupt`` raised in the caller's own thread).
        """
        if not self._call_started or self._call is not call:  # (else reported: no call)
            self._mark_started(call)
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
        if outcome.error is None or not may_retry or never_retried(outcome.error):
            self._end(outcome.state, outcome)
            return
        delay = self._hooks.retry_delay(self, call.attempt, outcome)
        if delay is None:
            self._end(outcome.state, outcome)
            return
        with self._lock:
            if self._state.is_final:
                return
            self._state = RunState.AWAITING_RETRY
        self._hooks.retry_scheduled(self, call.attempt, outcome, delay)
        if self.blocking:
            self._retry_delay = delay
            return
        try:
            with self._lock:
                if not self._state.is_final:
                    self._timer = scheduler.call_later(delay, self._begin_attempt)
        except Exception as exc:  # a run that cannot go on ends, with the reason
            if outcome.error is not None:
                outcome.error.add_note(
                    f"(woflo could not schedule the retry of attempt {call.attempt}: "
                    f"{type(exc).__name__}: {exc})"
                )
            self._end(outcome.state, outcome)

    # ---- the core's own machinery ------------------------------------------------------------

    def _mark_started(self, call: TaskCall) -> None:
        if self._call_started and self._call is call:  # (reported already: no lock to take)
            return
        with self._lock:
            if self._call is not call or self._call_started:
                return
            self._call_started = True
            self._attempts = call.attempt
            self.attempt_started_at = time.time()
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

    def _launch(self, upstream: list[BaseTaskRun[Any]], shortcut: Any) -> None:
        if upstream:  # (else the empty tuple set in __init__)
            self._upstream = tuple(dict.fromkeys(upstream))
        self._cached = isinstance(shortcut, Outcome)  # (known before run_created, if at all)
        if not self.blocking:
            live_runs.admit(self)
        self._hooks.run_created(self)
        if upstream:  # it waits for them, then starts (or ends upstream_failed)
            wait_for_upstream(self, upstream, self._end, self._look_up)
        elif shortcut is None:  # (the common case, without take()'s bound methods)
            self._run_attempts()
        else:
            take(self, shortcut, self._end, self._run_attempts)

    def _look_up(self) -> None:  # (its arguments are final now: a cache may know the value)
        try:
            shortcut = self._hooks.cached_outcome(self)
        except Exception as exc:
            self._end(RunState.FAILED, Outcome(error=exc))
            return
        take(self, shortcut, self._end, self._run_attempts)

    def _run_attempts(self) -> None:
        self._begin_attempt()
        if not self.blocking:
            return
        while (delay := self._retry_delay) is not None:
            self._retry_delay = None
            if self._event().wait(min(delay, threading.TIMEOUT_MAX)):  # stop() ends the sleep
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
        context = self._hooks.attempt_context(self, self._attempts + 1)
        with self._lock:
            if self._state.is_final:
                return
            self._timer = None
            self._limited = limit is not None
            self._state = RunState.PENDING
            attempt = self._attempts + 1
            fn, args, kwargs = self.task.fn, self.args, self.kwargs
            call = TaskCall(self.task.name, self.run_id, attempt, fn, args, kwargs, context)
            self._call, self._call_started = call, False
        try:
            self.start_attempt(call)
        except Exception as exc:  # a runner that cannot start the attempt: that attempt failed
            self.report_finished(call, Outcome(error=exc))

    def _deadline_passed(self, call: TaskCall, limit: float) -> None:
        with self._lock:
            if self._call is not call:
                return
            self._timed_out = TaskTimeout(
                f"attempt {call.attempt} of task {self.task.name!r} (run {self.run_id}) ran "
                f"past its {limit:g} s limit"
            )
        self._kill(call)

    def _kill(self, call: TaskCall) -> None:
        try:
            self.kill_attempt(call)
        except Exception as exc:
            report_hook_error(self, f"{type(self).__name__}.kill_attempt", exc)

    def _event(self) -> threading.Event:
        with self._lock:  # (set at once if the run is final already)
            if self._waiter is None:
                self._waiter = threading.Event()
                if self._final:
                    self._waiter.set()
            return self._waiter

    def _wait_outcome(self, timeout: float | None) -> Outcome:
        # Final once its run_finished hooks ran, as is_running() and wait() say; except on the
        # thread ending it (a hook asking for the value), and when only hooks are left at the
        # timeout: the outcome is known, so it is the answer.
        if (
            not self._final
            and (self._outcome is None or self._ender != threading.get_ident())
            and not self._event().wait(wait_seconds(timeout))
            and self._outcome is None
        ):
            raise WaitTimeout(
                f"run {self.run_id} of task {self.task.name!r} is still {self._state.value} "
                f"after {timeout} s; it goes on (call get_result() again, or stop() it)"
            )
        assert self._outcome is not None
        return self._outcome

    def _end(
        self, state: RunState, outcome: Outcome, *, claimed: bool = False, cached: bool = False
    ) -> None:
        with self._lock:
            if self._outcome is not None or (self._state.is_final and not claimed):
                return
            self._cached = cached
            self._state = state
            self._ender = threading.get_ident()
            self._outcome = outcome
            self._ended = time.monotonic()
        self._hooks.run_finished(self)
        with self._lock:
            self._final = True
            waiter, callbacks, self._callbacks = self._waiter, self._callbacks, None
        if waiter is not None:
            waiter.set()
        for fn in callbacks or ():
            self._call_back(fn)
        if not self.blocking:
            live_runs.release(self)

    def _call_back(self, fn: Callable[[BaseTaskRun[R]], object]) -> None:
        try:
            fn(self)
        except Exception as exc:
            report_hook_error(self, f"done callback {getattr(fn, '__qualname__', fn)!r}", exc)


def start_run(run: BaseTaskRun[Any]) -> BaseTaskRun[Any]:
    """Prepare and launch a new run (what calling a task does); return it. A run whose
    arguments hold runs is prepared once they completed, with their values in place."""
    upstream = find_upstream(run.args, run.kwargs)
    shortcut = None
    if not upstream:
        run.prepare()
        shortcut = run._hooks.cached_outcome(run)  # (an error here fails the call)
    run._launch(upstream, shortcut)
    return run
