"""Structured logging of every run's lifecycle with structlog.

Events (``event`` key) and their levels::

    task.started         INFO     the run was created
    task.attempt_failed  INFO     an attempt failed: ``error``, ``duration`` (s)
    task.retrying        WARNING  another attempt follows: ``error``, ``delay`` (s) until it
    task.completed       INFO     ``duration`` (s) of the run
    task.failed          ERROR    the final error, with its traceback
    task.crashed         ERROR    the worker died (signal or exit code)
    task.timed_out       ERROR
    task.stopped         WARNING
    task.upstream_failed WARNING  a run it was given as an argument did not complete:
                                  ``upstream_task``, ``upstream_run_id``, ``upstream_state``

Every event carries ``task``, ``run_id`` and ``attempt``. When the application has configured
structlog (``structlog.is_configured()``), events go through its configuration unchanged, on
the ``woflo`` logger. Otherwise woflo prints them to stderr itself, without touching structlog's
global configuration: at ``WOFLO_LOG_LEVEL`` and above (default ``WARNING``: failures and
retries are visible, per-run lines appear at ``INFO``), as ``WOFLO_LOG_FORMAT=console`` (default)
or ``json``. structlog is imported only when an event is to be written.

Inside a task, when structlog is in use in that process, ``structlog.contextvars`` holds
``task``, ``run_id`` and ``attempt`` for the attempt, so the task's own log lines carry them.

A task's structlog events in a worker process reach the caller as event dicts, every field and
the context kept, and are rendered there by the caller's structlog configuration
(:mod:`._forward`): the line reads as it would in-process, plus the run context and ``pid``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator, MutableMapping
from typing import Any

from woflo import BaseTaskRun, Outcome, RunState, TaskCall, hookimpl, remote
from woflo.errors import TaskStopped
from woflo_plugins.logging import _forward

__all__ = ["FORMAT_ENV", "LEVEL_ENV", "reset"]

LEVEL_ENV = "WOFLO_LOG_LEVEL"
FORMAT_ENV = "WOFLO_LOG_FORMAT"

_FORMATS = ("console", "json")
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_FINAL_EVENTS: dict[RunState, tuple[str, str]] = {
    RunState.COMPLETED: ("info", "task.completed"),
    RunState.FAILED: ("error", "task.failed"),
    RunState.CRASHED: ("error", "task.crashed"),
    RunState.TIMED_OUT: ("error", "task.timed_out"),
    RunState.STOPPED: ("warning", "task.stopped"),
    RunState.UPSTREAM_FAILED: ("warning", "task.upstream_failed"),
}
_CACHED = ("info", "task.cached")  # (completed with a cached value, no attempt)


class _Stderr:
    """A structlog logger that writes each rendered line to the current ``sys.stderr``."""

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


class _Emitter:
    def __init__(self) -> None:
        self._own: Any = None
        self._threshold: int | None = None

    def threshold(self) -> int:
        if self._threshold is None:
            name = os.environ.get(LEVEL_ENV, "warning").strip().lower()
            if name.isdigit():
                self._threshold = int(name)
            elif name in _LEVELS:
                self._threshold = _LEVELS[name]
            else:
                self._threshold = _LEVELS["warning"]
                print(
                    f"woflo: {LEVEL_ENV}={name!r} is not a level ({', '.join(_LEVELS)}); "
                    "using warning",
                    file=sys.stderr,
                )
        return self._threshold

    def wants(self, level: str) -> bool:
        """Whether an event at ``level`` would be written (asked before building it)."""
        if "structlog" in sys.modules:  # (else it cannot be configured: no call made)
            structlog = _imported_structlog()
            if structlog is not None and structlog.is_configured():
                return True  # the application's configuration decides
        threshold = self._threshold
        return _LEVELS[level] >= (self.threshold() if threshold is None else threshold)

    def emit(self, level: str, event: str, **fields: Any) -> None:
        structlog = _imported_structlog()
        if structlog is not None and structlog.is_configured():
            getattr(structlog.get_logger("woflo"), level)(event, **fields)
            return
        if _LEVELS[level] < self.threshold():
            return
        if self._own is None:
            self._own = self._build()
        getattr(self._own, level)(event, **fields)

    def _build(self) -> Any:
        import structlog

        name = os.environ.get(FORMAT_ENV, "console").strip().lower() or "console"
        if name not in _FORMATS:
            print(
                f"woflo: {FORMAT_ENV}={name!r} is not a format ({', '.join(_FORMATS)}); "
                "using console",
                file=sys.stderr,
            )
        json = name == "json"
        renderer: Any = (
            structlog.processors.JSONRenderer()
            if json
            else structlog.dev.ConsoleRenderer(colors=False)
        )
        return structlog.wrap_logger(
            _Stderr(),
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.format_exc_info if json else _keep,
                renderer,
            ],
            wrapper_class=structlog.make_filtering_bound_logger(self.threshold()),
            logger_name="woflo",
        )


def _imported_structlog() -> Any:
    """structlog if something imported it already, else ``None``.

    ``sys.modules`` holds a module from the start of its import: when another thread is still
    importing structlog, the import statement waits for it to finish (a partly initialised
    module would fail with an AttributeError).
    """
    module = sys.modules.get("structlog")
    if module is None:
        return None
    if getattr(module.__spec__, "_initializing", False):  # another thread imports it now
        import structlog

        return structlog
    return module


def _keep(logger: Any, name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return event_dict


_emitter = _Emitter()


def reset() -> None:
    """Forget the level, format and logger read so far: the next event reads
    ``WOFLO_LOG_LEVEL`` and ``WOFLO_LOG_FORMAT`` again (for a program, or a test, that
    changes them)."""
    global _emitter
    _emitter = _Emitter()


def _fields(run: BaseTaskRun[Any], attempt: int) -> dict[str, Any]:
    return {"task": run.task.name, "run_id": run.run_id, "attempt": attempt}


@hookimpl
def woflo_run_created(run: BaseTaskRun[Any]) -> None:
    if _emitter.wants("info") and not run.cached:  # (a cache hit: task.cached says it all)
        _emitter.emit("info", "task.started", runner=run.name, **_fields(run, 1))


@hookimpl
def woflo_attempt_finished(run: BaseTaskRun[Any], attempt: int, outcome: Outcome) -> None:
    error = outcome.error
    if error is not None and not isinstance(error, TaskStopped) and _emitter.wants("info"):
        _emitter.emit(
            "info",
            "task.attempt_failed",
            error=repr(outcome.error),
            duration=round(outcome.duration, 6),
            **_fields(run, attempt),
        )


@hookimpl
def woflo_retry_scheduled(
    run: BaseTaskRun[Any], attempt: int, outcome: Outcome, delay: float
) -> None:
    _emitter.emit(
        "warning",
        "task.retrying",
        error=repr(outcome.error),
        delay=delay,
        duration=round(outcome.duration, 6),
        **_fields(run, attempt),
    )


@hookimpl
def woflo_run_finished(run: BaseTaskRun[Any]) -> None:
    level, event = _FINAL_EVENTS[run.state] if not run.cached else _CACHED
    if not _emitter.wants(level):
        return
    fields = _fields(run, run.attempts)
    fields["duration"] = round(run.duration, 6)
    error = run.exception()  # final: returns at once
    if error is not None:
        fields["error"] = repr(error)
        if run.state is RunState.FAILED:
            fields["exc_info"] = error
        upstream = getattr(error, "run", None) if run.state is RunState.UPSTREAM_FAILED else None
        if upstream is not None:
            fields["upstream_task"] = upstream.task.name
            fields["upstream_run_id"] = upstream.run_id
            fields["upstream_state"] = upstream.state.value
    _emitter.emit(level, event, **fields)


@hookimpl(wrapper=True)
def woflo_execute_attempt(call: TaskCall) -> Generator[None, Outcome, Outcome]:
    if not _forward.ready and remote.log_context() is not None:  # in a worker: once
        _forward.prepare_worker()
    structlog = _imported_structlog()
    if structlog is None:  # the task does not use structlog here: nothing to bind
        outcome = yield
        if _forward.bound_on_import:  # unless it imported structlog (bound it then)
            _imported_structlog().contextvars.unbind_contextvars(*_forward.bound_on_import)
            _forward.bound_on_import = ()
        return outcome
    contextvars = structlog.contextvars  # (bind and reset: cheaper than bound_contextvars)
    tokens = contextvars.bind_contextvars(
        task=call.task_name, run_id=call.run_id, attempt=call.attempt
    )
    try:
        return (yield)
    finally:
        contextvars.reset_contextvars(**tokens)


@hookimpl
def woflo_forwarded_log(message: dict[str, Any]) -> bool | None:
    return _forward.replay(message)
