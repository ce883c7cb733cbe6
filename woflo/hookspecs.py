"""Every hook a woflo plugin can implement.

A plugin is a module or object with functions named like the hooks below, marked with
:data:`woflo.hookimpl`; it is found through the ``woflo`` entry-point group (or passed to one task
with ``@task(plugins=[...])``). An implementation may take any subset of a hook's arguments, by
name.

Hooks come in four families, in this order of a run's life:

* **registration**: what a plugin contributes (runners, task options); asked once per plugin
  manager, in every process that loads plugins.
* **lifecycle**: notifications, fired in the *calling* process (the one that called the task), in
  this fixed order for every run::

      woflo_run_created
        woflo_attempt_started  -> woflo_attempt_finished  [-> woflo_retry_scheduled]   (per attempt)
      woflo_run_finished

  An attempt stopped before it started fires neither attempt hook. Each implementation is called
  on its own: one that raises is reported (logged on the ``woflo.plugins`` logger and kept in
  :attr:`woflo.BaseTaskRun.hook_errors`) and the others still run; the run's state is never
  affected. Lifecycle hooks cannot be wrappers.
* **decisions**: asked in the calling process. ``woflo_retry_delay`` is ``firstresult``: the first
  implementation that returns something other than ``None`` decides, in pluggy's call order
  (``tryfirst`` first, then the most recently registered); wrappers see the answer and may change
  it. ``woflo_attempt_deadline`` asks everyone and takes the smallest limit. A decision hook
  that raises is reported like a lifecycle hook and counts as "no retry" / "no limit".
  ``woflo_cached_outcome`` (``firstresult``) may complete a run before its first attempt; an
  exception from it fails the call.
* **execution**: fired where the attempt executes (a worker process for the multiprocess runner),
  around the call of the task's function. Plugins implement it as a wrapper
  (``@hookimpl(wrapper=True)``) to bind log context or open a tracing span; such plugins must be
  importable in the worker. Unlike lifecycle hooks, an exception raised by an execution wrapper
  is the attempt's failure (it may be retried), since it happened where the task ran.
  ``woflo_forwarded_log`` (``firstresult``) renders, in the caller, a log message a plugin's
  code sent from the worker with :func:`woflo.remote.forward_log`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

import pluggy

if TYPE_CHECKING:
    from woflo._run import BaseTaskRun
    from woflo._task import Task
    from woflo._types import Outcome, TaskCall, TaskOption

hookspec = pluggy.HookspecMarker("woflo")
"""Marks a hook specification of the ``woflo`` project (used only here)."""
hookimpl = pluggy.HookimplMarker("woflo")
"""Marks a plugin's hook implementation; importable as :data:`woflo.hookimpl`."""

NOTIFICATIONS = (
    "woflo_run_created",
    "woflo_attempt_started",
    "woflo_attempt_finished",
    "woflo_retry_scheduled",
    "woflo_run_finished",
)
"""The lifecycle hooks: each implementation is called on its own; none may be a wrapper."""

RUN_HOOKS = (
    *NOTIFICATIONS,
    "woflo_cached_outcome",
    "woflo_attempt_context",
    "woflo_retry_delay",
    "woflo_attempt_deadline",
)
"""The hooks called for a run in the calling process: those ``woflo_idle_hooks`` may name."""


def hook_names() -> list[str]:
    """Every hook of the specification, sorted."""
    return sorted(name for name, value in globals().items() if name.startswith("woflo_"))


# --------------------------------------------------------------------------------------------
# registration
# --------------------------------------------------------------------------------------------


@hookspec
def woflo_add_runners() -> Iterable[type[BaseTaskRun[Any]]] | None:
    """Contribute runner classes.

    Fires once when the plugin manager is built, in any process that loads plugins.

    :return: runner classes, each a subclass of :class:`woflo.BaseTaskRun` with a unique
        ``name`` (used as ``@task(runner="name")``); its class name becomes importable from
        :mod:`woflo.runners`.
    """


@hookspec
def woflo_add_options() -> Iterable[TaskOption] | None:
    """Contribute task options, the keyword arguments ``@task(...)`` accepts.

    Fires once when the plugin manager is built, in any process that loads plugins. Each
    option's ``validate`` runs at decoration time, so a bad value fails where the task is defined.

    :return: :class:`woflo.TaskOption` instances; a name already taken is an error.
    """


@hookspec(firstresult=True)
def woflo_default_runner() -> str | None:
    """Name the runner a task uses when ``@task`` is given none.

    Fires when a task without ``runner=`` is decorated, in the process decorating it. First
    non-``None`` result wins.

    :return: a registered runner name, or ``None`` for no opinion.
    """


@hookspec
def woflo_idle_hooks(task: Task[..., Any]) -> Iterable[str] | None:
    """Name this plugin's hooks that have nothing to do for ``task``'s runs: woflo then calls
    them for none of its runs, so a plugin costs nothing where it does not apply (the cache
    plugin for a task that does not cache, the timeouts plugin for one without a limit).

    Fires for each task when it is decorated, in the process decorating it, and again at its
    next call once plugins were registered or removed. Each implementation answers for its own
    plugin only. The names must be hooks of :data:`RUN_HOOKS` that the plugin implements, and
    the plugin object hashable (they are left out of a call by plugin object); another answer
    fails the decoration with :class:`woflo.errors.PluginError` (asked again
    later, it is logged on ``woflo.plugins`` and every hook of that plugin is called).

    :param task: the task, its ``options`` validated.
    :return: hook names such as ``"woflo_cached_outcome"``, or ``None`` (or nothing) when all
        of them take part.
    """


# --------------------------------------------------------------------------------------------
# lifecycle: the calling process, in this order
# --------------------------------------------------------------------------------------------


@hookspec
def woflo_run_created(run: BaseTaskRun[Any]) -> None:
    """A task was called and its run created; no attempt has started yet.

    Fires in the calling process, in the caller's thread, also for a run that waits for the
    runs among its arguments (its first attempt starts once they completed, if they do).

    :param run: the new run (``run.task``, ``run.run_id``, ``run.state``).
    """


@hookspec
def woflo_attempt_started(run: BaseTaskRun[Any], attempt: int) -> None:
    """An attempt began executing (for a pooled runner: was handed to a worker).

    Fires in the calling process, in whichever thread started the attempt.

    :param run: the run.
    :param attempt: the attempt's number, from 1.
    """


@hookspec
def woflo_attempt_finished(run: BaseTaskRun[Any], attempt: int, outcome: Outcome) -> None:
    """An attempt ended: it returned, raised, crashed, timed out or was stopped.

    Fires in the calling process, before any retry decision.

    :param run: the run.
    :param attempt: the attempt's number, from 1.
    :param outcome: its value or error (``outcome.error`` is a :class:`woflo.errors.TaskCrashed`,
        :class:`~woflo.errors.TaskTimeout` or :class:`~woflo.errors.TaskStopped` for those
        endings) and its duration in seconds.
    """


@hookspec
def woflo_retry_scheduled(
    run: BaseTaskRun[Any], attempt: int, outcome: Outcome, delay: float
) -> None:
    """A failed attempt will be followed by another after ``delay`` seconds.

    Fires in the calling process, after :func:`woflo_attempt_finished` for the same attempt, when
    the run has entered the ``awaiting_retry`` state.

    :param run: the run.
    :param attempt: the number of the attempt that failed.
    :param outcome: that attempt's outcome (its error is ``outcome.error``).
    :param delay: seconds until the next attempt starts.
    """


@hookspec
def woflo_run_finished(run: BaseTaskRun[Any]) -> None:
    """The run reached its final state; fires exactly once per run.

    Fires in the calling process, before anyone waiting on the run is woken.

    :param run: the run; ``run.state`` is final, ``run.exception()`` gives its error if any.
        A run whose upstream run (an argument) did not complete ends ``upstream_failed``
        without any attempt hook: ``run.exception()`` is a
        :class:`~woflo.errors.UpstreamFailed`, whose ``.run`` is that upstream run.
    """


# --------------------------------------------------------------------------------------------
# decisions: firstresult
# --------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def woflo_cached_outcome(run: BaseTaskRun[Any]) -> Outcome | BaseTaskRun[Any] | None:
    """Offer the run's value without executing it (a cache).

    Fires once per run, in the calling process, when its arguments are final (upstream runs'
    values in place) and before its first attempt: in the call for a run with no upstream
    runs. First non-``None`` result wins.

    :param run: the run, its ``args`` and ``kwargs`` final; ``run.task.options`` holds the
        task's options.
    :return: an :class:`~woflo.Outcome` with the value: the run completes with it at once,
        with no attempt (``run.cached`` is ``True``; ``woflo_run_finished`` fires as for any
        run). Or another run, of the same key and still going: this run waits for it and takes
        its value if it completes (``cached`` too), or runs its own attempts if it does not.
        ``None``: run as usual.
    :raises: an exception fails the call (a run with upstream runs: the run, ``failed``).
    """


@hookspec
def woflo_attempt_context(run: BaseTaskRun[Any], attempt: int) -> dict[str, Any] | None:
    """Give the attempt something to carry to where it executes (a trace context, say).

    Fires in the calling process before each attempt is handed to its runner. The dicts every
    implementation returns are merged into ``call.context``, which the runner sends with the
    call (to a worker process too), for the plugin's ``woflo_execute_attempt`` wrapper to read
    there. Keep it small and picklable; key it by your plugin's name.

    :param run: the run.
    :param attempt: the number of the attempt about to be handed over (1 for the first).
    :return: a dict to merge into the call's context, or ``None``.
    """


@hookspec(firstresult=True)
def woflo_retry_delay(
    run: BaseTaskRun[Any], attempt: int, outcome: Outcome
) -> float | Literal[False] | None:
    """Decide whether a failed attempt is retried, and after how long.

    Fires in the calling process after an attempt failed (raised, crashed or timed out; never
    after a stop). First non-``None`` result wins.

    :param run: the run (``run.task.options`` holds the task's options).
    :param attempt: the number of the attempt that failed, from 1.
    :param outcome: its outcome; ``outcome.error`` is the exception.
    :return: seconds to wait before the next attempt (a number ``>= 0``) to retry, ``False`` to
        end the run with this error, ``None`` for no opinion (no plugin deciding means no retry).
    """


@hookspec
def woflo_attempt_deadline(run: BaseTaskRun[Any], attempt: int) -> float | None:
    """Limit how long an attempt may run.

    Fires in the calling process before an attempt is handed to the runner (``run.attempts``
    is still the previous count) and again when it starts executing. Every implementation is
    asked; the smallest limit wins.

    When the limit passes, woflo asks the runner to kill the attempt (the multiprocess runner
    kills the worker's process group) and the attempt ends with
    :class:`woflo.errors.TaskTimeout` once the runner reports it ended (for the multiprocess
    runner: once the worker is confirmed dead), so a retry never overlaps the attempt it
    replaces. A runner that cannot kill (sequential) lets the attempt run to its end and then
    counts it as timed out, discarding its result.

    :param run: the run (``run.duration`` is the time since the call).
    :param attempt: the number of the attempt, from 1.
    :return: seconds the attempt may run, or ``None`` for no limit. A limit ``<= 0`` before
        the attempt starts ends the run ``timed_out`` without starting it.
    """


# --------------------------------------------------------------------------------------------
# execution: where the attempt runs
# --------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def woflo_execute_attempt(call: TaskCall) -> Outcome:  # type: ignore[empty-body]
    """Execute one attempt of a task and return its outcome.

    Fires where the attempt executes: in the calling thread for the sequential runner, in a
    worker process for the multiprocess runner. woflo's core implements the innermost call; a
    plugin wraps it (``@hookimpl(wrapper=True)``, ``outcome = yield``, then ``return outcome``)
    to run code around every attempt, such as binding log context. The task's own exception
    does not propagate through wrappers: it is in ``outcome.error``. First non-``None`` result
    wins: a plain (non-wrapper) implementation that returns an outcome replaces the call, since
    woflo's own implementation runs last.

    :param call: what to execute: ``call.fn``, ``call.args``, ``call.kwargs``, and
        ``call.task_name``, ``call.run_id``, ``call.attempt`` for context.
    :return: the attempt's :class:`woflo.Outcome`.
    """


@hookspec(firstresult=True)
def woflo_forwarded_log(message: dict[str, Any]) -> bool | None:
    """Render, in the calling process, a log message a plugin sent from where an attempt ran.

    Fires in the calling process, on the thread that delivers the attempt's log records, once
    per message, in the order they were sent. A plugin's code in a worker sends a plain dict
    with :func:`woflo.remote.forward_log` (``message[woflo.remote.FORWARDED]`` names its
    kind); it travels with the attempt's log records, and this hook gets it in the caller.
    The logging plugin forwards structlog events this way and renders them with the
    caller's structlog configuration.

    :param message: the dict as sent (values that did not pickle are their ``repr``).
    :return: ``True`` when this implementation rendered it. First non-``None`` result wins.
    """
