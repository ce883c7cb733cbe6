"""Workloads of runs that feed runs (imported by ``run.py``): fan-out/fan-in, a chain of
dependent runs, awaiting many runs, and the caller's memory per pending run.

Peers: Dask futures on a LocalCluster (``client.map`` + ``client.submit(reduce, futures)``),
``concurrent.futures.ProcessPoolExecutor`` driven by hand (the floor for a process pool), and
Prefect 3 (``.map`` in a flow, with its default thread-pool task runner and with its process
pool task runner) when installed. Each system runs at its defaults.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

from _tasks import noop, reduce, source, work  # importable by every system's workers

import woflo

System = Callable[[], float]


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@contextlib.contextmanager
def _dask() -> Iterator[Any]:
    import distributed

    workers = os.cpu_count() or 1
    with (
        distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, dashboard_address=":0", silence_logs=40
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        client.submit(noop, 0).result()
        yield client


_PREFECT_HOME = tempfile.mkdtemp(prefix="woflo-bench-prefect-")
PREFECT_ITEMS = 200
"""Prefect runs at most this many mapped items (its process pool takes ~0.2 s per task here):
its figure is still per item, and its label says how many."""


@contextlib.contextmanager
def _prefect_env() -> Iterator[None]:
    """Prefect against its ephemeral API (its SQLite in a temporary home kept for the whole
    benchmark: the API server lives on in this process), quiet. A failure of Prefect's own
    (its database locked under load) makes that measure NaN, said in the output."""
    yield


for _key, _value in (
    ("PREFECT_HOME", _PREFECT_HOME),
    ("PREFECT_LOGGING_LEVEL", "ERROR"),
    ("PREFECT_LOGGING_LOGGERS_ROOT_LEVEL", "ERROR"),
    ("PREFECT_SERVER_LOGGING_LEVEL", "ERROR"),
):
    os.environ.setdefault(_key, _value)  # (before Prefect is imported: it reads them once)


def _or_nan(measure: System, label: str) -> System:
    def guarded() -> float:
        try:
            return measure()
        except Exception as exc:
            print(f"{label}: failed ({type(exc).__name__}: {str(exc)[:200]}); counted as NaN")
            return float("nan")

    return guarded


def _timed(fn: Callable[[], Any], per: int) -> System:
    def measure() -> float:
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) / per

    return measure


def _woflo_tasks() -> tuple[Any, Any, Any]:
    return woflo.task(source), woflo.task(work), woflo.task(reduce)


def fan_out_in(n: int, skipped: dict[str, str]) -> dict[str, System]:
    """One source run, ``n`` mapped runs that depend on it, one reduce: seconds per mapped run."""
    w_source, w_work, w_reduce = _woflo_tasks()

    def woflo_() -> int:
        src = w_source()
        return w_reduce(w_work.map(range(n), woflo.unmapped(src))).get_result()

    ppe = concurrent.futures.ProcessPoolExecutor()
    ppe.submit(noop, 0).result()

    def by_hand() -> int:
        src = ppe.submit(source).result()
        values = [f.result() for f in [ppe.submit(work, i, src) for i in range(n)]]
        return ppe.submit(reduce, values).result()

    systems: dict[str, System] = {
        "woflo": _timed(woflo_, n),
        "ProcessPoolExecutor, by hand": _timed(by_hand, n),
    }
    if _have("distributed"):

        def dask_() -> int:
            with _dask() as client:
                start = time.perf_counter()
                src = client.submit(source, pure=False)
                futures = client.map(work, range(n), src=src, pure=False)
                client.submit(reduce, futures, pure=False).result()
                return time.perf_counter() - start  # (the cluster's start is not counted)

        systems["dask (LocalCluster)"] = lambda: dask_() / n
    else:
        skipped["dask, fan-out"] = "not installed"
    systems.update(_prefect_fan_out(n, skipped))
    return systems


def map_tiny(n: int, skipped: dict[str, str]) -> dict[str, System]:
    """``Task.map`` over ``n`` no-op items, against the pools' own maps (joblib's auto-batching,
    ``Pool.map``'s chunks, ``ProcessPoolExecutor.map`` one item a call): seconds per item."""
    w_noop = woflo.task(noop)
    w_noop.map(range(200)).get_result()
    workers = os.cpu_count() or 1
    ppe = concurrent.futures.ProcessPoolExecutor(workers)
    list(ppe.map(noop, range(200)))
    import multiprocessing

    pool = multiprocessing.Pool(workers)
    pool.map(noop, range(200))
    systems: dict[str, System] = {
        "woflo: Task.map": _timed(lambda: w_noop.map(range(n)).get_result(), n),
        "ProcessPoolExecutor.map": _timed(lambda: list(ppe.map(noop, range(n))), n),
        "multiprocessing.Pool.map": _timed(lambda: pool.map(noop, range(n)), n),
    }
    if _have("joblib"):
        import joblib

        parallel = joblib.Parallel(n_jobs=workers)
        parallel(joblib.delayed(noop)(i) for i in range(200))
        systems["joblib (auto-batching)"] = _timed(
            lambda: parallel(joblib.delayed(noop)(i) for i in range(n)), n
        )
    else:
        skipped["joblib, map"] = "not installed (pip install joblib to include it)"
    return systems


def _prefect_fan_out(n: int, skipped: dict[str, str]) -> dict[str, System]:
    if not _have("prefect"):
        skipped["prefect"] = "not installed (pip install prefect to include it)"
        return {}
    systems: dict[str, System] = {}
    n = min(n, PREFECT_ITEMS)
    for label, runner in (("thread pool (default)", "threads"), ("process pool", "processes")):

        def measure(runner: str = runner) -> float:
            with _prefect_env():
                from prefect import flow, task, unmapped
                from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

                p_source, p_work, p_reduce = task(source), task(work), task(reduce)
                task_runner = (
                    ThreadPoolTaskRunner() if runner == "threads" else ProcessPoolTaskRunner()
                )

                @flow(task_runner=task_runner)
                def fan(count: int) -> float:
                    start = time.perf_counter()
                    src = p_source.submit()
                    futures = p_work.map(range(count), unmapped(src))
                    p_reduce.submit(futures).result()
                    return time.perf_counter() - start

                return fan(n) / n  # (the flow's own start is not counted)

        name = f"prefect 3, {label}, {n} items"
        systems[name] = _or_nan(measure, name)
    return systems


def chain(n: int, skipped: dict[str, str]) -> dict[str, System]:
    """``n`` runs, each consuming the previous one's value: seconds per link."""
    w_work = woflo.task(work)

    def woflo_() -> int:
        run = w_work(0, 0)
        for i in range(1, n):
            run = w_work(i, run)
        return run.get_result()

    ppe = concurrent.futures.ProcessPoolExecutor()
    ppe.submit(noop, 0).result()

    def by_hand() -> int:
        value = 0
        for i in range(n):
            value = ppe.submit(work, i, value).result()
        return value

    systems: dict[str, System] = {
        "woflo": _timed(woflo_, n),
        "ProcessPoolExecutor, by hand": _timed(by_hand, n),
    }
    if _have("distributed"):

        def dask_() -> float:
            with _dask() as client:
                start = time.perf_counter()
                future = client.submit(work, 0, 0, pure=False)
                for i in range(1, n):
                    future = client.submit(work, i, future, pure=False)
                future.result()
                return (time.perf_counter() - start) / n

        systems["dask (LocalCluster)"] = dask_
    if _have("prefect"):

        def prefect_() -> float:
            with _prefect_env():
                from prefect import flow, task

                p_work = task(work)

                @flow
                def linked(count: int) -> float:
                    start = time.perf_counter()
                    future = p_work.submit(0, 0)
                    for i in range(1, count):
                        future = p_work.submit(i, future)
                    future.result()
                    return time.perf_counter() - start

                return linked(n) / n

        systems["prefect 3, thread pool (default)"] = _or_nan(prefect_, "prefect 3, chain")
    return systems


def awaiting(n: int) -> dict[str, System]:
    """``n`` runs awaited from one event loop (``asyncio.gather``) against awaiting
    ``loop.run_in_executor`` futures of a process pool: seconds per run."""
    w_noop = woflo.task(noop)
    ppe = concurrent.futures.ProcessPoolExecutor()
    ppe.submit(noop, 0).result()

    async def woflo_() -> list[Any]:
        return await asyncio.gather(*(w_noop(i) for i in range(n)))

    async def executor() -> list[Any]:
        loop = asyncio.get_running_loop()
        return await asyncio.gather(*(loop.run_in_executor(ppe, noop, i) for i in range(n)))

    return {
        "woflo: await runs": _timed(lambda: asyncio.run(woflo_()), n),
        "ProcessPoolExecutor: await run_in_executor": _timed(lambda: asyncio.run(executor()), n),
    }


def pending_memory(n: int) -> dict[str, System]:
    """The caller's memory per pending run (KiB, what Python allocated for it and holds, by
    tracemalloc: a resident-size difference in a process that freed more before reads 0):
    ``n`` runs that wait for a run still going (dependents: nothing pickled yet), ``n`` runs
    queued on a busy pool (their arguments pickled, each waiting for a worker), and ``n``
    futures queued on a busy ProcessPoolExecutor."""
    from _tasks import sleep

    w_work, w_noop, w_sleep = woflo.task(work), woflo.task(noop), woflo.task(sleep)
    workers = os.cpu_count() or 1

    def dependents() -> float:
        upstream = w_sleep(60)
        with held() as grown:
            group = w_work.map(range(n), woflo.unmapped(upstream))
        upstream.stop()  # every dependent ends upstream_failed
        group.wait()
        return grown[0] / n

    def queued() -> float:
        busy = w_sleep.map([60] * workers)
        with held() as grown:
            group = woflo.RunGroup([w_noop(i) for i in range(n)])
        group.stop()
        busy.stop()
        return grown[0] / n

    ppe = concurrent.futures.ProcessPoolExecutor(max_workers=1)

    def executor() -> float:
        busy = ppe.submit(sleep, 1.0)
        with held() as grown:
            futures = [ppe.submit(noop, i) for i in range(n)]
        for future in futures:
            future.cancel()
        busy.result()
        return grown[0] / n

    return {
        "woflo: dependents waiting for a run": dependents,
        "woflo: runs queued on a busy pool": queued,
        "ProcessPoolExecutor: futures queued": executor,
    }


@contextlib.contextmanager
def held(warm: Callable[[], object] | None = None) -> Iterator[list[float]]:
    """KiB that Python allocated in the block and still holds at its end (``[kib]``, filled
    then), counted by tracemalloc (exact for Python's objects, whatever the allocator does
    with freed memory). ``warm`` runs first, traced too: what it leaves at its size (a dict
    keeps the size it grew to) is then not counted as the block's."""
    import tracemalloc

    gc.collect()
    tracemalloc.start()
    result = [0.0]
    try:
        if warm is not None:
            warm()
            gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        yield result
        gc.collect()
        result[0] = (tracemalloc.get_traced_memory()[0] - before) / 1024
    finally:
        tracemalloc.stop()
