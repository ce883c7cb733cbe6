"""The woflo error hierarchy.

Everything woflo raises on its own account derives from :class:`WofloError`. A task's own
exception is never wrapped: :meth:`~woflo.BaseTaskRun.get_result` re-raises it as it is, with
the worker's traceback attached as ``__cause__`` where it ran in another process.
"""

from __future__ import annotations

__all__ = [
    "ArgumentNotPicklable",
    "PluginError",
    "RemoteTaskError",
    "RemoteTraceback",
    "RunInterrupted",
    "TaskCrashed",
    "TaskStopped",
    "TaskTimeout",
    "WaitTimeout",
    "WofloError",
]


class WofloError(Exception):
    """Base class of every error woflo raises itself."""


class PluginError(WofloError):
    """A plugin could not be loaded, validated or registered.

    The message names the entry point, its distribution and how to disable the plugin.
    """


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


class WaitTimeout(WofloError, TimeoutError):
    """``get_result(timeout=...)`` or ``exception(timeout=...)`` ran out of time.

    The run goes on; call again to keep waiting.
    """


class ArgumentNotPicklable(WofloError, TypeError):
    """An argument cannot be sent to the process that would run the task."""


class RemoteTaskError(WofloError):
    """Stands in for a task exception that could not be re-created in the calling process.

    :ivar type_name: the qualified name of the original exception type.
    :ivar remote_traceback: the traceback text from the worker.
    """

    def __init__(self, type_name: str, message: str, remote_traceback: str = ""):
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name
        self.remote_traceback = remote_traceback

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.type_name, str(self), self.remote_traceback))


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
