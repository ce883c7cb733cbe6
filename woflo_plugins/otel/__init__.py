"""The built-in OpenTelemetry plugin: each run and attempt a span, in the caller's trace.

Active when the program imported ``opentelemetry.trace`` (``pip install woflo[otel]``, or any
instrumented application) and configured a tracer provider; otherwise each hook returns at
once, and nothing is imported. ``WOFLO_DISABLE_PLUGINS=otel`` removes it.

* **A run** is a span ``woflo.run <task>``, started at the call with the caller's current span
  as parent, ended with the run: ``woflo.task.name``, ``woflo.run.id``, ``woflo.runner``,
  ``woflo.run.state``, ``woflo.run.attempts``; status error unless it completed; a retry wait
  is an event ``woflo.retry`` (``woflo.attempt.number``, ``woflo.retry.delay``); the runs
  among its arguments (composition) are links.
* **An attempt** is a span ``woflo.attempt <task>`` under its run, made where the attempt
  executes (the execution wrapper), current while the task runs, so the task's own spans nest
  under it: ``woflo.attempt.number``, ``woflo.worker.pid``, ``woflo.attempt.outcome``, the
  exception recorded and status error on failure.
* **Across processes.** The run's span context travels with the call (``woflo_attempt_context``).
  In a worker process, the plugin records the attempt's spans with the SDK (no configuration
  there) and ships each ended span back with the attempt's logs; in the caller they are made
  again, in order, with their own times, through the caller's tracer provider, so they reach
  its span processors and exporters as if made there. An attempt that never reported back (a
  crash, a timeout, a stop) still gets its span, made in the caller.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
from collections.abc import Generator
from typing import Any

from woflo import BaseTaskRun, Outcome, RunState, TaskCall, hookimpl, remote
from woflo_plugins.otel import _ship

__all__ = ["SPAN_MESSAGE"]

SPAN_MESSAGE = _ship.SPAN_MESSAGE
_FINE = (RunState.COMPLETED,)


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[str, Any] = {}  # run id -> its open span
        self.contexts: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self.shipped: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self.made_here: set[tuple[str, int]] = set()
        self.started: dict[tuple[str, int], int] = {}  # attempt -> its start, in ns
        self.open_attempts: dict[tuple[str, int], Any] = {}  # made here, ended at its end
        self.tracer: Any = None


_state = _State()
_RUN_HOOKS_NAME = "otel.runs"
_KEEP_CONTEXTS = 100_000
"""Span contexts of ended runs kept for the links of runs they feed later."""


def _forget_in_child() -> None:  # (a fork of the caller: no open spans of its own)
    global _state
    _state = _State()


os.register_at_fork(after_in_child=_forget_in_child)


def _tracer() -> Any:
    """The caller's tracer, when a tracer provider is configured; else ``None`` (at no cost:
    nothing is imported when the program did not import OpenTelemetry itself)."""
    tracer = _state.tracer
    if tracer is not None:
        return tracer
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    if _ship.is_ours(provider):  # (a worker's shipping provider: not a program's own)
        return None
    from woflo import __version__

    _state.tracer = tracer = provider.get_tracer("woflo", __version__)
    return tracer


# ---- the caller: runs ---------------------------------------------------------------------


@hookimpl
def woflo_run_created(run: BaseTaskRun[Any]) -> None:
    if _state.tracer is None and "opentelemetry.trace" not in sys.modules:
        return  # (what _tracer() answers first, without the call: a program without OTel)
    tracer = _tracer()
    if tracer is None:
        return
    from opentelemetry import trace

    state = _state
    system = run.task.plugin_system
    if system.pm.get_plugin(_RUN_HOOKS_NAME) is None:
        with state.lock:
            if system.pm.get_plugin(_RUN_HOOKS_NAME) is None:
                system.add(_RUN_HOOKS, name=_RUN_HOOKS_NAME)
    with state.lock:
        contexts = [state.contexts.get(u.run_id) for u in run.upstream]
    links = [trace.Link(context) for context in contexts if context is not None]
    span = tracer.start_span(
        f"woflo.run {run.task.name}",
        links=links,
        attributes={
            "woflo.task.name": run.task.name,
            "woflo.run.id": run.run_id,
            "woflo.runner": run.name,
        },
    )
    with state.lock:
        state.runs[run.run_id] = span
        state.contexts[run.run_id] = span.get_span_context()
        while len(state.contexts) > _KEEP_CONTEXTS:
            state.contexts.popitem(last=False)


class _RunHooks:
    """The hooks that follow a run in the caller, registered in a plugin system the first time
    one of its runs starts with a tracer provider configured: until then the plugin costs its
    ``woflo_run_created`` alone (and an execution wrapper that returns at once)."""

    @hookimpl
    def woflo_attempt_context(self, run: BaseTaskRun[Any]) -> dict[str, Any] | None:
        span = _state.runs.get(run.run_id)
        if span is None:
            return None
        context = span.get_span_context()
        if not context.is_valid:  # (a provider that records nothing: nothing to carry)
            return None
        return {"otel": (context.trace_id, context.span_id, int(context.trace_flags))}

    @hookimpl
    def woflo_attempt_started(self, run: BaseTaskRun[Any], attempt: int) -> None:
        if run.run_id in _state.runs:
            import time

            _state.started[run.run_id, attempt] = time.time_ns()

    @hookimpl
    def woflo_retry_scheduled(self, run: BaseTaskRun[Any], attempt: int, delay: float) -> None:
        span = _state.runs.get(run.run_id)
        if span is not None:
            span.add_event(
                "woflo.retry", {"woflo.attempt.number": attempt, "woflo.retry.delay": delay}
            )

    @hookimpl
    def woflo_attempt_finished(self, run: BaseTaskRun[Any], attempt: int, outcome: Outcome) -> None:
        state = _state
        span = state.runs.get(run.run_id)
        if span is None:
            return
        key = (run.run_id, attempt)
        with state.lock:
            shipped = state.shipped.pop(key, [])
            made_here = key in state.made_here
            state.made_here.discard(key)
            started = state.started.pop(key, None)
            open_here = state.open_attempts.pop(key, None)
        if open_here is not None:  # (made in this process: ended with the final outcome, a
            _ship.end_attempt(open_here, outcome)  # timeout the core decided included)
            return
        if made_here:
            return
        _ship.replay(
            state.tracer, span, shipped, run=run, attempt=attempt, outcome=outcome, started=started
        )

    @hookimpl
    def woflo_run_finished(self, run: BaseTaskRun[Any]) -> None:
        state = _state
        if not state.runs:  # (no span open: the plugin is idle)
            return
        with state.lock:
            span = state.runs.pop(run.run_id, None)
        if span is None:
            return
        from opentelemetry.trace import Status, StatusCode

        span.set_attribute("woflo.run.state", "cached" if run.cached else run.state.value)
        span.set_attribute("woflo.run.attempts", run.attempts)
        if run.state not in _FINE:
            error = run.exception()
            span.set_status(Status(StatusCode.ERROR, f"{run.state.value}: {error!r}"))
        span.end()


_RUN_HOOKS = _RunHooks()


@hookimpl
def woflo_forwarded_log(message: dict[str, Any]) -> bool | None:
    if message.get(remote.FORWARDED) != SPAN_MESSAGE:
        return None
    key = (message["run_id"], message["attempt"])
    with _state.lock:
        if message["run_id"] in _state.runs:
            if message.get("made_here"):  # (exported by the worker's own provider)
                _state.made_here.add(key)
            else:
                _state.shipped.setdefault(key, []).append(message["span"])
    return True


# ---- where the attempt executes ------------------------------------------------------------


@hookimpl(wrapper=True)
def woflo_execute_attempt(call: TaskCall) -> Generator[None, Outcome, Outcome]:
    parent = call.context.get("otel")
    if parent is None:
        return (yield)
    try:
        tracer = _tracer()  # this process's own provider: the caller (or a worker's own)
        here = tracer is not None
        if not here and remote.log_context() is not None:  # a worker: spans go back
            tracer = _ship.worker_tracer()
        span = _ship.start_attempt(tracer, parent, call) if tracer is not None else None
    except Exception:  # (tracing never fails an attempt)
        span = None
    if span is None:
        return (yield)
    in_caller = here and remote.log_context() is None
    key = (call.run_id, call.attempt)
    if in_caller:  # (its run's span is here: it ends with the attempt's final outcome)
        with _state.lock:
            _state.open_attempts[key] = span
    elif here:  # (a worker with a provider of its own exports it: none to make again)
        remote.forward_log(
            {remote.FORWARDED: SPAN_MESSAGE, "run_id": key[0], "attempt": key[1], "made_here": True}
        )
    from opentelemetry import trace

    with trace.use_span(span, end_on_exit=False, record_exception=False):
        outcome = yield
    if not in_caller:
        try:
            _ship.end_attempt(span, outcome)
        except Exception:
            pass
    return outcome
