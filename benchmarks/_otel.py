"""Workload of the OpenTelemetry plugin (imported by ``run.py``): spans on vs off per run on the
multiprocess runner, with the SDK configured (a batch processor to an exporter that drops)."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from typing import Any

from _tasks import noop

import woflo

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
    from woflo.plugins import PluginSystem, get_plugin_system, set_plugin_system

    get_plugin_system()

    def make(disabled: list[str]) -> Any:
        previous = set_plugin_system(PluginSystem.from_entry_points(disabled=disabled))
        try:
            return woflo.task(runner="multiprocess")(noop)
        finally:
            set_plugin_system(previous)

    def batch(t: Any) -> System:
        t(0).get_result()

        def measure() -> float:
            start = time.perf_counter()
            for run in [t(i) for i in range(n)]:
                run.get_result()
            return (time.perf_counter() - start) / n

        return measure

    return {"spans on": batch(make([])), "spans off (otel disabled)": batch(make(["otel"]))}
