"""Task bodies shared by every system in the benchmarks (importable by their workers)."""

import time


def noop(x: object) -> object:
    return x


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def busy(iterations: int) -> int:
    """A fixed amount of pure-Python work (see :func:`iterations_for`)."""
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


def iterations_for(seconds: float) -> int:
    """How many :func:`busy` iterations take about ``seconds`` of one core, here and now."""
    n = 10_000
    while True:
        start = time.process_time()
        busy(n)
        spent = time.process_time() - start
        if spent > 0.05:
            return max(1, int(n * seconds / spent))
        n *= 2


def log_events(count: int) -> int:
    """``count`` structlog events with two fields each (the forwarding benchmark)."""
    import structlog

    log = structlog.get_logger("bench")
    for i in range(count):
        log.info("tick", seq=i, table="users")
    return count


def source() -> int:
    """The fan-out's source: one small value every mapped run gets."""
    return 1


def work(i: int, src: int) -> int:
    """A mapped (or chained) no-op: ``i + src``."""
    return i + src


def reduce(values: list[int]) -> int:
    """The fan-in."""
    return sum(values)
