"""Task bodies shared by every system in the benchmarks (importable by their workers)."""

import time


def noop(x: object) -> object:
    return x


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
