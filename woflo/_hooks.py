"""The hook facade: one typed method per hook, so the core never calls ``pm.hook.x(**kw)``.

Owned here: how each family of hooks is called and what a failing implementation does.
Lifecycle notifications call each implementation on its own and report a failure on the run
(:func:`report_hook_error`); decisions go through pluggy's ``firstresult`` call and count a
failure as "no opinion"; execution wraps the task's call and turns any error into an outcome.
Building the plugin manager is :mod:`woflo.plugins`' business; using the answers is the run's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from woflo._types import Outcome, TaskCall
from woflo.errors import PluginError

if TYPE_CHECKING:
    import pluggy

    from woflo._run import BaseTaskRun


def report_hook_error(run: BaseTaskRun[Any], where: str, error: BaseException) -> None:
    """Keep ``error`` in ``run.hook_errors`` and log it on ``woflo.plugins``; the run goes on."""
    run.hook_errors.append(error)
    import logging  # only when a hook failed: ``import woflo`` does not import logging

    logging.getLogger("woflo.plugins").error(
        "%s raised during run %s of task %r; the run goes on",
        where,
        run.run_id,
        run.task.name,
        exc_info=error,
    )


class Hooks:
    """Typed calls of the hooks of one plugin manager."""

    __slots__ = ("_relay",)

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self._relay = pm.hook

    # ---- lifecycle notifications -------------------------------------------------------------

    def run_created(self, run: BaseTaskRun[Any]) -> None:
        """Fire ``woflo_run_created``."""
        self._notify(run, self._relay.woflo_run_created, {"run": run})

    def attempt_started(self, run: BaseTaskRun[Any], attempt: int) -> None:
        """Fire ``woflo_attempt_started``."""
        self._notify(run, self._relay.woflo_attempt_started, {"run": run, "attempt": attempt})

    def attempt_finished(self, run: BaseTaskRun[Any], attempt: int, outcome: Outcome) -> None:
        """Fire ``woflo_attempt_finished``."""
        args = {"run": run, "attempt": attempt, "outcome": outcome}
        self._notify(run, self._relay.woflo_attempt_finished, args)

    def retry_scheduled(
        self, run: BaseTaskRun[Any], attempt: int, outcome: Outcome, delay: float
    ) -> None:
        """Fire ``woflo_retry_scheduled``."""
        args = {"run": run, "attempt": attempt, "outcome": outcome, "delay": delay}
        self._notify(run, self._relay.woflo_retry_scheduled, args)

    def run_finished(self, run: BaseTaskRun[Any]) -> None:
        """Fire ``woflo_run_finished``."""
        self._notify(run, self._relay.woflo_run_finished, {"run": run})

    # ---- decisions ---------------------------------------------------------------------------

    def retry_delay(self, run: BaseTaskRun[Any], attempt: int, outcome: Outcome) -> float | None:
        """Seconds until the next attempt, or ``None`` for no retry."""
        try:
            delay = self._relay.woflo_retry_delay(run=run, attempt=attempt, outcome=outcome)
        except Exception as exc:
            report_hook_error(run, "woflo_retry_delay", exc)
            return None
        if delay is None or delay is False:
            return None
        if (
            isinstance(delay, bool)
            or not isinstance(delay, int | float)
            or not delay >= 0  # nan too
        ):
            report_hook_error(
                run,
                "woflo_retry_delay",
                PluginError(f"woflo_retry_delay returned {delay!r}; expected seconds >= 0"),
            )
            return None
        return float(delay)

    def attempt_deadline(self, run: BaseTaskRun[Any], attempt: int) -> float | None:
        """The smallest time limit, in seconds, any plugin sets on the attempt; ``None``: none."""
        try:
            limits = self._relay.woflo_attempt_deadline(run=run, attempt=attempt)
        except Exception as exc:
            report_hook_error(run, "woflo_attempt_deadline", exc)
            return None
        numbers = [
            float(limit)
            for limit in limits
            if isinstance(limit, int | float) and not isinstance(limit, bool) and limit == limit
        ]
        return min(numbers) if numbers else None

    # ---- execution ---------------------------------------------------------------------------

    def execute_attempt(self, call: TaskCall) -> Outcome:
        """Execute ``call`` through the execution wrappers; always returns an outcome.

        An exception from a wrapper (not from the task) is the attempt's failure too.
        """
        try:
            return self._relay.woflo_execute_attempt(call=call)  # type: ignore[no-any-return]
        except BaseException as error:
            return Outcome(error=error)

    def forwarded_log(self, message: dict[str, Any]) -> bool | None:
        """Hand a log message a plugin sent from another process to the plugin that renders
        it; ``None`` if none does. An exception is reported on stderr, never raised."""
        try:
            return self._relay.woflo_forwarded_log(message=message)  # type: ignore[no-any-return]
        except Exception:
            import traceback

            traceback.print_exc()
            return True

    @staticmethod
    def _notify(run: BaseTaskRun[Any], caller: Any, kwargs: dict[str, Any]) -> None:
        for impl in reversed(caller.get_hookimpls()):
            names = impl.argnames
            try:
                if names == _RUN_ONLY:  # (most implementations: no argument list to build)
                    impl.function(run)
                else:
                    impl.function(*[kwargs[name] for name in names])
            except Exception as exc:
                report_hook_error(run, f"{caller.name} of plugin {impl.plugin_name!r}", exc)


_RUN_ONLY = ("run",)
