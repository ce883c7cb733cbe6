"""woflo against the alternatives, in one run: medians of interleaved rounds, as ratios.

    python benchmarks/run.py [--quick] [--rounds N] [--only WORKLOAD,...]

Each workload runs every system once per round, rounds interleaved (so a noisy neighbour hurts
all systems alike), and reports the median per system and its ratio to woflo (peer / woflo:
above 1 means woflo is faster). Results go to stdout and ``benchmarks/results.md``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import gc
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _tasks import noop, sleep  # noqa: E402  (importable by every system's workers)

import woflo  # noqa: E402
from woflo_plugins import multiprocess as woflo_mp  # noqa: E402

System = Callable[[], float]


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# ---- the systems, each kept warm across rounds (one pool per process, as users do) ------------

_woflo_noop = woflo.task(noop)
_woflo_sleep = woflo.task(sleep)
_ppe = concurrent.futures.ProcessPoolExecutor()
_mp_pool = multiprocessing.get_context("forkserver" if sys.version_info >= (3, 14) else None).Pool()


def warm_up() -> None:
    _woflo_noop(0).get_result()
    _ppe.submit(noop, 0).result()
    _mp_pool.apply_async(noop, (0,)).get()


def overhead(n: int) -> dict[str, System]:
    """n no-op calls submitted, then collected; seconds per call."""

    def woflo_() -> float:
        start = time.perf_counter()
        runs = [_woflo_noop(i) for i in range(n)]
        for run in runs:
            run.get_result()
        return (time.perf_counter() - start) / n

    def ppe() -> float:
        start = time.perf_counter()
        futures = [_ppe.submit(noop, i) for i in range(n)]
        for future in futures:
            future.result()
        return (time.perf_counter() - start) / n

    def pool() -> float:
        start = time.perf_counter()
        results = [_mp_pool.apply_async(noop, (i,)) for i in range(n)]
        for result in results:
            result.get()
        return (time.perf_counter() - start) / n

    return {"woflo": woflo_, "ProcessPoolExecutor": ppe, "multiprocessing.Pool": pool}


def one_at_a_time(n: int) -> dict[str, System]:
    """call, wait, repeat: latency of one round trip, seconds."""

    def woflo_() -> float:
        start = time.perf_counter()
        for i in range(n):
            _woflo_noop(i).get_result()
        return (time.perf_counter() - start) / n

    def ppe() -> float:
        start = time.perf_counter()
        for i in range(n):
            _ppe.submit(noop, i).result()
        return (time.perf_counter() - start) / n

    def pool() -> float:
        start = time.perf_counter()
        for i in range(n):
            _mp_pool.apply_async(noop, (i,)).get()
        return (time.perf_counter() - start) / n

    return {"woflo": woflo_, "ProcessPoolExecutor": ppe, "multiprocessing.Pool": pool}


_COLD = {
    "woflo": """
        import woflo
        from _tasks import noop
        t = woflo.task(noop)
        start = time.perf_counter(); t(1).get_result()
    """,
    "ProcessPoolExecutor": """
        import concurrent.futures
        from _tasks import noop
        ex = concurrent.futures.ProcessPoolExecutor()
        start = time.perf_counter(); ex.submit(noop, 1).result()
    """,
    "multiprocessing.Pool": """
        import multiprocessing
        from _tasks import noop
        pool = multiprocessing.Pool()
        start = time.perf_counter(); pool.apply_async(noop, (1,)).get()
    """,
}


def cold_start() -> dict[str, System]:
    """first result in a fresh process, from the first call (imports excluded), seconds."""

    def make(body: str) -> System:
        script = (
            "import os, sys, time\n"
            + textwrap.dedent(body)
            + ("\nprint(time.perf_counter() - start, flush=True)\n")
        )

        def measure() -> float:
            out = subprocess.run(
                [sys.executable, "-c", script],
                cwd=HERE,
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            )
            return float(out.stdout.strip().splitlines()[-1])

        return measure

    return {name: make(body) for name, body in _COLD.items()}


def sleepers(n: int, seconds: float) -> dict[str, System]:
    """n tasks sleeping ``seconds`` each, all submitted at once: wall time, seconds."""

    def woflo_() -> float:
        start = time.perf_counter()
        for run in [_woflo_sleep(seconds) for _ in range(n)]:
            run.get_result()
        return time.perf_counter() - start

    def ppe() -> float:
        start = time.perf_counter()
        for future in [_ppe.submit(sleep, seconds) for _ in range(n)]:
            future.result()
        return time.perf_counter() - start

    def pool() -> float:
        start = time.perf_counter()
        for result in [_mp_pool.apply_async(sleep, (seconds,)) for _ in range(n)]:
            result.get()
        return time.perf_counter() - start

    return {"woflo": woflo_, "ProcessPoolExecutor": ppe, "multiprocessing.Pool": pool}


def memory(n: int) -> dict[str, System]:
    """parent RSS growth (MiB) after n finished runs the program no longer references."""

    def woflo_() -> float:
        gc.collect()
        before = _rss_mib()
        runs = [_woflo_noop(i) for i in range(n)]
        for run in runs:
            run.wait()
        del runs
        gc.collect()
        return _rss_mib() - before

    def ppe() -> float:
        gc.collect()
        before = _rss_mib()
        futures = [_ppe.submit(noop, i) for i in range(n)]
        for future in futures:
            future.result()
        del futures
        gc.collect()
        return _rss_mib() - before

    return {"woflo": woflo_, "ProcessPoolExecutor": ppe}


def measure(workload: dict[str, System], rounds: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in workload}
    for _ in range(rounds):
        for name, fn in workload.items():
            samples[name].append(fn())
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 3 rounds (< 1 min)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--only", default="", help="comma-separated workload names")
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 7)
    n = 200 if args.quick else 2000
    workloads = {
        f"overhead, {n} no-op calls (µs per call)": (overhead(n), 1e6),
        "one call at a time (µs per call)": (one_at_a_time(50 if args.quick else 300), 1e6),
        "cold start: first result (ms)": (cold_start(), 1e3),
        "10 tasks sleeping 1 s, at once (s)": (sleepers(10, 0.2 if args.quick else 1.0), 1),
        f"parent memory after {n} runs (MiB)": (memory(n), 1),
    }
    only = [w for w in args.only.split(",") if w]
    warm_up()
    lines = [
        f"# woflo benchmarks, {datetime.date.today().isoformat()}",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}, woflo {woflo.__version__}; {rounds} rounds, "
        "medians; ratio = peer / woflo "
        "(above 1: woflo is ahead; for memory, lower is better).",
        "",
        "| workload | system | median | ratio to woflo |",
        "|---|---|---:|---:|",
    ]
    for title, (workload, scale) in workloads.items():
        if only and not any(o in title for o in only):
            continue
        result = measure(workload, rounds)
        base = result["woflo"]
        for name, value in result.items():
            ratio = value / base if base else float("nan")
            lines.append(f"| {title} | {name} | {value * scale:.3g} | {ratio:.2f} |")
        print("\n".join(lines[-len(result) :]), flush=True)
    woflo_mp.shutdown()
    _ppe.shutdown()
    _mp_pool.terminate()
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print(f"\nwrote {HERE / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
