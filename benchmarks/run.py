"""woflo against what users would pick instead, in one run: medians of interleaved rounds.

    pip install -e ".[bench]"
    python benchmarks/run.py [--quick] [--rounds N] [--only WORKLOAD,...]

Every workload runs each system once per round, rounds interleaved (a noisy neighbour hurts all
systems alike), and reports each system's median and its ratio to woflo (peer / woflo: above 1,
woflo is ahead). Peers that are not installed are skipped and listed. Results go to stdout,
``benchmarks/results.md`` and, with matplotlib, ``benchmarks/overhead.png``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import importlib.metadata
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _cache  # noqa: E402  (beside this script, like _tasks)
import _compose  # noqa: E402
import _history  # noqa: E402
import _otel  # noqa: E402
import _profile  # noqa: E402
import _ui  # noqa: E402
from _tasks import busy, iterations_for, log_events, noop, sleep  # noqa: E402  (importable by every system's workers)

import woflo  # noqa: E402
from woflo.runners import SequentialTaskRun  # noqa: E402
from woflo_plugins import multiprocess as woflo_mp  # noqa: E402

WORKERS = os.cpu_count() or 2
System = Callable[[], float]
Batch = Callable[[Callable[..., Any], list[tuple[Any, ...]]], list[Any]]
"""Submit every call, then collect every result: the shape shared by all pool peers."""


def _have(module: str) -> bool:
    try:
        __import__(module)
    except Exception:
        return False
    return True


# ---- the systems: each started once and kept warm, as a program would ---------------------------


class Systems:
    """The pools and clients, created once; ``batch[name]`` submits then collects."""

    def __init__(self) -> None:
        self.batch: dict[str, Batch] = {}
        self.skipped: dict[str, str] = {}
        self._closers: list[Callable[[], Any]] = []
        self._tasks: dict[Callable[..., Any], Any] = {}

        self.batch["woflo"] = self._woflo
        self.batch["plain calls (floor)"] = lambda fn, calls: [fn(*a) for a in calls]

        ppe = concurrent.futures.ProcessPoolExecutor()
        self._closers.append(ppe.shutdown)
        self.batch["ProcessPoolExecutor"] = _futures(ppe.submit)

        pool = multiprocessing.Pool()
        self._closers.append(pool.terminate)
        self.batch["multiprocessing.Pool"] = lambda fn, calls: [
            r.get() for r in [pool.apply_async(fn, a) for a in calls]
        ]

        if _have("loky"):
            import loky

            executor = loky.get_reusable_executor(max_workers=WORKERS)
            self.batch["loky"] = _futures(executor.submit)
        else:
            self.skipped["loky"] = "not installed"

        if _have("pebble"):
            import pebble

            pebble_pool = pebble.ProcessPool(max_workers=WORKERS)
            self._closers.append(pebble_pool.stop)
            self.batch["pebble"] = lambda fn, calls: [
                f.result() for f in [pebble_pool.schedule(fn, args=a) for a in calls]
            ]
            self.pebble = pebble_pool
        else:
            self.skipped["pebble"] = "not installed"

        if _have("joblib"):
            import joblib

            parallel = joblib.Parallel(n_jobs=WORKERS)
            self.batch["joblib"] = lambda fn, calls: parallel(joblib.delayed(fn)(*a) for a in calls)
        else:
            self.skipped["joblib"] = "not installed"

        self.has_dask = _have("distributed")
        if not self.has_dask:
            self.skipped["dask"] = "not installed"

        if _have("prefect"):
            self.skipped["prefect"] = "installed, but not benchmarked here yet"
        else:
            self.skipped["prefect"] = "not installed (pip install prefect to include it)"

    @contextlib.contextmanager
    def dask(self) -> Iterator[None]:
        """A LocalCluster, and the two systems on it, only while measuring them: its
        scheduler and workers must not eat into the other systems' CPU."""
        import distributed

        from woflo_plugins import dask as woflo_dask

        cluster = distributed.LocalCluster(
            n_workers=WORKERS, threads_per_worker=1, dashboard_address=":0", silence_logs=40
        )
        client = distributed.Client(cluster, set_as_default=False)
        woflo_dask.configure(client=client)
        self.dask_client = client
        self.batch["dask (LocalCluster)"] = lambda fn, calls: client.gather(
            [client.submit(fn, *a, pure=False) for a in calls]
        )
        self.batch["woflo DaskTaskRun"] = self._woflo_runner("dask")
        try:
            self.batch["dask (LocalCluster)"](noop, [(0,)] * WORKERS)
            self.batch["woflo DaskTaskRun"](noop, [(0,)] * WORKERS)
            yield
        finally:
            del self.batch["dask (LocalCluster)"], self.batch["woflo DaskTaskRun"]
            del self.dask_client
            client.close()
            cluster.close()

    def _woflo(self, fn: Callable[..., Any], calls: list[tuple[Any, ...]]) -> list[Any]:
        t = self._tasks.get(fn)
        if t is None:
            t = self._tasks[fn] = woflo.task(fn)
        return [run.get_result() for run in [t(*a) for a in calls]]

    def _woflo_runner(self, runner: str) -> Batch:
        tasks: dict[Callable[..., Any], Any] = {}

        def batch(fn: Callable[..., Any], calls: list[tuple[Any, ...]]) -> list[Any]:
            t = tasks.get(fn) or tasks.setdefault(fn, woflo.task(runner=runner)(fn))
            return [run.get_result() for run in [t(*a) for a in calls]]

        return batch

    def warm_up(self) -> None:
        for batch in self.batch.values():
            batch(noop, [(0,)] * WORKERS)

    def close(self) -> None:
        woflo_mp.shutdown()
        for close in reversed(self._closers):
            try:
                close()
            except Exception:
                pass


def _futures(submit: Callable[..., Any]) -> Batch:
    return lambda fn, calls: [f.result() for f in [submit(fn, *a) for a in calls]]


# ---- workloads: each returns {system: measure()} -------------------------------------------------


def overhead(systems: Systems, n: int) -> dict[str, System]:
    """n no-op calls submitted, then collected: seconds per call ("woflo, history written":
    woflo's, with the writing of its history in the time; the other woflo figures leave the
    writing, done after the calls, out)."""

    def make(batch: Batch, written: bool = False) -> System:
        def measure() -> float:
            start = time.perf_counter()
            batch(noop, [(i,) for i in range(n)])
            if written:
                _written()
            return (time.perf_counter() - start) / n

        return measure

    result = {name: make(batch) for name, batch in systems.batch.items()}
    result["woflo, history written"] = make(systems.batch["woflo"], written=True)
    return result


def one_at_a_time(systems: Systems, n: int) -> dict[str, System]:
    """call, wait for the result, repeat: seconds per round trip."""

    def make(batch: Batch) -> System:
        def measure() -> float:
            start = time.perf_counter()
            for i in range(n):
                batch(noop, [(i,)])
            return (time.perf_counter() - start) / n

        return measure

    names = ("woflo", "ProcessPoolExecutor", "multiprocessing.Pool", "loky", "pebble")
    return {name: make(systems.batch[name]) for name in names if name in systems.batch}


def sleepers(systems: Systems, n: int, seconds: float) -> dict[str, System]:
    """n tasks sleeping, all submitted at once: wall seconds (each system at its defaults)."""

    def make(batch: Batch) -> System:
        def measure() -> float:
            start = time.perf_counter()
            batch(sleep, [(seconds,)] * n)
            return time.perf_counter() - start

        return measure

    return {n: make(b) for n, b in systems.batch.items() if n != "plain calls (floor)"}


def cpu_bound(systems: Systems, n: int, seconds: float) -> dict[str, System]:
    """n pure-Python loops of ``seconds`` of one core's work each: wall seconds (do we use
    every core? the floor is n * seconds / cores)."""
    work = iterations_for(seconds)

    def make(batch: Batch) -> System:
        def measure() -> float:
            start = time.perf_counter()
            batch(busy, [(work,)] * n)
            return time.perf_counter() - start

        return measure

    return {name: make(batch) for name, batch in systems.batch.items()}


_COLD = {
    "woflo": "import woflo; t = woflo.task(noop)\nstart = time.perf_counter(); t(1).get_result()",
    "ProcessPoolExecutor": "import concurrent.futures as cf; ex = cf.ProcessPoolExecutor()\n"
    "start = time.perf_counter(); ex.submit(noop, 1).result()",
    "multiprocessing.Pool": "import multiprocessing; p = multiprocessing.Pool()\n"
    "start = time.perf_counter(); p.apply_async(noop, (1,)).get(); p.terminate()",
    "loky": "import loky; ex = loky.get_reusable_executor()\n"
    "start = time.perf_counter(); ex.submit(noop, 1).result()",
    "pebble": "import pebble; p = pebble.ProcessPool()\n"
    "start = time.perf_counter(); p.schedule(noop, args=(1,)).result(); p.stop()",
}


def cold_start(systems: Systems) -> dict[str, System]:
    """first result in a fresh process, from the first call (imports excluded): seconds."""

    def make(body: str) -> System:
        script = f"import time\nfrom _tasks import noop\n{body}\nprint(time.perf_counter() - start)"

        def measure() -> float:
            out = subprocess.run(
                [sys.executable, "-c", script],
                cwd=HERE,
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            )
            return float(out.stdout.strip().splitlines()[-1])

        return measure

    return {
        name: make(body)
        for name, body in _COLD.items()
        if name in ("woflo", "ProcessPoolExecutor", "multiprocessing.Pool") or _have(name)
    }


_SCRIPTS = {
    "woflo": "import woflo\nfrom _tasks import noop\nwoflo.task(noop)(1).get_result()",
    "ProcessPoolExecutor": "import concurrent.futures as cf\nfrom _tasks import noop\n"
    "with cf.ProcessPoolExecutor() as ex:\n    ex.submit(noop, 1).result()",
    "multiprocessing.Pool": "import multiprocessing as mp\nfrom _tasks import noop\n"
    "with mp.Pool() as p:\n    p.apply_async(noop, (1,)).get()",
    "python -c pass (floor)": "pass",
}


def cold_script(systems: Systems) -> dict[str, System]:
    """a whole script, from the interpreter's start to its exit: seconds."""

    def make(script: str) -> System:
        def measure() -> float:
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-c", script],
                cwd=HERE,
                check=True,
                timeout=120,
                capture_output=True,
            )
            return time.perf_counter() - start

        return measure

    return {name: make(script) for name, script in _SCRIPTS.items()}


_IMPORTS = {
    "woflo": "woflo",
    "pluggy (woflo's floor)": "pluggy",
    "concurrent.futures": "concurrent.futures",
    "loky": "loky",
    "pebble": "pebble",
    "joblib": "joblib",
    "dask (distributed)": "distributed",
    "tenacity": "tenacity",
    "stamina": "stamina",
    "prefect": "prefect",
}


def import_time(systems: Systems) -> dict[str, System]:
    """``import X`` in a fresh interpreter, minus the interpreter's own start: seconds."""

    def run(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)
        return time.perf_counter() - start

    def make(module: str) -> System:
        return lambda: max(0.0, run(f"import {module}") - run("pass"))

    return {name: make(module) for name, module in _IMPORTS.items() if _have(module)}


def stop_latency(systems: Systems) -> dict[str, System]:
    """from stop()/cancel() of a running task to its worker being gone: seconds."""

    def woflo_() -> float:
        t = woflo.task(sleep)
        run = t(60)
        while run.state is not woflo.RunState.RUNNING:
            time.sleep(0.001)
        time.sleep(0.05)  # let the worker pick it up
        status = woflo_mp.status()
        assert status is not None
        [pid] = [w.pid for w in status.workers if w.run_id == run.run_id]
        start = time.perf_counter()
        run.stop()
        _wait_gone(pid)
        return time.perf_counter() - start

    result = {"woflo": woflo_}
    if hasattr(systems, "pebble"):

        def pebble_() -> float:
            future = systems.pebble.schedule(_pid_then_sleep, args=(60,))
            time.sleep(0.1)
            pids = {p.pid for p in multiprocessing.active_children()}
            start = time.perf_counter()
            future.cancel()
            while pids and all(_alive(p) for p in pids):
                time.sleep(0.0005)
            return time.perf_counter() - start

        result["pebble"] = pebble_
    return result


def _pid_then_sleep(seconds: float) -> None:
    time.sleep(seconds)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:  # gone (the file vanishes, or reading it races the exit)
        return False


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.0005)


def retries_overhead(systems: Systems, n: int) -> dict[str, System]:
    """n in-process calls with a retry policy and no failure: seconds per call. woflo's
    history is written before the next system is measured (its writer, left to write after
    the calls, would run in another system's time): not timed ("woflo (sequential)": as a
    program that pauses between bursts sees it) and timed ("..., history written": its whole
    cost, as a program that never pauses pays it)."""
    t = woflo.task(runner=SequentialTaskRun, retries=3, retry_sleep_time=1)(noop)

    def woflo_(written: bool) -> float:
        start = time.perf_counter()
        for i in range(n):
            t(i).get_result()
        if written:
            _written()
        return (time.perf_counter() - start) / n

    def plain() -> float:
        start = time.perf_counter()
        for i in range(n):
            noop(i)
        return (time.perf_counter() - start) / n

    result = {
        "woflo (sequential)": lambda: woflo_(False),
        "woflo (sequential), history written": lambda: woflo_(True),
        "plain calls (floor)": plain,
    }
    if _have("tenacity"):
        import tenacity

        wrapped = tenacity.retry(stop=tenacity.stop_after_attempt(4), wait=tenacity.wait_fixed(1))(
            noop
        )

        def tenacity_() -> float:
            start = time.perf_counter()
            for i in range(n):
                wrapped(i)
            return (time.perf_counter() - start) / n

        result["tenacity"] = tenacity_
    if _have("stamina"):
        import stamina

        stamina_wrapped = stamina.retry(on=Exception, attempts=4, wait_initial=1)(noop)

        def stamina_() -> float:
            start = time.perf_counter()
            for i in range(n):
                stamina_wrapped(i)
            return (time.perf_counter() - start) / n

        result["stamina"] = stamina_
    return result


def logging_cost(systems: Systems, n: int) -> dict[str, System]:
    """What the logging plugin adds at the default level: per call, seconds."""
    from _woflo import noop_task, submitted_then_collected

    def one_by_one(t: Any, count: int) -> System:
        def run() -> float:
            start = time.perf_counter()
            for i in range(count):
                t(i).get_result()
            return (time.perf_counter() - start) / count

        return run

    batch = submitted_then_collected

    return {
        "woflo sequential, logging on": one_by_one(noop_task("sequential", []), n * 10),
        "woflo sequential, logging off": one_by_one(noop_task("sequential", ["logging"]), n * 10),
        "woflo multiprocess, logging on": batch(noop_task("multiprocess", []), n),
        "woflo multiprocess, logging off": batch(noop_task("multiprocess", ["logging"]), n),
    }


def event_forwarding(systems: Systems, n: int) -> dict[str, System]:
    """A structlog event from a worker to the caller's output, against the same event logged
    in-process: per event, seconds. The caller renders JSON to /dev/null; its configuration
    is in place only while each measure runs."""
    import structlog

    sink = open(os.devnull, "w")  # noqa: SIM115  (for the life of the benchmark)

    def configured(measure: Callable[[], float]) -> System:
        def run() -> float:
            structlog.configure(
                processors=[
                    structlog.contextvars.merge_contextvars,
                    structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso"),
                    structlog.processors.JSONRenderer(),
                ],
                logger_factory=structlog.PrintLoggerFactory(sink),
            )
            try:
                return measure()
            finally:
                structlog.reset_defaults()

        return run

    remote = woflo.task(name="log_events")(log_events)
    here = woflo.task(name="log_events", runner="sequential")(log_events)
    remote(10).get_result()  # warm: a worker that has the task

    def timed(call: Callable[[], Any]) -> float:
        start = time.perf_counter()
        call()
        return (time.perf_counter() - start) / n

    return {
        "woflo: from a worker, rendered by the caller": configured(
            lambda: timed(lambda: remote(n).get_result())
        ),
        "structlog in-process, in a woflo sequential task": configured(
            lambda: timed(lambda: here(n).get_result())
        ),
        "structlog in-process, plain loop": configured(lambda: timed(lambda: log_events(n))),
    }


def dask_overhead(systems: Systems, n: int) -> dict[str, System]:
    """n no-op runs through DaskTaskRun against plain client.submit, same cluster: s per call."""
    if not hasattr(systems, "dask_client"):
        return {}
    return {
        "dask (LocalCluster)": overhead(systems, n)["dask (LocalCluster)"],
        "woflo DaskTaskRun": overhead(systems, n)["woflo DaskTaskRun"],
    }


def memory(systems: Systems, n: int) -> dict[str, System]:
    """What the parent still holds (bytes per run, by tracemalloc) after n finished runs the
    program no longer references, measured after a first batch of n."""

    def make(batch: Batch) -> System:
        def measure() -> float:
            import woflo_plugins.history

            def finish() -> None:
                batch(noop, [(i,) for i in range(n)])
                woflo_plugins.history.flush(30)  # (its queue is written within a second)

            with _compose.held(warm=finish) as grown:  # (a batch first: tables at their size)
                finish()
            return grown[0] * 1024 / n

        return measure

    names = ("woflo", "ProcessPoolExecutor", "multiprocessing.Pool", "loky", "pebble")
    return {name: make(systems.batch[name]) for name in names if name in systems.batch}


# ---- running and reporting -----------------------------------------------------------------------


def measure(workload: dict[str, System], rounds: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in workload}
    names = list(workload)
    for round_ in range(rounds):  # each round in another order: none is always first (the
        turn = round_ % max(1, len(names))  # one after a pause, or another's clean-up)
        for name in names[turn:] + names[:turn]:
            samples[name].append(workload[name]())
            _written()  # (woflo's history: never in the next system's time)
    return {name: statistics.median(values) for name, values in samples.items()}


def _written() -> None:
    """Wait until woflo's history holds every run so far. Its writer gathers while calls keep
    coming and writes at the first pause: left alone, it would write one system's runs in
    the time of the next one measured."""
    import woflo_plugins.history

    woflo_plugins.history.flush(30)


def _versions() -> str:
    names = ["pluggy", "structlog", "cloudpickle", "loky", "pebble", "joblib", "distributed"]
    names += ["tenacity", "stamina", "prefect", "matplotlib"]
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


def _chart(curve: dict[str, dict[int, float]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, points in sorted(curve.items()):
        sizes = sorted(points)
        ax.plot(sizes, [points[s] * 1e6 for s in sizes], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("calls submitted, then collected")
    ax.set_ylabel("µs per call (median)")
    ax.set_title(f"Per-call overhead, no-op task, {WORKERS} cores")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


Workload = tuple[str, str, Callable[[], dict[str, System]], float]
"""(key, title, build the systems' measures, scale of the printed figure)."""


def _workloads(systems: Systems, quick: bool, sizes: list[int]) -> list[Workload]:
    s = systems
    n_retry = 200 if quick else 5_000
    n_memory = 1_000 if quick else 10_000
    n_small = 50 if quick else 2_000
    n_fan, n_chain, n_pending = (100, 20, 2_000) if quick else (1_000, 200, 100_000)
    n_rows = 10_000 if quick else 1_000_000
    n_ui = 500 if quick else 10_000
    n_map = 500 if quick else 10_000
    result: list[Workload] = [("import", "import time (ms)", lambda: import_time(s), 1e3)]
    for n in sizes:
        title = f"overhead: {n:,} no-op calls submitted, then collected (µs per call)"
        result.append(("overhead", title, lambda n=n: overhead(s, n), 1e6))  # type: ignore[misc]
    return [
        *result,
        (
            "latency",
            "one call at a time (µs per call)",
            lambda: one_at_a_time(s, 20 if quick else 200),
            1000000.0,
        ),
        ("cold", "cold start: first result in a fresh process (ms)", lambda: cold_start(s), 1000.0),
        (
            "cold",
            "cold script: a whole script making a pool, one call, exit (ms)",
            lambda: cold_script(s),
            1000.0,
        ),
        (
            "sleepers",
            f"10 tasks sleeping {0.2 if quick else 1} s, all at once (s)",
            lambda: sleepers(s, 10, 0.2 if quick else 1.0),
            1,
        ),
        (
            "cpu",
            f"CPU-bound: {20 if quick else 200} x 20 ms of pure Python, {WORKERS} cores (s)",
            lambda: cpu_bound(s, 20 if quick else 200, 0.02),
            1,
        ),
        ("stop", "stop latency: stop() to worker gone (ms)", lambda: stop_latency(s), 1000.0),
        (
            "retries",
            "retries on, no failure, in-process (µs per call)",
            lambda: retries_overhead(s, n_retry),
            1000000.0,
        ),
        (
            "memory",
            f"parent memory still held after {n_memory:,} finished runs (bytes per run)",
            lambda: memory(s, n_memory),
            1,
        ),
        (
            "logging",
            f"logging plugin cost, {n_small:,} runs (µs per call)",
            lambda: logging_cost(s, n_small),
            1e6,
        ),
        (
            "fan-out",
            f"fan-out/fan-in: 1 source, {n_fan:,} mapped runs, 1 reduce (µs per mapped run)",
            lambda: _compose.fan_out_in(n_fan, s.skipped),
            1e6,
        ),
        (
            "map",
            f"Task.map over {n_map:,} no-op items, against the pools' maps (µs per item)",
            lambda: _compose.map_tiny(n_map, s.skipped),
            1e6,
        ),
        (
            "chain",
            f"a chain of {n_chain} dependent runs (µs per link)",
            lambda: _compose.chain(n_chain, s.skipped),
            1e6,
        ),
        (
            "await",
            f"awaiting {n_fan:,} runs from one event loop (µs per run)",
            lambda: _compose.awaiting(n_fan),
            1e6,
        ),
        (
            "pending",
            f"caller memory per pending run, {n_pending:,} runs (KiB per run)",
            lambda: _compose.pending_memory(n_pending),
            1,
        ),
        (
            "history",
            f"history on vs off: {n_small:,} multiprocess, {n_small * 10:,} sequential runs "
            "(µs per call)",
            lambda: _history.recording_cost(n_small, n_small * 10),
            1e6,
        ),
        (
            "profile",
            f"where the time goes: a no-op per call, plugins disabled in turn, {n_small * 5:,} "
            f"sequential, {n_small:,} multiprocess runs (µs per call)",
            lambda: _profile.plugin_costs(n_small * 5, n_small),
            1e6,
        ),
        (
            "store",
            f"history store size, {n_small * 5:,} runs (bytes per run)",
            lambda: _history.store_size(n_small * 5),
            1,
        ),
        (
            "query",
            f"woflo runs on a {n_rows:,}-run history (ms)",
            lambda: _history.query_time(n_rows),
            1e3,
        ),
        (
            "cache",
            f"cache hit vs executing, {n_small:,} calls one at a time (µs per call)",
            lambda: _cache.hit_cost(n_small, s.skipped),
            1e6,
        ),
        (
            "otel",
            f"OpenTelemetry spans on vs off: {n_small:,} multiprocess no-op runs (µs per call)",
            lambda: _otel.span_cost(n_small, s.skipped),
            1e6,
        ),
        (
            "ui",
            f"woflo ui: render time in headless Chromium, {n_ui:,}-run program (ms)",
            lambda: _ui.render_times(n_ui, s.skipped),
            1e3,
        ),
        (
            "forwarding",
            f"structlog event forwarding: {n_small * 5:,} events, worker vs in-process "
            "(µs per event)",
            lambda: event_forwarding(s, n_small * 5),
            1e6,
        ),
        (
            "dask",
            f"DaskTaskRun vs client.submit, {n_small:,} no-op runs (µs per call)",
            lambda: dask_overhead(s, n_small),
            1e6,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 round (< 1 min)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument(
        "--only", default="", help="comma-separated workload names, or words of their titles"
    )
    parser.add_argument("--output", type=Path, default=HERE / "results.md")
    args = parser.parse_args(argv)
    quick = args.quick
    rounds = args.rounds or (1 if quick else 5)
    sizes = [10, 100] if quick else [10, 100, 1_000, 2_000, 10_000]
    # woflo's history and cache of this run in a directory of its own: never the user's (whose
    # history may hold a million runs, and whose cache would answer the benchmark's calls);
    # the workloads' own temporary files (a 1,000,000-run database, say) go there too, so that
    # the end of the run removes them
    home = tempfile.mkdtemp(prefix="woflo-benchmarks-")
    os.environ["WOFLO_HOME"] = tempfile.tempdir = home
    systems = Systems()
    try:
        systems.warm_up()
        workloads = _workloads(systems, quick, sizes)
        only = [w for w in args.only.split(",") if w]
        lines = [
            f"# woflo benchmarks, {datetime.date.today().isoformat()}",
            "",
            f"Machine: {WORKERS} cores, {platform.machine()}, {platform.system()}, "
            f"Python {platform.python_version()}; woflo {woflo.__version__}; {_versions()}.",
            f"{rounds} round(s), interleaved; medians. Ratio = system / woflo (above 1: woflo "
            "is ahead; for memory, lower is better). Command: "
            f"`python benchmarks/run.py{' --quick' if quick else ''}`.",
            "",
            "| workload | system | median | ratio to woflo |",
            "|---|---|---:|---:|",
        ]
        ran: list[str] = []
        curve: dict[str, dict[int, float]] = {}
        for key, title, build, scale in workloads:
            if only and not any(o == key or o in title for o in only):
                continue
            result = measure(build(), rounds)
            dask_keys = ("dask",) if quick else ("overhead", "sleepers", "cpu", "dask")
            if systems.has_dask and key in dask_keys:
                with systems.dask():
                    built = build()
                    result.update(measure({k: v for k, v in built.items() if "ask" in k}, rounds))
            if not result:
                continue
            base = (
                result.get("woflo")
                or result.get("woflo (sequential)")
                or result.get("dask (LocalCluster)")
                or next(iter(result.values()))
            )
            for name, value in result.items():
                ratio = f"{value / base:.2f}" if base else "n/a"
                lines.append(f"| {title} | {name} | {value * scale:.3g} | {ratio} |")
                if key == "overhead":
                    curve.setdefault(name, {})[int(title.split()[1].replace(",", ""))] = value
            print("\n".join(lines[-len(result) :]), flush=True)
            ran.append(key)
        if systems.skipped:
            lines += [
                "",
                "Not measured: " + "; ".join(f"{k}: {v}" for k, v in systems.skipped.items()),
            ]
        chart = args.output.with_name("overhead.png")
        if curve and _chart(curve, chart):
            lines += ["", f"![per-call overhead]({chart.name})"]
        args.output.write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"\nworkloads run: {', '.join(dict.fromkeys(ran))}\nwrote {args.output}")
    finally:
        systems.close()
        import woflo_plugins.history

        woflo_plugins.history.flush(30)
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
