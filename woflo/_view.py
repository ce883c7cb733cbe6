"""What a run says of itself: the read-only attributes of :class:`woflo.BaseTaskRun` (the
state machine that keeps them is :mod:`woflo._run`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from woflo._run import BaseTaskRun
    from woflo._types import Outcome, RunState


class RunView:
    """The attributes every run has, on every runner; :mod:`woflo._run` sets what they read."""

    __slots__ = ()

    _state: RunState
    _attempts: int
    _upstream: tuple[BaseTaskRun[Any], ...]
    _cached: bool
    _outcome: Outcome | None
    _errors: list[BaseException]
    _created: float
    _ended: float | None
    _pid: int | None

    @property
    def state(self) -> RunState:
        """The run's current :class:`~woflo.RunState`."""
        return self._state

    @property
    def attempts(self) -> int:
        """How many attempts have started so far."""
        return self._attempts

    @property
    def upstream(self) -> tuple[BaseTaskRun[Any], ...]:
        """The runs among this run's arguments that it waited for (each once), in order."""
        return self._upstream

    @property
    def cached(self) -> bool:
        """``True`` when the run completed with a cached value, executing no attempt."""
        return self._cached

    @property
    def outcome(self) -> Outcome | None:
        """How the run ended (value or error, last attempt's duration); ``None`` until then."""
        return self._outcome

    @property
    def errors(self) -> tuple[BaseException, ...]:
        """The error of every failed attempt so far, oldest first (the last is the final one)."""
        return tuple(self._errors)

    @property
    def duration(self) -> float:
        """Seconds from the call to the final state (or to now, while the run goes on)."""
        end = self._ended if self._ended is not None else time.monotonic()
        return end - self._created

    @property
    def attempt_pid(self) -> int | None:
        """The pid of the process executing the latest attempt, when the runner said."""
        return self._pid
