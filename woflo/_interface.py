"""The methods a runner implements: the documented half of :class:`woflo.BaseTaskRun`'s
interface that a subclass overrides (the half it calls is in :mod:`woflo._run`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from woflo._types import TaskCall


class RunnerMethods:
    """What a runner implements; every one but :meth:`start_attempt` is optional."""

    __slots__ = ()

    @classmethod
    def check_available(cls) -> None:
        """Raise :class:`~woflo.errors.WofloError` if this runner cannot work here (optional).

        Called when a task using the runner is decorated, and by ``woflo plugins``; say what is
        missing and how to get it (for example an extra to install).
        """

    @classmethod
    def warm_up(cls) -> None:
        """Start, in the background, what the first call will need (optional).

        Called when a task using the runner is decorated in a program's main module
        (``__main__``: a script, ``python -c``, a notebook), never in woflo's own worker
        processes. It must return at once, and what it starts must not keep the program alive
        (the multiprocess runner starts its pool here, as ``multiprocessing.Pool()`` does).
        """

    def prepare(self) -> None:
        """Check and prepare the call in the caller, before the run starts (optional).

        Runs in the calling thread, once per run, before any hook fires. It may read the call's
        arguments (``self.args``, ``self.kwargs``) and the task (``self.task``: its function,
        ``options`` and ``name``), and keep what it computes on ``self`` (a pickled form of
        the arguments, say). An exception raised here fails the call itself: the caller gets
        it and no run exists (use :class:`~woflo.errors.ArgumentNotPicklable` for arguments
        that cannot be sent).
        """

    def start_attempt(self, call: TaskCall) -> None:
        """Begin executing ``call`` (required).

        Called once per attempt, from the calling thread for the first attempt and from a
        timer thread for retries. Return quickly (a non-blocking runner hands the call over);
        a ``blocking`` runner executes it before returning. Call :meth:`report_started` when
        the attempt really begins executing and :meth:`report_finished` when it ends, from any
        thread. An exception raised here is that attempt's failure (retried like any other).

        ``call`` carries the function (``call.fn``), ``call.args``, ``call.kwargs``,
        ``call.context`` (what plugins send along; pass every one on unchanged:
        :func:`woflo.remote.pack_attempt` does) and ``call.task_name``, ``call.run_id``,
        ``call.attempt``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement start_attempt()")

    def kill_attempt(self, call: TaskCall) -> None:
        """Stop ``call`` if it is executing or waiting to (optional).

        Called on :meth:`stop` and when an attempt's deadline passes, from whichever thread
        asked, never under a lock of the core's. Make the work stop (kill its process, cancel
        its future), then report it once it is really over, as usual: ``report_finished(call,
        Outcome(error=TaskStopped(...)))`` from any thread, including from inside this method.
        The core decides what that report means: after a deadline the attempt ends
        ``TaskTimeout`` (and may be retried, only now that the old one is over); after
        ``stop()`` the run is already final and the report is ignored. A call this runner has
        not started yet may be passed: drop it. The default cannot kill anything: the attempt
        runs to its end and its result is discarded.
        """
