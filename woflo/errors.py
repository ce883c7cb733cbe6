"""The woflo error hierarchy: everything woflo raises on its own account.

::

    WofloError
    ├── PluginError            a plugin could not be loaded, validated or registered
    ├── OptionError            a bad option or setting (decoration, configure(), environment)
    │   ├── OptionTypeError        also a TypeError: the value has the wrong type
    │   └── OptionValueError       also a ValueError: right type, value out of range
    ├── UnknownRunner          also a LookupError (and a ValueError): no runner by that name
    ├── ArgumentNotPicklable   also a TypeError: an argument cannot reach the worker
    ├── InterpreterExiting     also a RuntimeError: a run cannot start any more
    ├── CalledDuringImport     also a RuntimeError: a worker's import called a task
    ├── PoolBroken             the worker pool cannot go on (its zygote died, a thread died)
    ├── WaitTimeout            also a TimeoutError: get_result(timeout=...) ran out of time
    ├── RemoteTaskError        stands in for a task exception that cannot be re-created here
    └── RunInterrupted         a run ended without the task returning or raising
        ├── TaskCrashed            the process running the attempt died
        ├── TaskTimeout            also a TimeoutError: the attempt ran past its deadline
        ├── TaskStopped            stop() was called
        └── UpstreamFailed         a run passed as an argument did not complete

A task's own exception is never wrapped: :meth:`~woflo.BaseTaskRun.get_result` re-raises it as
it is, with the worker's traceback attached as ``__cause__`` where it ran in another process.
Messages follow one style: what is wrong, then what would be right ("retries takes a whole
number >= 0, not -1").
"""

from __future__ import annotations

__all__ = [
    "ArgumentNotPicklable",
    "CalledDuringImport",
    "InterpreterExiting",
    "OptionError",
    "OptionTypeError",
    "OptionValueError",
    "PluginError",
    "PoolBroken",
    "RemoteTaskError",
    "RemoteTraceback",
    "RunInterrupted",
    "TaskCrashed",
    "TaskStopped",
    "TaskTimeout",
    "UnknownRunner",
    "UpstreamFailed",
    "WaitTimeout",
    "WofloError",
]


class WofloError(Exception):
    """Base class of every error woflo raises itself."""


class PluginError(WofloError):
    """A plugin could not be loaded, validated or registered.

    The message names the entry point, its distribution and how to disable the plugin.
    """


class OptionError(WofloError):
    """A task option, a ``configure()`` setting or an environment variable has a bad value.

    Raised at the earliest moment: at decoration for task options, at the call of
    ``configure()``, on first use for environment variables. The message names the option, the
    value and what would be right.

    :ivar expected: what would be right, in words, when a :mod:`woflo.options` validator said.
    """

    expected: str | None = None


class OptionTypeError(OptionError, TypeError):
    """An option's value has the wrong type (``retries="2"``)."""


class OptionValueError(OptionError, ValueError):
    """An option's value has the right type but is out of range (``retries=-1``)."""


class UnknownRunner(WofloError, LookupError, ValueError):
    """No runner is registered under that name, or no plugin names a default runner."""


class ArgumentNotPicklable(WofloError, TypeError):
    """An argument (or the task itself) cannot be sent to the process that would run it."""


class InterpreterExiting(WofloError, RuntimeError):
    """A run cannot start: the interpreter is exiting (a task called from an atexit handler)."""


class CalledDuringImport(WofloError, RuntimeError):
    """A task was called while a worker imported a module to run another task: the module calls
    tasks at its top level (a script without an ``if __name__ == "__main__":`` guard, imported
    by another). Refused, as ``multiprocessing`` refuses it, so that no worker recurses."""


class PoolBroken(WofloError):
    """A worker pool cannot go on: its zygote process died or could not start, or its watcher
    thread failed. Runs it held fail with this error; the next call starts a fresh pool."""


class RunInterrupted(WofloError):
    """Base class of the ways a run can end without the task returning or raising."""


class TaskCrashed(RunInterrupted):
    """The process running the attempt died (a signal or an exit code) before it reported.

    :ivar pid: the process id of the worker, when known.
    :ivar exitcode: its exit code, or ``-signum`` when a signal killed it (as in ``subprocess``).
    """

    def __init__(self, message: str, *, pid: int | None = None, exitcode: int | None = None):
        super().__init__(message)
        self.pid = pid
        self.exitcode = exitcode

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_crashed, (str(self), self.pid, self.exitcode))


def _rebuild_crashed(message: str, pid: int | None, exitcode: int | None) -> TaskCrashed:
    return TaskCrashed(message, pid=pid, exitcode=exitcode)


class TaskTimeout(RunInterrupted, TimeoutError):
    """An attempt ran past its deadline and was stopped."""


class TaskStopped(RunInterrupted):
    """The run was stopped by :meth:`~woflo.BaseTaskRun.stop` (or at interpreter exit)."""


class UpstreamFailed(RunInterrupted):
    """A run passed as an argument ended other than ``completed``, so this run made no attempt.

    :ivar run: the upstream run that did not complete (the first, in argument order); its own
        error is this error's ``__cause__``.
    """

    def __init__(self, message: str, *, run: object = None):
        super().__init__(message)
        self.run = run

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self),))  # (the run stays behind: it is the caller's)


class WaitTimeout(WofloError, TimeoutError):
    """``get_result(timeout=...)`` or ``exception(timeout=...)`` ran out of time.

    The run goes on; call again to keep waiting.
    """


class RemoteTaskError(WofloError):
    """Stands in for a task exception that could not be re-created in the calling process.

    :ivar type_name: the qualified name of the original exception type.
    :ivar message: the original exception's message (``str(error)`` in the worker).
    :ivar remote_traceback: the traceback text from the worker.
    """

    def __init__(self, type_name: str, message: str, remote_traceback: str = ""):
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.type_name, self.message, self.remote_traceback))


class RemoteTraceback(Exception):
    """Carries the traceback text of an exception raised in another process.

    Set as ``__cause__`` of the re-raised exception, so ``traceback.print_exception`` shows the
    worker's side, then the caller's.
    """

    def __init__(self, tb: str):
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb
