"""Soak: 200,000 runs through one pool; the caller's memory and open files stay flat.

    python benchmarks/soak.py [--runs 200000] [--batch 10000]

Runs no-op tasks in batches (each batch called at once, then collected), and after each batch
prints the caller's resident memory and open file descriptors. Past the first batch (warm-up:
the pool, imports, caches), both must stay flat: the script exits 1 if memory grew by more than
``--slack`` MiB or any file descriptor leaked, 0 otherwise. The run history is written to a
temporary ``WOFLO_HOME`` (removed at the end) and flushed after each batch.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _tasks import noop

import woflo


def rss_mib() -> float:
    """The resident memory of this process, MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def open_fds() -> int:
    """How many file descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


def main(argv: list[str] | None = None) -> int:
    """Run the soak; print a line per batch; exit 1 if memory or descriptors grew."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--slack", type=float, default=8.0, help="MiB of growth allowed")
    args = parser.parse_args(argv)
    home = tempfile.mkdtemp(prefix="woflo-soak-")  # (its run history: never the user's)
    os.environ["WOFLO_HOME"] = home
    try:
        return _soak(args.runs, args.batch, args.slack)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _soak(runs_in_all: int, batch: int, slack: float) -> int:
    import woflo_plugins.history

    t = woflo.task(noop)
    baseline: tuple[float, int] | None = None
    start = time.perf_counter()
    done = 0
    while done < runs_in_all:
        runs = [t(None) for _ in range(batch)]
        for run in runs:
            run.get_result(timeout=120)
        del runs
        done += batch
        woflo_plugins.history.flush(60)  # (written: its connection open from the first batch)
        gc.collect()
        rss, fds = rss_mib(), open_fds()
        if baseline is None:
            baseline = (rss, fds)
        print(
            f"{done:>8} runs  {time.perf_counter() - start:7.1f} s  rss {rss:7.1f} MiB "
            f"({rss - baseline[0]:+.1f})  fds {fds} ({fds - baseline[1]:+d})",
            flush=True,
        )
    assert baseline is not None
    grew = rss_mib() - baseline[0]
    leaked = open_fds() - baseline[1]
    print(f"after the first {batch}: memory {grew:+.1f} MiB, file descriptors {leaked:+d}")
    return 0 if grew <= slack and leaked <= 0 else 1


if __name__ == "__main__":
    sys.exit(main())
