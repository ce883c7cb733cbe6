"""Task bodies for the logging tests, importable by workers (stdlib and structlog only)."""

from __future__ import annotations

import logging
import os
import time


def flood(name: str, lines: int) -> int:
    logger = logging.getLogger(name)
    for i in range(lines):
        logger.warning("line %d", i)
    return os.getpid()


def structlog_event(name: str) -> dict[str, object]:
    import structlog

    structlog.get_logger(name).warning("rows.loaded", rows=5)
    return {"pid": os.getpid(), "context": dict(structlog.contextvars.get_contextvars())}


def context() -> dict[str, object]:
    import structlog

    return dict(structlog.contextvars.get_contextvars())


def log_forever(name: str, started: str) -> None:
    logger = logging.getLogger(name)
    open(started, "w").close()
    deadline = time.monotonic() + 30
    i = 0
    while time.monotonic() < deadline:
        logger.warning("spam %d %s", i, "x" * 2000)
        i += 1


def fail(message: str) -> None:
    raise ValueError(message)


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
