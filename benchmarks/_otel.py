"""Workload of the OpenTelemetry plugin (imported by ``run.py``): spans on vs off per run on the
multiprocess runner, with the SDK configured (a batch processor to an exporter that drops)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

System = Callable[[], float]


def span_cost(n: int, skipped: dict[str, str]) -> dict[str, System]:
    """Seconds per call, ``n`` no-op runs submitted then collected, spans on and off."""
    if importlib.util.find_spec("opentelemetry.sdk") is None:
        skipped["otel"] = "opentelemetry-sdk not installed (pip install opentelemetry-sdk)"
        return {}
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Drop()))
        trace.set_tracer_provider(provider)
    from _woflo import noop_task, submitted_then_collected

    return {
        "spans on": submitted_then_collected(noop_task("multiprocess", []), n),
        "spans off (otel disabled)": submitted_then_collected(
            noop_task("multiprocess", ["otel"]), n
        ),
    }
