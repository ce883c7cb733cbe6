"""Workloads of the result cache (imported by ``run.py``): a hit against executing a no-op on
the multiprocess runner, and against ``joblib.Memory`` for the same function and arguments."""

from __future__ import annotations

import importlib.util
import tempfile
import time
from collections.abc import Callable
from typing import Any

from _tasks import noop

import woflo

System = Callable[[], float]


def hit_cost(n: int, skipped: dict[str, str]) -> dict[str, System]:
    """Seconds per call: ``n`` calls of a cached no-op that all hit (each waits for its value),
    ``n`` no-op runs executed one at a time on the multiprocess runner, ``n`` joblib hits."""
    from _woflo import woflo_home

    import woflo_plugins.cache as caching

    home = tempfile.mkdtemp(prefix="woflo-bench-cache-")
    with woflo_home(home):
        cached = woflo.task(cache=True, name="bench_cached_noop")(noop)
        plain = woflo.task(name="bench_noop")(noop)
        cached(7).get_result()
        plain(7).get_result()
        caching.flush(30)

    def calls(t: Any) -> System:
        def measure() -> float:
            with woflo_home(home):
                start = time.perf_counter()
                for _ in range(n):
                    t(7).get_result()
                return (time.perf_counter() - start) / n

        return measure

    systems = {
        "woflo, cache hit": calls(cached),
        "woflo, executing a no-op (multiprocess)": calls(plain),
    }
    if importlib.util.find_spec("joblib") is not None:
        import joblib

        memory = joblib.Memory(tempfile.mkdtemp(prefix="woflo-bench-joblib-"), verbose=0)
        joblib_noop = memory.cache(noop)
        joblib_noop(7)

        def joblib_hits() -> float:
            start = time.perf_counter()
            for _ in range(n):
                joblib_noop(7)
            return (time.perf_counter() - start) / n

        systems["joblib.Memory, hit"] = joblib_hits
    else:
        skipped["joblib"] = "not installed (pip install joblib to include it)"
    return systems
