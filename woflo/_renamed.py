"""The runner methods renamed in woflo 0.2: the old names keep working, with a
``DeprecationWarning``, until 0.3 (a mixin of :class:`woflo.BaseTaskRun`)."""

from __future__ import annotations

import warnings
from typing import Any

from woflo._types import Outcome, TaskCall

# Runner methods renamed in 0.2; the old names work, with a DeprecationWarning, until 0.3.
_IMPLEMENTED_RENAMED = {
    "_start_attempt": "start_attempt",
    "_kill_attempt": "kill_attempt",
    "_prepare": "prepare",
    "_check_available": "check_available",
}


def _deprecated(old: str, new: str) -> None:
    warnings.warn(
        f"BaseTaskRun.{old}() is deprecated and will be removed in woflo 0.3; call {new}() instead",
        DeprecationWarning,
        stacklevel=3,
    )


class Renamed:
    """Maps the old names a runner implements to the new ones, and keeps the old names it
    calls as thin aliases."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for old, new in _IMPLEMENTED_RENAMED.items():
            if old in cls.__dict__ and new not in cls.__dict__:
                warnings.warn(
                    f"{cls.__module__}.{cls.__qualname__} implements {old}(), the name before "
                    f"woflo 0.2; rename it {new}() (the old name stops working in woflo 0.3)",
                    DeprecationWarning,
                    stacklevel=2,
                )
                setattr(cls, new, cls.__dict__[old])

    def _attempt_started(self, call: TaskCall) -> None:
        _deprecated("_attempt_started", "report_started")
        self.report_started(call)  # type: ignore[attr-defined]

    def _attempt_finished(
        self, call: TaskCall, outcome: Outcome, *, may_retry: bool = True
    ) -> None:
        _deprecated("_attempt_finished", "report_finished")
        self.report_finished(call, outcome, may_retry=may_retry)  # type: ignore[attr-defined]

    def _execute(self, call: TaskCall) -> Outcome:
        _deprecated("_execute", "execute")
        return self.execute(call)  # type: ignore[attr-defined,no-any-return]
