"""Spans across the process boundary: recorded in a worker, shipped back with the attempt's
logs, made again in the caller through its own tracer provider (public API only)."""

from __future__ import annotations

import os
import time
from typing import Any

from woflo import BaseTaskRun, Outcome, TaskCall, remote

__all__ = ["SPAN_MESSAGE", "end_attempt", "is_ours", "replay", "start_attempt", "worker_tracer"]

SPAN_MESSAGE = "woflo.otel.span"
"""The kind (``message[woflo.remote.FORWARDED]``) of a span shipped from a worker."""

_installed: list[Any] = []  # [the provider this module set up in a worker]
_owners: dict[int, tuple[str, int]] = {}
"""Span id -> the (run id, attempt) whose attempt span it descends from, for each span open in
this worker: several attempts may run at once (Dask threads), and a thread may outlive its."""


def is_ours(provider: Any) -> bool:
    """Whether ``provider`` is the shipping provider of a worker (not the program's own)."""
    return bool(_installed) and provider is _installed[0]


def worker_tracer() -> Any:
    """A tracer whose ended spans are shipped to the caller, set up once per worker (with the
    SDK, when the worker can import it; ``None`` where it cannot, or where the worker's own
    code configured a tracer provider of its own)."""
    if not _installed:
        try:
            from opentelemetry import trace
            from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
        except ImportError:
            return None
        provider = TracerProvider()
        provider.add_span_processor(type("Shipper", (_Shipper, SpanProcessor), {})())
        current = trace.get_tracer_provider()
        if not isinstance(current, trace.ProxyTracerProvider):
            return None  # (configured here by someone else: theirs stays, nothing is shipped)
        trace.set_tracer_provider(provider)
        _installed.append(provider)
    return _installed[0].get_tracer("woflo")


class _Shipper:
    """A span processor that sends each ended span to the caller, with the attempt's logs."""

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        attributes = span.attributes or {}
        attempt = attributes.get("woflo.attempt.number")
        if attempt is not None and "woflo.run.id" in attributes:
            owner: tuple[str, int] | None = (attributes["woflo.run.id"], attempt)
        else:
            parent = span.parent
            owner = _owners.get(parent.span_id) if parent is not None else None
        if owner is not None:
            _owners[span.get_span_context().span_id] = owner

    def on_end(self, span: Any) -> None:
        context = span.get_span_context()
        owner = _owners.pop(context.span_id, None)
        if owner is None:  # (not made under an attempt of woflo's)
            return
        run_id, attempt = owner
        parent = span.parent
        scope = span.instrumentation_scope
        remote.forward_log(
            {
                remote.FORWARDED: SPAN_MESSAGE,
                "run_id": run_id,
                "attempt": attempt,
                "span": {
                    "name": span.name,
                    "scope": (scope.name, scope.version) if scope is not None else ("", None),
                    "span_id": context.span_id,
                    "parent_id": parent.span_id if parent is not None else None,
                    "kind": span.kind.name,
                    "start": span.start_time,
                    "end": span.end_time,
                    "attributes": dict(span.attributes or {}),
                    "events": [
                        (e.name, e.timestamp, dict(e.attributes or {})) for e in span.events
                    ],
                    "links": [
                        (
                            link.context.trace_id,
                            link.context.span_id,
                            int(link.context.trace_flags),
                            dict(link.attributes or {}),
                        )
                        for link in span.links
                    ],
                    "status": (span.status.status_code.name, span.status.description),
                },
            }
        )

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def start_attempt(tracer: Any, parent: tuple[int, int, int], call: TaskCall) -> Any:
    """Start the attempt's span under the run's (``parent``: its trace id, span id, flags)."""
    from opentelemetry import trace

    trace_id, span_id, flags = parent
    remote_parent = trace.NonRecordingSpan(
        trace.SpanContext(trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(flags))
    )
    return tracer.start_span(
        f"woflo.attempt {call.task_name}",
        context=trace.set_span_in_context(remote_parent),
        attributes={
            "woflo.task.name": call.task_name,
            "woflo.run.id": call.run_id,
            "woflo.attempt.number": call.attempt,
            "woflo.worker.pid": os.getpid(),
        },
    )


def end_attempt(span: Any, outcome: Outcome) -> None:
    """Say how the attempt ended on its span, and end it."""
    _outcome(span, outcome.error)
    span.end()


def _outcome(span: Any, error: BaseException | None) -> None:
    from opentelemetry.trace import Status, StatusCode

    if error is None:
        span.set_attribute("woflo.attempt.outcome", "completed")
        return
    span.set_attribute("woflo.attempt.outcome", Outcome(error=error).state.value)
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


def replay(
    tracer: Any,
    run_span: Any,
    shipped: list[dict[str, Any]],
    *,
    run: BaseTaskRun[Any],
    attempt: int,
    outcome: Outcome,
    started: int | None,
) -> None:
    """Make the attempt's spans again in the caller: the attempt's own under the run's (made
    here from the outcome when the worker sent none: a crash, a kill), then each span the task
    made, parents before children, in the order they started."""
    from opentelemetry import trace

    run_id = run_span.get_span_context().span_id
    root = next(
        (
            s
            for s in shipped
            if s["parent_id"] == run_id and "woflo.attempt.number" in s["attributes"]
        ),
        None,
    )
    made: dict[int, Any] = {}
    scoped: dict[tuple[str, str | None], Any] = {}

    def tracer_of(data: dict[str, Any]) -> Any:  # (each span under its own scope's tracer)
        name, version = data.get("scope") or ("", None)
        if not name or name == "woflo":
            return tracer
        if (name, version) not in scoped:
            scoped[name, version] = trace.get_tracer_provider().get_tracer(name, version)
        return scoped[name, version]

    if root is not None:
        attempt_span = _make(tracer, root, run_span)
        made[root["span_id"]] = attempt_span
    else:
        now = time.time_ns()
        begin = started if started is not None else now - int(outcome.duration * 1e9)
        attempt_span = tracer.start_span(
            f"woflo.attempt {run.task.name}",
            context=trace.set_span_in_context(run_span),
            start_time=begin,
            attributes={
                "woflo.task.name": run.task.name,
                "woflo.run.id": run.run_id,
                "woflo.attempt.number": attempt,
                **({"woflo.worker.pid": run.attempt_pid} if run.attempt_pid else {}),
            },
        )
        _outcome(attempt_span, outcome.error)
        attempt_span.end(end_time=max(begin, now))
    rest = sorted((s for s in shipped if s is not root), key=lambda s: s["start"] or 0)
    known = {s["span_id"] for s in rest}
    while rest:
        waiting = []
        for data in rest:
            parent = data["parent_id"]
            if parent in made:
                made[data["span_id"]] = _make(tracer_of(data), data, made[parent])
            elif parent in known:
                waiting.append(data)  # (its parent is made first)
            else:  # (its parent never came back: under the attempt)
                made[data["span_id"]] = _make(tracer_of(data), data, attempt_span)
        if len(waiting) == len(rest):  # (a cycle cannot happen; never loop forever)
            for data in waiting:
                made[data["span_id"]] = _make(tracer_of(data), data, attempt_span)
            break
        rest = waiting
        known = {s["span_id"] for s in rest}


def _make(tracer: Any, data: dict[str, Any], parent: Any) -> Any:
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    links = [
        trace.Link(
            trace.SpanContext(tid, sid, is_remote=True, trace_flags=trace.TraceFlags(flags)),
            attributes,
        )
        for tid, sid, flags, attributes in data["links"]
    ]
    span = tracer.start_span(
        data["name"],
        context=trace.set_span_in_context(parent),
        kind=trace.SpanKind[data["kind"]],
        attributes=data["attributes"],
        links=links,
        start_time=data["start"],
    )
    for name, timestamp, attributes in data["events"]:
        span.add_event(name, attributes, timestamp)
    code, description = data["status"]
    if code != "UNSET":
        span.set_status(Status(StatusCode[code], description))
    span.end(end_time=data["end"])
    return span
