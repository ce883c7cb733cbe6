"""Plain data woflo hands to hooks and runners: run states, outcomes, calls, options."""

from __future__ import annotations

import enum
import time
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

_CoroutineType = types.CoroutineType


class RunState(enum.Enum):
    """Where a run is in its life. A run ends in exactly one of the final states."""

    PENDING = "pending"
    """Created, or waiting for a worker to take the next attempt."""
    RUNNING = "running"
    """An attempt is executing."""
    AWAITING_RETRY = "awaiting_retry"
    """An attempt failed and the next one starts after the retry delay."""
    COMPLETED = "completed"
    """Final: the task returned a value."""
    FAILED = "failed"
    """Final: the task raised and no retry followed."""
    CRASHED = "crashed"
    """Final: the process executing the last attempt died."""
    TIMED_OUT = "timed_out"
    """Final: the last attempt ran past its deadline."""
    STOPPED = "stopped"
    """Final: :meth:`~woflo.BaseTaskRun.stop` was called."""
    UPSTREAM_FAILED = "upstream_failed"
    """Final: a run passed as an argument ended other than completed; no attempt was made."""

    _final: bool

    __hash__ = object.__hash__  # (members are singletons, equal only to themselves: enum's own
    # hash of the name is a Python call, made for every run by the plugins' dict lookups)

    @property
    def is_final(self) -> bool:
        """Whether the run has ended."""
        return self._final

    def __str__(self) -> str:
        return str(self.value)


_FINAL = (
    RunState.COMPLETED,
    RunState.FAILED,
    RunState.CRASHED,
    RunState.TIMED_OUT,
    RunState.STOPPED,
    RunState.UPSTREAM_FAILED,
)
for _member in RunState:  # (read on every transition: an attribute, not a hash in a set)
    _member._final = _member in _FINAL
del _member


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended: a value, or an error; and how long it took, in seconds."""

    value: Any = None
    error: BaseException | None = None
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the attempt returned a value."""
        return self.error is None

    @property
    def state(self) -> RunState:
        """The state a run ends in when this is its last outcome: how plugins name an
        attempt's ending (``completed``, ``failed``, ``crashed``, ``timed_out``, ``stopped``)."""
        error = self.error
        if error is None:
            return RunState.COMPLETED
        from woflo.errors import TaskCrashed, TaskStopped, TaskTimeout, UpstreamFailed

        for kind, state in (
            (UpstreamFailed, RunState.UPSTREAM_FAILED),
            (TaskStopped, RunState.STOPPED),
            (TaskTimeout, RunState.TIMED_OUT),
            (TaskCrashed, RunState.CRASHED),
        ):
            if isinstance(error, kind):
                return state
        return RunState.FAILED


@dataclass(frozen=True, slots=True)
class TaskCall:
    """One attempt to execute: the function, its arguments, and who it belongs to."""

    task_name: str
    run_id: str
    attempt: int
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    context: Mapping[str, Any] = field(default_factory=dict)
    """What plugins send along with the attempt to where it executes (``woflo_attempt_context``:
    small picklable values, by plugin), for their execution wrappers to read."""

    def invoke(self) -> Outcome:
        """Call the function once and capture what happened (woflo's innermost execution).

        A coroutine (an ``async def`` task) is run to completion in an event loop of its own."""
        start = time.perf_counter()
        try:
            value = self.fn(*self.args, **self.kwargs)
            if type(value) is _CoroutineType:
                from woflo._aio import run_coroutine

                value = run_coroutine(value)
        except BaseException as error:  # the task's own error, whatever it is, is its outcome
            return Outcome(error=error, duration=time.perf_counter() - start)
        return Outcome(value=value, duration=time.perf_counter() - start)


CORE_OPTIONS = ("runner", "name", "plugins")
"""The options woflo's core owns; every other option is declared by a plugin."""


@dataclass(frozen=True, slots=True)
class TaskOption:
    """A keyword argument of ``@task(...)``, contributed by a plugin.

    :param name: the keyword.
    :param default: the value a task gets when the keyword is not given.
    :param validate: called at decoration time with the given value; returns the value to
        keep (possibly normalised) or raises ``TypeError``/``ValueError`` saying what is wrong
        and what would be right. The validators of :mod:`woflo.options` do both.
    :param help: one line for ``woflo plugins`` and error messages.
    :param runners: the names of the runners that honour the option; ``None`` (the default)
        for every runner. Giving it to a task on another runner fails at decoration, naming
        the runner (``max_concurrency`` is ``("multiprocess",)``).
    :param caller_only: the option is read in the calling process only (a retry policy, a
        time limit): it stays out of the task when the task is sent to a worker by value, so
        its value need not be picklable (a ``retry_if`` closure over a run, a lock).
    """

    name: str
    default: Any = None
    validate: Callable[[Any], Any] | None = None
    help: str = ""
    runners: tuple[str, ...] | None = None
    caller_only: bool = False


# The generated __init__ of a frozen dataclass sets each field through a global lookup of
# object.__setattr__ and then a call: about 1.6 us for a TaskCall and 1.1 us for an Outcome,
# made for every attempt. These set them through a closure's object.__setattr__ (the same
# objects, frozen as before, the same fields and defaults: kwargs and context say None for a
# new dict). They must list the dataclass's fields, as a test checks.


def _outcome_init() -> Callable[..., None]:
    setter = object.__setattr__

    def __init__(
        self: Outcome, value: Any = None, error: BaseException | None = None, duration: float = 0.0
    ) -> None:
        setter(self, "value", value)
        setter(self, "error", error)
        setter(self, "duration", duration)

    return __init__


def _task_call_init() -> Callable[..., None]:
    setter = object.__setattr__

    def __init__(
        self: TaskCall,
        task_name: str,
        run_id: str,
        attempt: int,
        fn: Callable[..., Any],
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        setter(self, "task_name", task_name)
        setter(self, "run_id", run_id)
        setter(self, "attempt", attempt)
        setter(self, "fn", fn)
        setter(self, "args", args)
        setter(self, "kwargs", {} if kwargs is None else kwargs)
        setter(self, "context", {} if context is None else context)

    return __init__


for _cls, _init in ((Outcome, _outcome_init()), (TaskCall, _task_call_init())):
    _init.__qualname__ = f"{_cls.__name__}.__init__"
    _cls.__init__ = _init  # type: ignore[method-assign]
del _cls, _init
