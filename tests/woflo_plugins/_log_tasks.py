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


def structlog_flood(count: int, tag: str) -> int:
    """``count`` structlog events, each with a field no other event has."""
    import structlog

    log = structlog.get_logger("acme.flood")
    for i in range(count):
        log.info("tick", seq=i, uid=f"{tag}-{i}", payload={"i": i, "s": "x" * 20})
    return os.getpid()


def structlog_then_exit() -> None:
    import structlog

    structlog.get_logger().warning("last-words", n=1)
    os._exit(3)


def structlog_then_hold(started: str) -> None:
    import structlog

    structlog.get_logger().warning("before-stop", n=2)
    open(started, "w").close()
    time.sleep(60)


def structlog_forever(started: str) -> None:
    import structlog

    log = structlog.get_logger()
    open(started, "w").close()
    deadline = time.monotonic() + 60
    i = 0
    while time.monotonic() < deadline:
        log.info("spam", i=i, blob="x" * 2000)
        i += 1


def stdlib_record_with_extra_and_traceback(name: str) -> int:
    logger = logging.getLogger(name)
    logger.warning("loaded %d rows", 7, extra={"table": "users", "rows": 7})
    try:
        {}["missing"]
    except KeyError:
        logger.exception("lookup failed")
    return os.getpid()
