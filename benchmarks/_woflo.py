"""What woflo's own workloads share (imported by ``run.py``, ``_history``, ``_otel``,
``_cache``): a no-op task on a plugin system with some plugins disabled, the submitted-then-
collected timing, and a ``WOFLO_HOME`` of a workload's own."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from _tasks import noop

import woflo

System = Callable[[], float]


def noop_task(runner: str, disabled: list[str]) -> Any:
    """The benchmarks' no-op as a task on ``runner``, its plugins all but ``disabled``."""
    from woflo.plugins import PluginSystem, get_plugin_system, set_plugin_system

    get_plugin_system()  # (the default one exists first: the new one replaces it briefly)
    previous = set_plugin_system(PluginSystem.from_entry_points(disabled=disabled))
    try:
        return woflo.task(runner=runner)(noop)
    finally:
        set_plugin_system(previous)


def submitted_then_collected(t: Any, n: int, after: Callable[[], object] = lambda: None) -> System:
    """Seconds per call: ``n`` runs of ``t`` submitted, then collected (``after`` runs after
    each measure, not timed). The first call warms every worker it will use."""
    t(0).get_result()

    def measure() -> float:
        start = time.perf_counter()
        for run in [t(i) for i in range(n)]:
            run.get_result()
        spent = (time.perf_counter() - start) / n
        after()
        return spent

    return measure


def one_after_another(t: Any, n: int, after: Callable[[], object] = lambda: None) -> System:
    """Seconds per call: ``n`` runs of ``t`` called one after another (a sequential task's
    call returns it ended); ``after`` runs after each measure, not timed."""

    def measure() -> float:
        start = time.perf_counter()
        for i in range(n):
            t(i)
        spent = (time.perf_counter() - start) / n
        after()
        return spent

    return measure


@contextlib.contextmanager
def woflo_home(path: str) -> Iterator[None]:
    """``WOFLO_HOME`` set to ``path`` meanwhile (put back as it was after)."""
    saved = os.environ.get("WOFLO_HOME")
    os.environ["WOFLO_HOME"] = path
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("WOFLO_HOME", None)
        else:
            os.environ["WOFLO_HOME"] = saved
