"""Task bodies shared by every system in the benchmarks (importable by their workers)."""

import time


def noop(x: object) -> object:
    return x


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def busy(seconds: float) -> int:
    """Pure-Python work for about ``seconds`` of one core."""
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n
